"""Complaints (投诉): their deadlines and what they pause. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.models import Complaint
from domain.policy import Policy
from domain.timerules import local

# Texts that are no collection contact: they go while a complaint pauses contact.
NOT_COLLECTION = frozenset({"complaint_outcome", "paid_in_full"})


def add_working_days(moment: datetime, days: int, policy: Policy) -> datetime:
    """`days` working days (Monday to Friday, local) after `moment`, at the same local time;
    a complaint made on a Saturday is due by the end of Monday's same hour + days."""
    at = local(moment, policy)
    left = days
    while left > 0 or at.weekday() >= 5:
        at = at + timedelta(days=1)
        if at.weekday() < 5:
            left -= 1
    return at


def deadlines(received: datetime, policy: Policy) -> tuple[datetime, datetime]:
    """(acknowledge by, resolve by)."""
    ack = add_working_days(received, policy.complaint_ack_working_days, policy)
    return ack, received + timedelta(seconds=policy.complaint_resolve_seconds)


def pausing(complaints: list[Complaint], policy: Policy) -> Complaint | None:
    """The open complaint that pauses collection contact, if the policy pauses it."""
    if not policy.complaint_pauses_contact or not complaints:
        return None
    return complaints[0]
