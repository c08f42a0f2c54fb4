"""Staff safety on visits (issue 15): when a checked-in team is expected back, when the
supervisor and then the branch head are alerted, and what the alert says. Pure: the
workflow's watcher (workflows/safety.py) keeps the timers, the activity (activities/safety.py)
writes the task and texts the staff."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.policy import Policy
from domain.stages import AlertKind
from domain.timerules import local

# SMS purposes for staff, not borrowers: never under the borrower contact rules (quiet
# hours, caps, opt-out), never on the borrower's record of contact.
STAFF_PURPOSES = frozenset({"staff_alert", "staff_training"})
# An alert's task when nobody at all (no supervisor, no head with a mobile) was texted.
URGENT = "【紧急 URGENT：无人收到短信 nobody was texted】"


def visit_times(arrived: datetime, remote: bool, policy: Policy) -> tuple[datetime, datetime]:
    """(expected back, supervisor alerted at) for a visit checked in at `arrived`: longer in
    a remote village, then the grace."""
    seconds = policy.visit_expected_remote_seconds if remote else policy.visit_expected_seconds
    expected = arrived + timedelta(seconds=seconds)
    return expected, expected + timedelta(seconds=policy.visit_overdue_grace_seconds)


def alert_detail(
    kind: AlertKind, collector_ids: list[str], since: datetime | None, policy: Policy
) -> str:
    """What the alert says (Chinese first): who, since when; never the borrower's name."""
    team = "、".join(collector_ids)
    at = f"{local(since, policy):%H:%M}" if since is not None else ""
    if kind == AlertKind.OVERDUE:
        return f"外访小组（{team}）{at}签到后超时未签退 / team not checked out since {at}"
    if kind == AlertKind.HELP:
        return f"外访小组（{team}）请求支援 / the team asks for help"
    return f"外访中借款人态度恶劣（{team}）/ hostile borrower at a visit"
