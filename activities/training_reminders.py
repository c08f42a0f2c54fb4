"""The supervisors' daily safety-training reminder (issue 15): each active supervisor with a
mobile on file is texted, once a day, how many collectors of their branches have a training
expired, expiring within the policy's `training_warning_days`, or not on record, and the
most urgent one. Two activities: one lists the day's reminders (by user id and outbox key:
no phone number enters the workflow's history), the other sends one supervisor's, so that
each text has its own timeout and retries and one recipient's failure holds up no other.

The text goes the way safety alerts go (activities/sms.py `send_staff`: a staff text,
outside the borrower contact rules), keyed by the day and the supervisor: the outbox's key
and its claim make a retried activity, or a second run the same day, send nothing new.
"""

from __future__ import annotations

import logging
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.sms import SmsActivities
from db.models import Branch, Collector, User
from domain.policy import Policy
from domain.privacy import mask_phone
from domain.stages import AlertLevel
from domain.timerules import local_date
from domain.training import (
    ALREADY_SENT,
    FAILED,
    NO_RECIPIENT,
    REMINDER_PURPOSE,
    SENT,
    DueReminder,
    DueTraining,
    ReminderPlan,
    ReminderRequest,
    ReminderSent,
    TrainingState,
    reminder_text_params,
    training_state,
)

log = logging.getLogger(__name__)

LIST_REMINDERS = "list_training_reminders"
SEND_REMINDER = "send_training_reminder"


def reminder_key(day: date, user_id: int) -> str:
    """The outbox's natural key: one reminder per supervisor per day."""
    return f"training-reminder:{day.isoformat()}:u{user_id}"


def _branches(user: User) -> list[str]:
    return [b for b in user.branches.split(",") if b]


class TrainingReminderActivities:
    def __init__(self, sessions: sessionmaker[Session], sms: SmsActivities, policy: Policy) -> None:
        self.sessions = sessions
        self.sms = sms
        self.policy = policy

    def _due(self, session: Session, request: ReminderRequest) -> list[DueTraining]:
        """Active collectors whose training is due, each judged on their branch's calendar."""
        zones = {b.code: b.timezone for b in session.scalars(select(Branch))}
        window = self.policy.training_warning_days
        due = []
        for c in session.scalars(
            select(Collector).where(Collector.active.is_(True)).order_by(Collector.id)
        ):
            zone = ZoneInfo(zones.get(c.branch_code) or self.policy.timezone)
            state = training_state(
                c.training_expires_on, request.at.astimezone(zone).date(), window
            )
            if state != TrainingState.VALID:
                due.append(DueTraining(c.id, c.name, c.branch_code, c.training_expires_on, state))
        return due

    @activity.defn(name=LIST_REMINDERS)
    def list_training_reminders(self, request: ReminderRequest) -> ReminderPlan:
        """The day's reminders: one per active supervisor with a mobile and collectors due."""
        day = local_date(request.at, self.policy)
        plan = ReminderPlan(day.isoformat())
        with self.sessions() as session:
            due = self._due(session, request)
            supervisors = list(
                session.scalars(
                    select(User)
                    .where(User.role == AlertLevel.SUPERVISOR.value, User.active.is_(True))
                    .order_by(User.id)
                )
            )
        for d in due:
            plan.due[d.branch] = plan.due.get(d.branch, 0) + 1
        listed: set[str] = set()
        for user in supervisors:
            theirs = [d for d in due if d.branch in _branches(user)]
            if not theirs:
                continue
            if not user.mobile:
                log.warning("training reminder: supervisor %s has no mobile on file", user.username)
                continue
            plan.reminders.append(
                DueReminder(
                    user.id,
                    reminder_key(day, user.id),
                    sorted({d.branch for d in theirs}),
                    theirs[0].branch,
                    reminder_text_params(theirs),
                )
            )
            listed.update(d.collector_id for d in theirs)
        plan.collectors = len(listed)
        return plan

    @activity.defn(name=SEND_REMINDER)
    def send_training_reminder(self, reminder: DueReminder) -> ReminderSent:
        """One supervisor's text of the day, to the mobile on file now."""
        with self.sessions() as session:
            user = session.get(User, reminder.user_id)
            mobile = user.mobile if user is not None and user.active else None
            name = user.username if user is not None else f"#{reminder.user_id}"
        if not mobile:  # deactivated, or the mobile removed since the list was made
            log.warning("training reminder: supervisor %s has no mobile on file now", name)
            return ReminderSent(NO_RECIPIENT)
        sent = self.sms.send_staff(
            reminder.key, None, mobile, REMINDER_PURPOSE, reminder.params,
            branch_code=reminder.signed_by,
        )  # fmt: skip
        if sent.went:
            return ReminderSent(ALREADY_SENT if sent.earlier else SENT, sent.status)
        log.warning(
            "training reminder %s to supervisor %s (%s) %s: not sent",
            reminder.key, name, mask_phone(mobile), sent.status,
        )  # fmt: skip
        return ReminderSent(FAILED, sent.status)
