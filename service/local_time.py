"""Whose clock a date or a bare time is read on: the branch's own time zone where it has one
(db: Branch.timezone), else the configured policy's. One place, so that `2026-12-10` on the
command line, in a form and in a payment feed means the same day for the same case.

A date given for a deadline means the end of that local day (`end_of_local_day`); a time
without an offset is local time; a time with an offset is taken as given.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Branch, Loan
from domain.policy import Policy
from domain.timerules import end_of_local_day, zone


def in_zone(policy: Policy, timezone: str | None) -> Policy:
    """The policy read on another clock: `timezone` if given, else the policy's own."""
    if not timezone or timezone == policy.timezone:
        return policy
    return policy.with_overrides({"timezone": timezone})


def branch_policy(sessions: sessionmaker[Session], branch: str | None, policy: Policy) -> Policy:
    """The configured policy on the branch's clock (an unknown branch: the policy's own)."""
    if not branch:
        return policy
    with sessions() as session:
        timezone = session.scalar(select(Branch.timezone).where(Branch.code == branch))
    return in_zone(policy, timezone)


def loan_policy(sessions: sessionmaker[Session], loan_no: str, policy: Policy) -> Policy:
    """The configured policy on the clock of the loan's branch (an unknown loan: the policy's)."""
    with sessions() as session:
        timezone = session.scalar(
            select(Branch.timezone)
            .join(Loan, Loan.branch_code == Branch.code)
            .where(Loan.loan_no == loan_no)
        )
    return in_zone(policy, timezone)


def local_moment(value: date | datetime, policy: Policy) -> datetime:
    """An aware time as given; a time without an offset on the policy's clock; a date: the
    end of that day there (a deadline, a hold's end, an installment falling due)."""
    if isinstance(value, datetime):
        aware = value.utcoffset() is not None
        return value if aware else value.replace(tzinfo=zone(policy.timezone))
    return end_of_local_day(value, policy)


def midday(day: date, policy: Policy) -> datetime:
    """Noon of a local date: the moment a payment known only by its date was made."""
    return datetime.combine(day, time(12, 0), tzinfo=zone(policy.timezone))
