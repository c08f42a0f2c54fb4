"""Local-time rules: quiet hours, contact caps, local dates. Pure functions of their inputs.

Workflows call these with `workflow.now()`; the SMS activity calls them again with its own
clock, so a rule is enforced twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from domain.policy import Policy


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: times must carry a time zone")


def local(moment: datetime, policy: Policy) -> datetime:
    _require_aware(moment)
    return moment.astimezone(zone(policy.timezone))


def local_date(moment: datetime, policy: Policy) -> date:
    return local(moment, policy).date()


def start_of_local_day(day: date, policy: Policy) -> datetime:
    """Midnight at the start of `day` in the borrower's time zone."""
    return datetime.combine(day, time(0, 0), tzinfo=zone(policy.timezone))


def end_of_local_day(day: date, policy: Policy) -> datetime:
    """The last second of `day` in the borrower's time zone: when an installment falls due."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone(policy.timezone))


def in_window(moment: datetime, window: tuple[int, int], policy: Policy) -> bool:
    """Whether `moment`'s local time lies in [start, end) (minutes after local midnight);
    a window may cross midnight. An empty window (start == end) holds nothing."""
    start, end = window
    if start == end:
        return False
    t = local(moment, policy)
    minute = t.hour * 60 + t.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # the window crosses midnight


def in_quiet_hours(moment: datetime, policy: Policy) -> bool:
    return in_window(moment, policy.quiet_hours, policy)


def quiet_hours_end(moment: datetime, policy: Policy) -> datetime:
    """`moment` itself when contact is allowed, else the first allowed moment after it."""
    if not in_quiet_hours(moment, policy):
        return moment
    _, end = policy.quiet_hours
    t = local(moment, policy)
    candidate = t.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if candidate <= t:
        candidate += timedelta(days=1)
    return candidate.astimezone(moment.tzinfo)


def quiet_hours_start(moment: datetime, policy: Policy) -> datetime | None:
    """The next start of quiet hours after `moment`, when contact must end; None when the
    policy has no quiet hours."""
    start, end = policy.quiet_hours
    if start == end:
        return None
    t = local(moment, policy)
    candidate = t.replace(hour=start // 60, minute=start % 60, second=0, microsecond=0)
    if candidate <= t:
        candidate += timedelta(days=1)
    return candidate.astimezone(moment.tzinfo)


def cap_release(moment: datetime, sent: Iterable[datetime], policy: Policy) -> datetime:
    """`moment` when one more message fits the daily and weekly caps, else when it will.

    Days and weeks are local calendar days and rolling seven-day windows of them.
    """
    today = local_date(moment, policy)
    days = [local_date(s, policy) for s in sent]
    today_count = sum(1 for d in days if d == today)
    week_count = sum(1 for d in days if today - d < timedelta(days=7))
    release = today
    if today_count >= policy.sms_per_day:
        release = today + timedelta(days=1)
    if week_count >= policy.sms_per_week:
        # The week frees up when the oldest day in the window leaves it.
        in_window = sorted(d for d in days if today - d < timedelta(days=7))
        excess = week_count - policy.sms_per_week
        release = max(release, in_window[excess] + timedelta(days=7))
    if release == today:
        return moment
    start_of_day = datetime.combine(release, time(0, 0), tzinfo=zone(policy.timezone))
    return quiet_hours_end(start_of_day, policy).astimezone(moment.tzinfo)


def next_contact_time(moment: datetime, sent: Iterable[datetime], policy: Policy) -> datetime:
    """The earliest moment from `moment` at which an SMS may go out under every rule."""
    sent = list(sent)
    t = moment
    for _ in range(10):  # each rule only moves time forward; a few rounds settle it
        nxt = quiet_hours_end(cap_release(t, sent, policy), policy)
        if nxt == t:
            return t
        t = nxt
    return t


def days_past_due(overdue_since: date, moment: datetime, policy: Policy) -> int:
    return max(0, (local_date(moment, policy) - overdue_since).days)
