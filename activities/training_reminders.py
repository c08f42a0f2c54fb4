"""The supervisors' daily safety-training reminder (issue 15): each active supervisor with a
mobile on file is texted, once a day, the collectors of their branches whose training has
expired, expires within the policy's `training_warning_days`, or is not on record. The text
goes the way safety alerts go (activities/sms.py `send_staff`: a staff text, outside the
borrower contact rules), keyed by the day and the supervisor: the outbox's unique key makes a
retried activity, or a second run the same day, send nothing new.
"""

from __future__ import annotations

import logging
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.sms import DONE, SmsActivities
from db.models import Branch, Collector, SmsOutbox, User
from domain.policy import Policy
from domain.stages import AlertLevel
from domain.timerules import local_date
from domain.training import (
    REMINDER_PURPOSE,
    DueTraining,
    ReminderRequest,
    ReminderResult,
    TrainingState,
    reminder_text_params,
    training_state,
)

log = logging.getLogger(__name__)

SEND_REMINDERS = "send_training_reminders"


def reminder_key(day: date, user_id: int) -> str:
    """The outbox's natural key: one reminder per supervisor per day."""
    return f"training-reminder:{day.isoformat()}:u{user_id}"


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

    @activity.defn(name=SEND_REMINDERS)
    def send_training_reminders(self, request: ReminderRequest) -> ReminderResult:
        day = local_date(request.at, self.policy)
        with self.sessions() as session:
            due = self._due(session, request)
            supervisors = [
                (u.id, u.username, u.mobile, [b for b in u.branches.split(",") if b])
                for u in session.scalars(
                    select(User)
                    .where(User.role == AlertLevel.SUPERVISOR.value, User.active.is_(True))
                    .order_by(User.id)
                )
            ]
        result = ReminderResult(day.isoformat())
        listed: set[str] = set()
        reached: set[str] = set()
        for user_id, username, mobile, branches in supervisors:
            theirs = [d for d in due if d.branch in branches]
            if not theirs:
                continue
            if not mobile:
                log.warning("training reminder: supervisor %s has no mobile on file", username)
                continue
            key = reminder_key(day, user_id)
            earlier = self._status(key)
            if earlier in DONE:
                status = earlier  # nothing new: a retry, or a second run that day
            else:
                params = reminder_text_params(theirs, self.policy.training_warning_days)
                status = self.sms.send_staff(
                    key, None, mobile, REMINDER_PURPOSE, params, branch_code=theirs[0].branch
                )
            went = status in ("SENT", "RECORDED")
            result.texts_sent += went and earlier not in DONE
            result.already_sent += went and earlier in DONE
            result.failed += not went
            listed.update(d.collector_id for d in theirs)
            reached.update(d.branch for d in theirs)
        result.collectors = len(listed)
        result.unreached_branches = sorted({d.branch for d in due} - reached)
        for branch in result.unreached_branches:
            log.warning("training reminder: no supervisor of %s with a mobile was texted", branch)
        log.info(
            "training reminder %s: %d texts sent, %d sent before, %d failed, %d collectors",
            day, result.texts_sent, result.already_sent, result.failed, result.collectors,
        )  # fmt: skip
        return result

    def _status(self, key: str) -> str | None:
        """This reminder's outbox status, if it was sent (or tried) before."""
        with self.sessions() as session:
            return session.scalar(select(SmsOutbox.status).where(SmsOutbox.key == key))
