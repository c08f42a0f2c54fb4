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
# Providers limit a template variable's length (Tencent's to 12 characters for most kinds):
# the text says how many and the most urgent one; /collectors lists them all.
TEXT_VARIABLE_MAX = 12


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


def most_urgent(due: list[DueTraining]) -> list[DueTraining]:
    """No training on record first, then the earliest expiry (expired before expiring)."""
    return sorted(
        due,
        key=lambda d: (d.state != TrainingState.MISSING, d.expires_on or date.min, d.collector_id),
    )


def reminder_text_params(due: list[DueTraining]) -> dict[str, str]:
    """The reminder's SMS parameters, each short (TEXT_VARIABLE_MAX): how many collectors,
    and the most urgent one's id."""
    first = most_urgent(due)[0].collector_id
    if len(first) > TEXT_VARIABLE_MAX:
        first = first[: TEXT_VARIABLE_MAX - 1] + "…"
    return dict(count=str(len(due)), first=first)


@dataclass
class ReminderInput:
    """What the Schedule starts TrainingReminderWorkflow with. `at`: the moment the reminder
    is for (its day names the reminder); None: the Schedule's time, else the workflow's now."""

    at: datetime | None = None


@dataclass
class ReminderRequest:
    at: datetime


@dataclass
class DueReminder:
    """One supervisor's reminder of the day, as the workflow carries it: the user by id (their
    mobile is read when the text goes, and never enters the workflow's history), the outbox
    key, the branches whose collectors it lists, the branch that signs it, the parameters."""

    user_id: int
    key: str
    branches: list[str]
    signed_by: str
    params: dict[str, str]


@dataclass
class ReminderPlan:
    """The day's reminders (list_training_reminders): one per supervisor with a mobile and
    collectors due in their branches."""

    day: str  # the policy's local date the reminder is for (ISO)
    reminders: list[DueReminder] = field(default_factory=list)
    # Per branch with collectors due: how many.
    due: dict[str, int] = field(default_factory=dict)
    # Collectors due in a branch some supervisor with a mobile keeps (listed to someone).
    collectors: int = 0


# How one reminder ended (send_training_reminder).
SENT, ALREADY_SENT, FAILED, NO_RECIPIENT = "SENT", "ALREADY_SENT", "FAILED", "NO_RECIPIENT"


@dataclass
class ReminderSent:
    outcome: str  # SENT (or recorded) now, ALREADY_SENT that day, FAILED, NO_RECIPIENT
    status: str = ""  # the outbox's


@dataclass
class BranchReminder:
    """One branch's collectors due, and how its supervisors' texts ended."""

    branch: str
    collectors: int  # due
    sent: int = 0  # supervisors texted about them (this run or earlier that day)
    failed: int = 0  # texts the provider refused, or that failed after every retry
    reached: bool = False  # some supervisor was texted


@dataclass
class ReminderResult:
    day: str  # the policy's local date the reminder is for (ISO)
    texts_sent: int = 0  # sent by this run
    already_sent: int = 0  # sent earlier that day (a retried or repeated run)
    failed: int = 0  # refused for good, or failed after every retry (kept on the outbox row)
    collectors: int = 0  # due, in a branch a supervisor with a mobile keeps
    # Branches with collectors due whose supervisors were not texted (none with a mobile,
    # or every text failed): only a text that went counts.
    unreached_branches: list[str] = field(default_factory=list)
    branches: list[BranchReminder] = field(default_factory=list)
