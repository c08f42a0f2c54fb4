"""The activities' notion of now."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity


def activity_now() -> datetime:
    """The later of the wall clock and the server's scheduling time of this attempt.

    In production the wall clock is the later one. Under the time-skipping test server the
    server's clock runs ahead of the wall clock, and the rules (quiet hours, caps) must see
    the case's time, not the test machine's.
    """
    wall = datetime.now(UTC)
    if activity.in_activity():
        scheduled = activity.info().current_attempt_scheduled_time
        if scheduled is not None and scheduled > wall:
            return scheduled.astimezone(UTC)
    return wall
