"""Safety training on record (issue 15): who may go on a remote or hostile visit, and whose
training the dashboard and the supervisors' daily reminder list. Pure: the assignment
(activities/cases.py), the dashboard (service/portfolio.py) and the reminder
(activities/training_reminders.py) apply these rules to what the database holds.

A collector's `training_expires_on` is the last day the training is valid (inclusive), on
the branch's calendar. None recorded counts as untrained: nobody vouches for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

REMINDER_WORKFLOW_TYPE = "TrainingReminderWorkflow"
REMINDER_SCHEDULE_ID = "training-reminders"
REMINDER_PURPOSE = "staff_training"  # the SMS template (templates/sms/*/staff_training.txt.j2)
# At most this many collectors are named in one text (the rest are counted): the dashboard
# and the collectors page list them all.
NAMED_IN_TEXT = 5


class TrainingState(StrEnum):
    VALID = "VALID"
    EXPIRING = "EXPIRING"  # still valid, expires within the policy's window
    EXPIRED = "EXPIRED"
    MISSING = "MISSING"  # no training on record


STATE_ZH = {
    TrainingState.VALID: "有效",
    TrainingState.EXPIRING: "即将到期",
    TrainingState.EXPIRED: "已过期",
    TrainingState.MISSING: "无安全培训记录",
}


def training_state(expires_on: date | None, today: date, window_days: int) -> TrainingState:
    if expires_on is None:
        return TrainingState.MISSING
    if expires_on < today:
        return TrainingState.EXPIRED
    if expires_on <= today + timedelta(days=window_days):
        return TrainingState.EXPIRING
    return TrainingState.VALID


def may_visit_remote(expires_on: date | None, today: date) -> bool:
    """Whether a collector may be sent on a remote or hostile visit on `today`."""
    return expires_on is not None and expires_on >= today


@dataclass
class DueTraining:
    """A collector whose training the supervisor is reminded of."""

    collector_id: str
    name: str
    branch: str
    expires_on: date | None
    state: TrainingState

    def line(self) -> str:
        """`QX01-C01 王芳（已过期 2026-11-20）`: Chinese, as the text names them."""
        if self.state == TrainingState.MISSING:
            what = STATE_ZH[self.state]
        elif self.state == TrainingState.EXPIRED:
            what = f"已过期 {self.expires_on}"
        else:
            what = f"{self.expires_on}到期"
        return f"{self.collector_id} {self.name}（{what}）"


def reminder_text_params(due: list[DueTraining], window_days: int) -> dict[str, str]:
    """The reminder's SMS parameters: the collectors (the most urgent first, at most
    NAMED_IN_TEXT named), how many, and the window."""
    urgent = sorted(
        due,
        key=lambda d: (d.state != TrainingState.MISSING, d.expires_on or date.min, d.collector_id),
    )
    named = "、".join(d.line() for d in urgent[:NAMED_IN_TEXT])
    if len(urgent) > NAMED_IN_TEXT:
        named += f"等{len(urgent)}人"
    return dict(collectors=named, count=str(len(due)), days=str(window_days))


@dataclass
class ReminderInput:
    """What the Schedule starts TrainingReminderWorkflow with. `at`: the moment the reminder
    is for (its day names the reminder); None: the Schedule's time, else the workflow's now."""

    at: datetime | None = None


@dataclass
class ReminderRequest:
    at: datetime


@dataclass
class ReminderResult:
    day: str  # the policy's local date the reminder is for (ISO)
    texts_sent: int = 0  # sent by this run
    already_sent: int = 0  # sent earlier that day (a retried or repeated run)
    failed: int = 0  # the provider refused for good (kept on the outbox row)
    collectors: int = 0  # listed to at least one supervisor
    # Branches with collectors due whose supervisors have no mobile on file (none texted).
    unreached_branches: list[str] = field(default_factory=list)
