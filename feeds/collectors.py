"""The collectors file: who collects for which branch, with their mobile, capacity and
safety-training validity; a collector leaves by `active` 否, never by being left out.

| column | also | what |
| --- | --- | --- |
| id | 工号, 编号 | letters, digits, - and _, at most 32 |
| name | 姓名 | |
| branch | 网点代码 | a registered branch (the branches file first) |
| mobile | 手机号 | optional: a mainland mobile or +country; stored E.164, never printed unmasked |
| capacity | 案件容量 | open cases at most: a whole number >= 0 |
| training_expires_on | 培训有效期 | optional: safety training valid until, YYYY-MM-DD |
| active | 在岗, 是否在岗 | optional: 是/否 (Y/N, 1/0, true/false) |

An empty optional cell leaves what is stored (a new collector: none, and active). The good
rows are stored in one transaction, keyed by id: the same file again changes nothing.

Deactivating a collector who holds open cases moves each case, through its own `reassign`
Update (so each case answers, and the audit trail has it with the user), to the least-loaded
active collectors of the branch with capacity, keeping the case's team size. That is a dry
run unless `apply`: the cases that would move are listed and the collector stays active. The
collector is deactivated only once every one of their cases has moved; a case no collector
has room for, or one that refuses, keeps them active and is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Branch, Case, Collector, Loan
from domain.phones import PhoneError, normalize_phone
from domain.privacy import mask_phone
from feeds.branches import MasterReport, changes, check_code
from feeds.csv_files import RowError, long_numbers, text_field
from feeds.sheets import read_table
from service import audit
from service.case_updates import CaseActions
from service.users import Principal

COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("工号", "编号"),
    "name": ("姓名",),
    "branch": ("网点代码",),
    "mobile": ("手机号",),
    "capacity": ("案件容量",),
    "training_expires_on": ("培训有效期",),
    "active": ("在岗", "是否在岗"),
}
REQUIRED = {"id", "name", "branch", "capacity"}
MAX_CAPACITY = 10_000
YES = {"是", "y", "yes", "true", "1", "在岗"}
NO = {"否", "n", "no", "false", "0", "离岗"}
_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


@dataclass
class Move:
    loan_no: str
    branch: str
    team: list[str]
    new_team: list[str] | None  # None: no active collector of the branch has room

    def __str__(self) -> str:
        to = ", ".join(self.new_team) if self.new_team else "nobody with capacity"
        return f"{self.loan_no} ({self.branch}): {', '.join(self.team)} -> {to}"


@dataclass
class CollectorsReport(MasterReport):
    deactivated: list[str] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)  # moved, or that would move (dry run)
    pending: list[str] = field(default_factory=list)  # kept active: dry run, or a case left
    refused: list[str] = field(default_factory=list)  # "L…: why" (a case, or no room)
    applied: bool = False


def _flag(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in YES else False if v in NO else None


def _date(value: str) -> date | None:
    m = _DATE.fullmatch(value.strip())
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _open_teams(session: Session, collector_ids: set[str]) -> list[tuple[str, str, list[str]]]:
    """(loan, branch, team) of the open cases that have one of these collectors."""
    rows = session.execute(
        select(Loan.loan_no, Case.branch_code, Case.primary_collector, Case.second_collector)
        .join(Loan, Loan.id == Case.loan_id)
        .where(
            Case.closed_at.is_(None),
            or_(
                Case.primary_collector.in_(collector_ids),
                Case.second_collector.in_(collector_ids),
            ),
        )
        .order_by(Loan.loan_no)
    ).all()
    return [(loan, branch, [c for c in (p, s) if c]) for loan, branch, p, s in rows]


def _loads(session: Session) -> dict[str, int]:
    """Open cases per collector, as first or second collector (the dashboard's count)."""
    loads: dict[str, int] = {}
    for column in (Case.primary_collector, Case.second_collector):
        for cid, n in session.execute(
            select(column, func.count()).where(Case.closed_at.is_(None), column.is_not(None))
            .group_by(column)
        ):  # fmt: skip
            loads[cid] = loads.get(cid, 0) + n
    return loads


def _validate(
    rows: list[tuple[int, dict[str, str]]], session: Session, report: CollectorsReport
) -> list[tuple[int, dict[str, object]]]:
    branches = set(session.scalars(select(Branch.code)))
    loads = _loads(session)
    good: list[tuple[int, dict[str, object]]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        errors = long_numbers(line, cells)
        cid = check_code(line, "id", cells["id"], errors, 32)
        if cid in seen:
            errors.append(RowError(line, "id", f"{cid} is in row {seen[cid]} already"))
        seen.setdefault(cid, line)
        values: dict[str, object] = {"id": cid}
        name = text_field(line, "name", cells["name"], errors)
        if len(name) > 100:
            errors.append(RowError(line, "name", "longer than 100 characters"))
        values["name"] = name
        branch = text_field(line, "branch", cells["branch"], errors)
        if branch and branch not in branches:
            errors.append(RowError(line, "branch", f"unknown branch {branch[:20]!r} "
                                                   "(import the branches file first)"))  # fmt: skip
        values["branch_code"] = branch
        capacity = cells["capacity"].strip()
        if not capacity:
            errors.append(RowError(line, "capacity", "missing"))
        elif not (capacity.isascii() and capacity.isdigit() and int(capacity) <= MAX_CAPACITY):
            errors.append(RowError(line, "capacity", f"{capacity[:20]!r} is not a whole number "
                                                     f"from 0 to {MAX_CAPACITY}"))  # fmt: skip
        else:
            values["capacity"] = int(capacity)
        if mobile := cells.get("mobile", ""):
            try:
                values["mobile"] = normalize_phone(mobile)
            except PhoneError:  # its message repeats the number: not in a report
                errors.append(RowError(line, "mobile", "not a mainland mobile (1xx xxxx xxxx) "
                                                       "nor +country"))  # fmt: skip
        if expiry := cells.get("training_expires_on", ""):
            if (day := _date(expiry)) is None:
                errors.append(RowError(line, "training_expires_on",
                                       f"{expiry[:20]!r} is not a date (YYYY-MM-DD)"))  # fmt: skip
            else:
                values["training_expires_on"] = day
        if active := cells.get("active", ""):
            if (flag := _flag(active)) is None:
                errors.append(RowError(line, "active", f"{active[:10]!r}: 是 or 否"))
            else:
                values["active"] = flag
        known = session.get(Collector, cid) if cid else None
        if known and branch and branch != known.branch_code and loads.get(cid, 0):
            errors.append(RowError(line, "branch", f"{cid} holds {loads[cid]} open cases in "
                                   f"{known.branch_code}: deactivate them first (their cases "
                                   "move) or keep the branch"))  # fmt: skip
        if errors:
            report.errors.extend(errors)
            continue
        good.append((line, values))
    return good


def _shown(values: dict[str, object]) -> dict[str, object]:
    return {k: mask_phone(str(v)) if k == "mobile" and v else v for k, v in values.items()}


def _plan(session: Session, leaving: set[str]) -> list[Move]:
    """Each open case of the leaving collectors: its team with each of them replaced by the
    least-loaded active collector of the case's branch with room (after the file's rows)."""
    loads = _loads(session)
    staff = list(
        session.scalars(
            select(Collector)
            .where(Collector.active.is_(True), Collector.id.not_in(leaving))
            .order_by(Collector.id)
        )
    )
    moves = []
    for loan_no, branch, team in _open_teams(session, leaving):
        kept = [c for c in team if c not in leaving]
        room = sorted(
            (loads.get(c.id, 0), c.id)
            for c in staff
            if c.branch_code == branch and c.id not in team and loads.get(c.id, 0) < c.capacity
        )
        picks = [cid for _, cid in room[: len(team) - len(kept)]]
        if len(kept) + len(picks) < len(team):
            moves.append(Move(loan_no, branch, team, None))
            continue
        for cid in picks:
            loads[cid] = loads.get(cid, 0) + 1
        moves.append(Move(loan_no, branch, team, kept + picks))
    return moves


async def import_collectors(
    path: Path,
    sessions: sessionmaker[Session],
    who: Principal,
    actions: CaseActions | None = None,
    apply: bool = False,
) -> CollectorsReport:
    """Raises FileError when the file cannot be read or lacks a column. `actions` is needed
    only to apply deactivations that move open cases."""
    rows = read_table(path, COLUMNS, REQUIRED)
    report = CollectorsReport(rows=len(rows), applied=apply)
    leaving: set[str] = set()
    with sessions.begin() as session:
        good = _validate(rows, session, report)
        holding = set(_loads(session))
        for _, values in good:
            collector = session.get(Collector, values["id"])
            if collector is None:
                session.add(Collector(**{"active": True, **values}))
                report.added.append(str(values["id"]))
                continue
            if values.get("active") is False and collector.active and collector.id in holding:
                leaving.add(collector.id)  # deactivated below, once their cases have moved
                values = {k: v for k, v in values.items() if k != "active"}
            new = {k: v for k, v in values.items() if k != "id"}
            old = {k: getattr(collector, k) for k in new}
            diff = changes(_shown(old), _shown(new))
            if values.get("active") is False and collector.active:
                report.deactivated.append(collector.id)
            for k, v in new.items():
                setattr(collector, k, v)
            if diff:
                report.updated.append(f"{collector.id}: {', '.join(diff)}")
            elif collector.id not in leaving:
                report.unchanged += 1
        session.flush()
        report.moves = _plan(session, leaving) if leaving else []
    if leaving:
        await _move_cases(sessions, who, actions, leaving, report)
    audit.record(
        sessions, who.username, who.role.value, "import_collectors",
        "PARTLY" if report.errors or report.refused else "DONE",
        f"{path.name}: {report.line()}; added {', '.join(report.added) or '-'}; "
        f"deactivated {', '.join(report.deactivated) or '-'}; "
        f"kept active {', '.join(report.pending) or '-'}; " + "; ".join(report.updated),
    )  # fmt: skip
    return report


async def _move_cases(
    sessions: sessionmaker[Session],
    who: Principal,
    actions: CaseActions | None,
    leaving: set[str],
    report: CollectorsReport,
) -> None:
    stuck: set[str] = set()
    for move in report.moves:
        if move.new_team is None:
            report.refused.append(f"{move.loan_no}: no active collector of {move.branch} "
                                  "has room (raise a capacity or add a collector)")  # fmt: skip
            stuck.update(c for c in move.team if c in leaving)
    if not report.applied or actions is None:
        report.applied = False
        report.pending = sorted(leaving)
        return
    for move in report.moves:
        if move.new_team is None:
            continue
        gone = [c for c in move.team if c in leaving]
        outcome = await actions.reassign(
            who, move.loan_no, move.new_team, f"collector {', '.join(gone)} deactivated"
        )
        if not outcome.accepted:
            report.refused.append(f"{move.loan_no}: {outcome.message}")
            stuck.update(gone)
    done = sorted(leaving - stuck)
    if done:
        with sessions.begin() as session:
            for cid in done:
                collector = session.get(Collector, cid)
                assert collector is not None
                collector.active = False
                report.updated.append(f"{cid}: active True -> False")
        report.deactivated.extend(done)
    report.pending = sorted(stuck)
