"""A collector's safety training on record, as supervisors and the back office keep it: the
collectors page (/collectors) and `cli.main training` both go through `set_training`, which
checks who may (a supervisor of the collector's branch, or the back office, which imports
the collectors of every branch), reads the date, and writes the change with its audit line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent, Branch, Collector
from domain.policy import Policy
from domain.training import TrainingState, training_state
from service import audit
from service.users import Principal, Role

FIELD = "training_expires_on"
ACTION = "training_expiry"
EDITORS = (Role.SUPERVISOR, Role.BACK_OFFICE)
# A date this far ahead is a typo (2062 for 2026), not a training's validity.
MAX_YEARS_AHEAD = 10
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class TrainingError(ValueError):
    """A date that cannot be stored; the message names the field."""


class NotYours(LookupError):
    """No such collector, or not one this user keeps: answered as "not found"."""


@dataclass
class TrainingRow:
    """One collector as the collectors page lists them."""

    collector_id: str
    name: str
    branch: str
    active: bool
    training_expires_on: date | None
    state: str  # TrainingState


@dataclass
class TrainingChange:
    collector_id: str
    branch: str
    old: date | None
    new: date

    @property
    def message(self) -> str:
        before = self.old.isoformat() if self.old else "未登记 not recorded"
        return (
            f"{self.collector_id} 安全培训有效期已更新 training valid until: "
            f"{before} -> {self.new.isoformat()}"
        )


def parse_expiry(text: object, today: date) -> date:
    """YYYY-MM-DD (a browser's date field sends that), not more than MAX_YEARS_AHEAD ahead."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        raise TrainingError(f"{FIELD}: required, the last day the training is valid (YYYY-MM-DD)")
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        raise TrainingError(f"{FIELD}: {raw[:20]!r} is not a date (YYYY-MM-DD)") from None
    if day > today + timedelta(days=365 * MAX_YEARS_AHEAD):
        raise TrainingError(
            f"{FIELD}: {day} is more than {MAX_YEARS_AHEAD} years ahead (a typo in the year?)"
        )
    return day


def may_edit(who: Principal, branch: str) -> bool:
    if who.role == Role.BACK_OFFICE:
        return True
    return who.role == Role.SUPERVISOR and branch in who.branches


def _collector(session: Session, who: Principal, collector_id: str) -> Collector:
    if who.role not in EDITORS:
        raise NotYours(
            f"user: {who.username} is {who.role.value}; training dates are kept by a "
            "supervisor of the collector's branch or the back office"
        )
    collector = session.get(Collector, collector_id.strip())
    if collector is None or not may_edit(who, collector.branch_code):
        # The same answer for a collector of another branch: nothing to learn by guessing.
        raise NotYours(f"collector_id: no collector {collector_id.strip()!r} that you keep")
    return collector


def set_training(
    sessions: sessionmaker[Session], who: Principal, collector_id: str, value: object, now: datetime
) -> TrainingChange:
    """Store the collector's training validity (`value`: YYYY-MM-DD or a date). Raises
    NotYours (not found, or not this user's to edit) or TrainingError (naming the field); a
    refusal is in the audit trail too. The next assignment of a remote or hostile case reads
    the new date; so do the dashboard and the next daily reminder."""
    try:
        with sessions.begin() as session:
            collector = _collector(session, who, collector_id)
            branch = session.get(Branch, collector.branch_code)
            zone = branch.timezone if branch else Policy().timezone
            today = now.astimezone(ZoneInfo(zone)).date()  # the branch's calendar
            new = value if isinstance(value, date) else parse_expiry(value, today)
            change = TrainingChange(
                collector.id, collector.branch_code, collector.training_expires_on, new
            )
            collector.training_expires_on = new
            session.add(
                AuditEvent(
                    at=now, username=who.username[:64], role=who.role.value, action=ACTION,
                    loan_no=None, outcome="DONE",
                    detail=f"{change.collector_id} ({change.branch}): {FIELD} "
                    f"{change.old or '未登记 not recorded'} -> {change.new}",
                )
            )  # fmt: skip
            return change
    except (NotYours, TrainingError) as refused:
        audit.record(
            sessions, who.username[:64], who.role.value, ACTION, "REFUSED",
            f"{collector_id.strip()[:40]}: {refused}",
        )  # fmt: skip
        raise


def training_rows(
    sessions: sessionmaker[Session], who: Principal, now: datetime, window_days: int, policy: Policy
) -> list[TrainingRow]:
    """The collectors this user keeps (a supervisor: their branches; the back office: all),
    active first, with their training's state on their branch's today (as the assignment
    and the daily reminder judge it)."""
    query = select(Collector).order_by(Collector.active.desc(), Collector.id)
    if who.role != Role.BACK_OFFICE:
        query = query.where(Collector.branch_code.in_(who.branches))
    today = branch_today(sessions, now, policy)
    with sessions() as session:
        return [
            TrainingRow(
                c.id,
                c.name,
                c.branch_code,
                c.active,
                c.training_expires_on,
                training_state(c.training_expires_on, today(c.branch_code), window_days).value,
            )  # fmt: skip
            for c in session.scalars(query)
        ]


def branch_today(
    sessions: sessionmaker[Session], now: datetime, policy: Policy
) -> Callable[[str], date]:
    """Each branch's date at `now` on its own clock (a branch without one: the policy's)."""
    with sessions() as session:
        zones = {b.code: b.timezone for b in session.scalars(select(Branch))}

    def today(branch: str) -> date:
        return now.astimezone(ZoneInfo(zones.get(branch) or policy.timezone)).date()

    return today


def without_training(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Per branch, the active collectors with no safety training on record: none of them may
    go on a remote or hostile visit (a collector list imported without a training column)."""
    with sessions() as session:
        rows = session.execute(
            select(Collector.branch_code, func.count())
            .where(Collector.active.is_(True), Collector.training_expires_on.is_(None))
            .group_by(Collector.branch_code)
            .order_by(Collector.branch_code)
        ).all()
    return {branch: n for branch, n in rows}


def warn_without_training(sessions: sessionmaker[Session], log: logging.Logger) -> None:
    """At the worker's start: say how many active collectors each branch has with no training
    on record, and how to record it (since "no date = untrained", such a collector is passed
    over for every remote or hostile visit)."""
    try:
        missing = without_training(sessions)
    except Exception:  # noqa: BLE001 - a warning, never a reason not to start
        log.exception("could not count the collectors without safety training on record")
        return
    for branch, n in missing.items():
        log.warning(
            "branch %s: %d active collector(s) with no safety training on record (无安全培训"
            "记录): not sent on remote or hostile visits until a supervisor records it on "
            "/collectors or with `cli.main training`",
            branch, n,
        )  # fmt: skip


__all__ = [
    "EDITORS",
    "NotYours",
    "TrainingChange",
    "TrainingError",
    "TrainingRow",
    "TrainingState",
    "branch_today",
    "set_training",
    "training_rows",
    "warn_without_training",
    "without_training",
]
