"""The overdue-loan export from core banking: validate every row, upsert, start the cases.

A CSV (UTF-8 with or without BOM, GB18030) or an .xlsx workbook. Each field's column is
found by its synonyms (feeds/columns.py: 姓名/客户名称/借款人/户名, 未还本金/贷款余额/剩余本金,
...) or named in a mapping profile (feeds/profile.py); extra columns are ignored:

| field | required |
| --- | --- |
| loan_no | yes |
| branch | yes, a known branch's code or its registered name |
| id_number | yes, 18 characters |
| name | yes |
| phone | no (then no SMS); a mainland mobile or +country number |
| principal_yuan | yes |
| outstanding_principal_yuan | yes |
| interest_yuan, penalty_yuan | no |
| overdue_since | yes, a date (`csv_files.parse_date`), not in the future; or derived: |
| due_date | the overdue-since date is the due date (days past due = export date - due date) |
| days_overdue | the export date minus so many days; beside a date, the two must agree |
| monthly_income_yuan, address, village | no |
| remote | no: 是/否, yes/no, 1/0 |

The export date is `as_of` (`--as-of`), else the profile's `export_date`, else today on the
policy's clock. Amounts as `csv_files.yuan_to_fen` reads them. The outstanding principal is at
most the loan amount; interest plus penalty at most the policy's `max_interest_penalty_percent`
of it.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from db.models import Borrower, Branch, Case, Loan
from db.seed import LoanSpec
from domain.models import BranchMove
from domain.money import yuan
from domain.names import workflow_id
from domain.phones import PhoneError, normalize_phone
from domain.policy import Policy
from domain.stages import CLOSED_STAGES
from feeds.columns import LABELS, LOAN_FIELDS, ColumnMap
from feeds.csv_files import (
    FileError,
    RowError,
    Table,
    long_numbers,
    parse_date,
    rejected_path,
    text_field,
    write_rejected,
    yuan_to_fen,
)
from feeds.debt_updates import tell_cases
from feeds.profile import Profile, ProfileError, load_profile
from feeds.sheets import read_export
from service.case_start import start_case

# The fields of a loan, each with its synonyms (feeds/columns.py); the overdue-since date may
# instead be derived from one of DERIVED_FROM.
DERIVED_FROM = ("due_date", "days_overdue")
BRANCH_NAME = "branch_name"  # the branch by a column of names (a code there is read too)
COLUMNS: dict[str, tuple[str, ...]] = {
    k: v for k, v in LOAN_FIELDS.items() if k not in (*DERIVED_FROM, BRANCH_NAME)
}
DATE_FIELDS = ("overdue_since", "due_date")
REQUIRED = {
    "loan_no",
    "branch",
    "id_number",
    "name",
    "principal_yuan",
    "outstanding_principal_yuan",
    "overdue_since",
}
_LOAN_NO = re.compile(r"[A-Za-z0-9\-]{4,40}")
_ID_NUMBER = re.compile(r"\d{17}[\dXx]")
# What the mapping needs: overdue_since, or a column it is derived from.
NEEDED: list[str | tuple[str, ...]] = [
    *(sorted(REQUIRED - {"overdue_since", "branch"})),
    ("branch", BRANCH_NAME),
    ("overdue_since", *DERIVED_FROM),
]
MAX_DAYS_OVERDUE = 36_600  # a hundred years
_YES = {"是", "yes", "y", "1", "true"}
_NO = {"否", "no", "n", "0", "false", ""}


@dataclass
class IntakeReport:
    rows: int = 0
    good: list[LoanSpec] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    started: int = 0
    attached: int = 0
    # Loans whose case already ended (paid, cancelled, ...): not reopened by a feed.
    ended: list[str] = field(default_factory=list)
    # Loans this export moved to another branch: "loan: old → new"; their cases follow.
    moved: list[str] = field(default_factory=list)
    # Running cases told this export's new balances: "loan: old → new yuan" (feeds/debt_updates).
    debts: list[str] = field(default_factory=list)
    # The rejected rows, as written, with a reason column: to be corrected and sent again.
    rejected_file: Path | None = None
    table: Table | None = field(default=None, repr=False)
    # Which column fed which field, and the export date with where it came from.
    mapping: ColumnMap | None = None
    export_date: date | None = None
    export_date_from: str = ""

    def mapping_lines(self) -> list[str]:
        """What `intake --dry-run` prints before the rows: each field's column, and how the
        overdue-since date is derived when no column holds it."""
        if self.mapping is None:
            return []
        src = self.mapping.sources
        if "overdue_since" in src:
            how = str(src["overdue_since"])
            if "days_overdue" in src:
                how += f"; checked against {src['days_overdue']}"
            if "due_date" in src:
                how += f"; {src['due_date'].column} not used"
        elif "due_date" in src:
            how = f"derived 推算 from the due date {src['due_date']}"
            if "days_overdue" in src:
                how += f"; checked against {src['days_overdue']}"
        else:
            how = f"derived 推算: the export date minus the days of {src['days_overdue']}"
        lines = ["columns → fields (列 → 字段):"]
        for name in COLUMNS:
            if name == "branch" and "branch" not in src:
                lines.append(
                    f"  {name:<27} {LABELS[name]:<6} ← {src[BRANCH_NAME]} (a name or a code)"
                )
            elif name == "branch":
                lines.append(self.mapping.line(name) + " (a code or a name)")
                if BRANCH_NAME in src:
                    lines[-1] += f"; {src[BRANCH_NAME].column} not used"
            elif name == "overdue_since":
                lines.append(f"  {name:<27} {LABELS[name]:<6} ← {how}")
            else:
                lines.append(self.mapping.line(name))
        return [
            *lines,
            *self.mapping.rest(),
            f"export date 导出日期 {self.export_date} ({self.export_date_from})",
        ]


@dataclass(frozen=True)
class Branches:
    """The registered branches: by code, and by name when the name is one branch's."""

    codes: frozenset[str]
    by_name: dict[str, str]  # name → code
    shared: dict[str, list[str]]  # a name two branches have → their codes

    @staticmethod
    def of(branches: Iterable[str] | Mapping[str, str]) -> Branches:
        """Codes, or {code: name}."""
        names = dict(branches) if isinstance(branches, Mapping) else {}
        by: dict[str, list[str]] = {}
        for code, name in names.items():
            if name:
                by.setdefault(_norm(name), []).append(code)
        return Branches(
            frozenset(names or branches),
            {n: c[0] for n, c in by.items() if len(c) == 1},
            {n: sorted(c) for n, c in by.items() if len(c) > 1},
        )

    def resolve(self, line: int, value: str, errors: list[RowError]) -> str:
        if value in self.codes:
            return value
        name = _norm(value)
        if name in self.by_name:
            return self.by_name[name]
        if name in self.shared:
            errors.append(RowError(line, "branch", f"{value!r} is the name of branches "
                                   f"{', '.join(self.shared[name])}: give the code"))  # fmt: skip
        elif not value:
            errors.append(RowError(line, "branch", "missing"))
        else:
            errors.append(RowError(line, "branch", f"unknown branch {value[:40]!r} (neither "
                                   "a branch code nor a registered branch name)"))  # fmt: skip
        return ""


def _norm(name: str) -> str:
    return "".join(unicodedata.normalize("NFKC", name).split())


def parse_days(line: int, value: str, errors: list[RowError]) -> int | None:
    """'35', '３５', '35天' → 35; words, negatives, fractions refused with the field."""
    text = unicodedata.normalize("NFKC", value).strip().removesuffix("天").strip()
    if not text:
        errors.append(RowError(line, "days_overdue", "missing"))
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DAYS_OVERDUE:
        errors.append(RowError(line, "days_overdue", f"{value[:20]!r} is not a number of days "
                               f"(a whole number from 0 to {MAX_DAYS_OVERDUE})"))  # fmt: skip
        return None
    return int(text)


def _profile(profile: Profile | Path | None) -> Profile | None:
    if isinstance(profile, Path):
        return load_profile(profile, list(LOAN_FIELDS), DATE_FIELDS)
    return profile


def export_day(today: date, profile: Profile | None, as_of: date | None) -> tuple[date, str]:
    """The export's date and where it came from; never after today."""
    if as_of is not None:
        day, source = as_of, "as_of (--as-of)"
    elif profile is not None and profile.export_date is not None:
        day, source = profile.export_date, f"{profile.name} export_date"
    else:
        return today, "today 今天"
    if day > today:
        error = FileError if as_of is not None else ProfileError
        raise error(f"{source}: the export date {day} is after today {today}")
    return day, source


def overdue_since(
    line: int,
    cells: dict[str, str],
    export_date: date,
    today: date,
    profile: Profile | None,
    errors: list[RowError],
) -> date | None:
    """The overdue-since date: its own column, else the due date, else the export date minus
    the days overdue; a days count beside a date must agree with it."""
    fmt = profile.format_for if profile else (lambda _: None)
    days_given = "days_overdue" in cells and bool(cells["days_overdue"].strip())
    named, day = "", None
    for name in DATE_FIELDS:
        if name not in cells:
            continue
        if not cells[name].strip() and days_given:
            break  # the count says it
        before = len(errors)
        day = parse_date(line, name, cells[name], errors, fmt=fmt(name))
        named = name
        if day is not None and name == "overdue_since" and day > today:
            errors.append(RowError(line, name, "is in the future"))
        elif day is not None and name == "due_date" and day > export_date:
            errors.append(RowError(line, name, f"not yet due on the export date {export_date}"))
        if len(errors) > before:
            return None
        break
    if "days_overdue" not in cells or (named and not days_given):
        return day
    days = parse_days(line, cells["days_overdue"], errors)
    if days is None:
        return None
    counted = export_date - timedelta(days=days)
    if day is not None and day != counted:
        errors.append(RowError(line, "days_overdue", f"{days} days overdue on the export date "
                               f"{export_date} is since {counted}, but {named} says {day} "
                               f"({(export_date - day).days} days)"))  # fmt: skip
        return None
    return counted


def validate(
    path: Path,
    branches: Iterable[str] | Mapping[str, str],
    today: date,
    policy: Policy | None = None,
    *,
    profile: Profile | Path | None = None,
    as_of: date | None = None,
    mapped: Callable[[IntakeReport], None] | None = None,
) -> IntakeReport:
    """Every row validated. `branches`: the known codes, or {code: registered name} (then a
    branch column may hold either). `mapped` is called with the report once the columns are
    mapped, before any row is read (the mapping and the export date are in it)."""
    known = Branches.of(branches)
    max_percent = (policy or Policy()).max_interest_penalty_percent
    prof = _profile(profile)
    export_date, export_from = export_day(today, prof, as_of)
    table, cmap = read_export(path, LOAN_FIELDS, NEEDED, prof)
    report = IntakeReport(rows=len(table.rows), table=table, mapping=cmap)
    report.export_date, report.export_date_from = export_date, export_from
    if mapped is not None:
        mapped(report)
    seen: dict[str, int] = {}
    for line, cells in table.rows:
        errors = long_numbers(line, cells)
        loan_no = text_field(line, "loan_no", cells["loan_no"], errors)
        if loan_no and not _LOAN_NO.fullmatch(loan_no):
            errors.append(RowError(line, "loan_no", "letters, digits and dashes, 4 to 40"))
        elif loan_no in seen:
            errors.append(RowError(line, "loan_no", f"duplicate of row {seen[loan_no]}"))
        branch = known.resolve(line, cells.get("branch", cells.get(BRANCH_NAME, "")), errors)
        id_number = cells["id_number"].upper()
        if not _ID_NUMBER.fullmatch(id_number):
            errors.append(
                RowError(line, "id_number", "must be 18 characters (17 digits, then a digit or X)")
            )
        name = text_field(line, "name", cells["name"], errors, limit=100)
        phone: str | None = None
        if cells.get("phone"):
            try:
                phone = normalize_phone(cells["phone"])
            except PhoneError as e:
                errors.append(RowError(line, "phone", str(e).removeprefix("phone: ")))
        amounts = {
            c: yuan_to_fen(line, c, cells.get(c, ""), errors, required=c in REQUIRED)
            for c in (
                "principal_yuan",
                "outstanding_principal_yuan",
                "interest_yuan",
                "penalty_yuan",
                "monthly_income_yuan",
            )
        }
        errors.extend(sanity(line, amounts, max_percent, errors))
        overdue = overdue_since(line, cells, export_date, today, prof, errors)
        remote = cells.get("remote", "").lower()
        if remote not in _YES | _NO:
            errors.append(RowError(line, "remote", "must be 是/否 (yes/no)"))
        address = text_field(line, "address", cells.get("address", ""), errors, False, 300)
        village = text_field(line, "village", cells.get("village", ""), errors, False, 100)
        if loan_no and loan_no not in seen:
            seen[loan_no] = line
        if errors:
            report.errors.extend(errors)
            continue
        assert overdue is not None
        report.good.append(
            LoanSpec(
                loan_no=loan_no,
                branch=branch,
                id_number=id_number,
                name=name,
                phone=phone,
                principal_fen=amounts["principal_yuan"],
                outstanding_principal_fen=amounts["outstanding_principal_yuan"],
                interest_fen=amounts["interest_yuan"],
                penalty_fen=amounts["penalty_yuan"],
                overdue_since=overdue,
                monthly_income_fen=amounts["monthly_income_yuan"],
                remote=remote in _YES,
                village=village,
                address=address,
            )
        )
    return report


def sanity(
    line: int, amounts: dict[str, int], max_percent: int, errors: list[RowError]
) -> list[RowError]:
    """The figures against each other (only when each was read): the outstanding principal
    at most the loan amount, interest plus penalty at most `max_percent` % of it."""
    if {e.field for e in errors} & amounts.keys():
        return []
    principal, outstanding = amounts["principal_yuan"], amounts["outstanding_principal_yuan"]
    interest, penalty = amounts["interest_yuan"], amounts["penalty_yuan"]
    found = []
    if outstanding > principal:
        found.append(
            RowError(
                line,
                "outstanding_principal_yuan",
                f"{yuan(outstanding)} yuan outstanding is more than the loan amount "
                f"{yuan(principal)} yuan",
            )
        )
    base, named = (outstanding, "the outstanding principal")
    if not outstanding:  # the principal repaid, interest left: measured by the loan amount
        base, named = principal, "the loan amount"
    if (interest + penalty) * 100 > base * max_percent:
        found.append(
            RowError(
                line,
                "interest_yuan" if interest >= penalty else "penalty_yuan",
                f"interest {yuan(interest)} + penalty {yuan(penalty)} yuan is more than "
                f"{max_percent} % of {named} {yuan(base)} yuan (policy "
                "max_interest_penalty_percent)",
            )
        )
    return found


def upsert(session: Session, specs: list[LoanSpec]) -> None:
    """Borrowers by ID number, loans by loan number: new rows inserted, known ones updated."""
    borrowers = {
        b.id_number: b
        for b in session.scalars(
            select(Borrower).where(Borrower.id_number.in_({s.id_number for s in specs}))
        )
    }
    loans = {
        ln.loan_no: ln
        for ln in session.scalars(select(Loan).where(Loan.loan_no.in_([s.loan_no for s in specs])))
    }
    for s in specs:
        b = borrowers.get(s.id_number)
        if b is None:
            b = borrowers[s.id_number] = Borrower(id_number=s.id_number, household_size=1)
            session.add(b)
        b.name, b.phone, b.remote = s.name, s.phone, s.remote
        b.monthly_income_fen = s.monthly_income_fen
        b.address, b.village = s.address or (f"{s.village}村" if s.village else ""), s.village
    # One flush for all borrowers (batched INSERTs), not one round trip per row: the new
    # borrowers get their ids for the loans below.
    session.flush()
    for s in specs:
        b = borrowers[s.id_number]
        loan = loans.get(s.loan_no)
        if loan is None:
            loan = loans[s.loan_no] = Loan(loan_no=s.loan_no, product="", status="OVERDUE")
            session.add(loan)
        loan.borrower_id, loan.branch_code = b.id, s.branch
        loan.principal_fen = s.principal_fen
        loan.outstanding_principal_fen = s.outstanding_principal_fen
        loan.interest_fen, loan.penalty_fen = s.interest_fen, s.penalty_fen
        loan.overdue_since = s.overdue_since


async def intake(
    path: Path,
    sessions: sessionmaker[Session],
    client: Client | None,
    task_queue: str,
    policy: Policy,
    today: date,
    dry_run: bool = False,
    started_by: str = "intake",
    concurrency: int = 50,
    progress: Callable[[], None] | None = None,
    rejected: Path | None = None,
    *,
    profile: Profile | Path | None = None,
    as_of: date | None = None,
    mapped: Callable[[IntakeReport], None] | None = None,
) -> IntakeReport:
    """Validate the file; unless dry, write every good row in one transaction and start cases.

    Cases already running are attached to (the workflow id is the loan's), so running the same
    file again starts nothing new. Every run, dry or not, writes the rejected rows to
    `rejected` (by default export.rejected.csv beside the file): `report.rejected_file`.
    `profile`: a mapping profile (feeds/profile.py) or its TOML file; `as_of`: the export's
    date (over the profile's; default `today`); `mapped`: called with the report once the
    columns are mapped, before any row is validated (`report.mapping_lines()`). Raises
    FileError (ProfileError for the profile) when the file or the profile cannot be used.
    """
    with sessions() as session:
        branches = {c: n for c, n in session.execute(select(Branch.code, Branch.name))}
    report = validate(path, branches, today, policy, profile=profile, as_of=as_of, mapped=mapped)
    assert report.table is not None
    report.rejected_file = write_rejected(
        report.table, report.errors, rejected or rejected_path(path)
    )
    if dry_run or not report.good:
        return report
    with sessions.begin() as session:  # all good rows, or none if the database fails
        upsert(session, report.good)
    in_file = {s.loan_no: s.branch for s in report.good}
    with sessions() as session:
        cases = session.execute(
            select(Loan.loan_no, Case.branch_code, Case.stage)
            .join(Case, Case.loan_id == Loan.id)
            .where(Loan.loan_no.in_(list(in_file)))
        ).all()
    has_case = {loan_no for loan_no, _, _ in cases}
    # A running case whose branch is not the export's follows its loan; the case's own row
    # says where it is, so a move whose signal failed is signalled again by the next run.
    moves = {
        loan_no: (branch, in_file[loan_no])
        for loan_no, branch, stage in cases
        if branch != in_file[loan_no] and stage not in {s.value for s in CLOSED_STAGES}
    }
    if client is None:
        return report
    gate = asyncio.Semaphore(concurrency)

    async def start(spec: LoanSpec) -> None:
        async with gate:
            try:
                await start_case(client, task_queue, spec.loan_no, spec.branch, policy, started_by)
            except WorkflowAlreadyStartedError:
                report.ended.append(spec.loan_no)
        if progress:
            progress()

    await asyncio.gather(*(start(s) for s in report.good))
    for loan_no, (old, new) in moves.items():
        if loan_no in report.ended:
            continue
        try:
            handle = client.get_workflow_handle(workflow_id(loan_no))
            await handle.signal("branch_moved", BranchMove(new, started_by))
            report.moved.append(f"{loan_no}: {old} → {new}")
        except RPCError as error:
            report.moved.append(
                f"{loan_no}: {old} → {new} (the case was not told: {error.message}; "
                "run the same file again)"
            )
    running = [s for s in report.good if s.loan_no not in report.ended]
    # Cases already running learn the export's new balances (their debt, outstanding, lists).
    report.debts = await tell_cases(
        client,
        sessions,
        [s for s in running if s.loan_no in has_case],
        report.export_date or today,
        started_by,
        concurrency,
        progress,
    )
    report.attached = sum(1 for s in running if s.loan_no in has_case)
    report.started = len(running) - report.attached
    return report


class CancelRefused(ValueError):
    """Cancel-missing refused as a whole (nothing cancelled); the message says why."""


class UnknownBranch(CancelRefused):
    """A branch given to cancel-missing that does not exist (a bad argument)."""


# At most this share of the open cases in scope is cancelled without the exact count confirmed.
MAX_CANCEL_SHARE = 0.10


@dataclass
class CancelReport:
    rows: int = 0
    branches: list[str] = field(default_factory=list)  # in scope: listed and in the export
    absent: list[str] = field(default_factory=list)  # listed, not in the export: left alone
    # Listed and in the export, but with a row whose loan cannot be read: left alone.
    unsure: list[str] = field(default_factory=list)
    scope: int = 0  # open cases of the branches in scope
    candidates: list[str] = field(default_factory=list)  # open in scope, not in the export
    cancelled: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "loan: reason" the case refused
    errors: list[RowError] = field(default_factory=list)
    refusal: str = ""  # why the whole run was refused (nothing cancelled)
    applied: bool = False


async def cancel_missing(
    path: Path,
    sessions: sessionmaker[Session],
    client: Client | None,
    reason: str,
    by: str,
    branches: Iterable[str],
    *,
    apply: bool = False,
    max_share: float = MAX_CANCEL_SHARE,
    confirm_count: int | None = None,
) -> CancelReport:
    """Cancel the open cases of `branches` whose loans this export no longer lists (paid off
    elsewhere). A dry run unless `apply`.

    Only the branches both listed and present in the export are in scope: an export of one
    branch says nothing about the others. Refused as a whole (`CancelRefused`, or `FileError`
    for a file that is not a loan export) when the file has no rows, or when the cases to
    cancel are more than `max_share` of the open cases in scope and `confirm_count` is not
    their exact number. Each cancellation is written to the audit trail as `by`.
    """
    from domain.models import CloseRequest, UpdateAccepted
    from domain.stages import CLOSED_STAGES
    from service import audit

    listed = sorted(set(branches))
    with sessions() as session:
        registered = Branches.of(
            {c: n for c, n in session.execute(select(Branch.code, Branch.name))}
        )
    unknown = [b for b in listed if b not in registered.codes]
    if not listed or unknown:
        raise UnknownBranch(f"unknown branch {', '.join(unknown) or '(none given)'}")
    rows = read_export(path, LOAN_FIELDS, NEEDED)[0].rows  # FileError unless a loan export
    if not rows:
        raise CancelRefused("the export has no rows: it cannot say which loans are gone")
    report = CancelReport(rows=len(rows))
    exported: set[str] = set()
    present: set[str] = set()
    unsure: set[str] = set()
    for line, cells in rows:
        errors = long_numbers(line, cells)
        loan_no = text_field(line, "loan_no", cells["loan_no"], errors)
        branch = text_field(line, "branch", cells.get("branch", cells.get(BRANCH_NAME, "")), errors)
        branch = registered.resolve(line, branch, []) or branch  # a name as its code
        if branch:
            present.add(branch)
            if not loan_no:  # some loan of this branch is listed, but which one?
                unsure.add(branch)
        if loan_no:
            exported.add(loan_no)
        report.errors.extend(errors)
    report.absent = [b for b in listed if b not in present]
    report.unsure = [b for b in listed if b in unsure]
    report.branches = [b for b in listed if b in present and b not in unsure]
    with sessions() as session:
        open_loans = set(
            session.scalars(
                select(Loan.loan_no)
                .join(Case, Case.loan_id == Loan.id)
                .where(
                    Case.stage.not_in([s.value for s in CLOSED_STAGES]),
                    Loan.branch_code.in_(report.branches),
                )
            )
        )
    report.scope = len(open_loans)
    report.candidates = sorted(open_loans - exported)
    count = len(report.candidates)
    if confirm_count is not None and confirm_count != count:
        report.refusal = (
            f"--confirm-count {confirm_count}, but {count} cases would be cancelled; "
            "nothing cancelled"
        )
    elif count > max_share * report.scope and confirm_count != count:
        report.refusal = (
            f"{count} of the {report.scope} open cases of {', '.join(report.branches)} would be "
            f"cancelled, more than {max_share:.0%}; nothing cancelled. Check the export, then "
            f"confirm with --confirm-count {count}"
        )
    if not apply or report.refusal:
        return report
    report.applied = True
    if not report.candidates:
        return report
    if client is None:
        raise ValueError("a Temporal client is needed to cancel cases")
    request = CloseRequest("CANCELLED", reason, by)
    for loan_no in report.candidates:
        handle = client.get_workflow_handle(workflow_id(loan_no))
        try:
            answer = await handle.execute_update("close_case", request, result_type=UpdateAccepted)
            outcome, message = "ACCEPTED", answer.message
            report.cancelled.append(loan_no)
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            outcome = "REFUSED"
        except RPCError as e:  # ended meanwhile, or no such workflow
            outcome, message = "REFUSED", e.message
        if outcome == "REFUSED":
            report.refused.append(f"{loan_no}: {message}")
        audit.record(
            sessions,
            by,
            "BACK_OFFICE",
            "cancel_missing",
            outcome,
            f"CANCELLED: {reason} (not in {path.name}, branches {', '.join(report.branches)})"
            f" -> {message}",
            loan_no,
        )
    return report
