"""Staff safety alerts (issue 15): a task for the branch's supervisors (or its head), an SMS
to each of their mobiles through the staff path of the outbox (activities/sms.py,
`send_staff`: outside the borrower rules), and a line in the audit trail. Each once, by the
alert's key, however often Temporal retries."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import not_found
from activities.sms import SmsActivities, attempt_deadline
from db.models import AuditEvent, Task, User
from db.repository import case_for_loan, insert_ignore, loan_by_no
from domain.models import AlertRequest, AlertSent, SafetyAudit
from domain.names import Activities as A
from domain.privacy import mask_key
from domain.safety import URGENT
from domain.stages import AlertLevel, TaskKind

log = logging.getLogger(__name__)
SYSTEM_ROLE = "SYSTEM"


def staff_of(session: Session, branch: str, level: AlertLevel) -> list[User]:
    """The branch's active supervisors (or heads) with a mobile on file."""
    users = session.scalars(
        select(User)
        .where(User.role == level.value, User.active.is_(True), User.mobile.is_not(None))
        .order_by(User.id)
    )
    return [u for u in users if branch in u.branches.split(",")]


def where(request: AlertRequest) -> str:
    """A call for help's location, for the task of the supervisors or heads it goes to (and
    nowhere else: not the audit line, the logs nor the texts)."""
    if request.latitude is None or request.longitude is None:
        return ""
    return f" · 求助位置 location: {request.latitude:.5f}, {request.longitude:.5f}"


def _audited(session: Session, loan_no: str, key: str) -> bool:
    """Whether the audit line of this key is written (its key ends its detail)."""
    marker = f"[{key}]"
    seen = session.scalar(
        select(AuditEvent.id).where(
            AuditEvent.loan_no == loan_no, AuditEvent.detail.endswith(marker)
        )
    )
    return seen is not None


def _close_alert_tasks(session: Session, prefix: str) -> None:
    """An acknowledged alert's tasks are done (the dashboard's urgent banner lists open ones)."""
    session.execute(
        update(Task)
        .where(
            Task.kind == TaskKind.SAFETY_ALERT.value,
            Task.key.startswith(prefix, autoescape=True),
            Task.status == "OPEN",
        )
        .values(status="DONE")
    )


def _audit_once(session: Session, key: str, values: dict[str, object]) -> bool:
    """One audit line per key (kept at the end of its detail); True when written now."""
    if _audited(session, str(values["loan_no"]), key):
        return False
    marker = f"[{key}]"
    values = dict(values, detail=f"{values['detail']} {marker}")
    session.add(AuditEvent(**values))
    return True


class SafetyActivities:
    def __init__(self, sessions: sessionmaker[Session], sms: SmsActivities) -> None:
        self.sessions = sessions
        self.sms = sms

    @activity.defn(name=A.RAISE_ALERT)
    def raise_safety_alert(self, request: AlertRequest) -> AlertSent:
        level = AlertLevel(request.level)
        role = "supervisor" if level == AlertLevel.SUPERVISOR else "head"
        deadline = attempt_deadline()  # one for every text of this attempt
        with self.sessions.begin() as session:
            loan = loan_by_no(session, request.loan_no)
            if loan is None:
                raise not_found(f"loan {request.loan_no} is not in the database")
            case = case_for_loan(session, loan, request.at)
            created = insert_ignore(
                session,
                Task,
                dict(
                    key=request.key,
                    case_id=case.id,
                    kind=TaskKind.SAFETY_ALERT.value,
                    assignees=f"{role}:{request.branch}",
                    due_at=request.at,
                    detail=f"安全警报 alert {request.alert_no} ({request.kind}): {request.detail}"
                    + where(request),
                    created_at=request.at,
                    status="OPEN",
                ),
                ["key"],
            )
            _audit_once(
                session,
                request.key,
                dict(
                    at=request.at, username="system", role=SYSTEM_ROLE, action="safety_alert",
                    loan_no=request.loan_no, outcome="DONE",
                    detail=f"alert {request.alert_no} ({request.kind}) to the {level.value}: "
                    f"{request.detail}",
                ),
            )  # fmt: skip
            recipients = [(u.id, u.mobile) for u in staff_of(session, request.branch, level)]
        params = dict(
            alert_no=str(request.alert_no),
            kind=request.kind,
            detail=request.detail,
            team="、".join(request.collector_ids),
        )
        texts = 0
        for user_id, mobile in recipients:
            assert mobile is not None
            key = f"{request.key}:u{user_id}"
            sent = self.sms.send_staff(
                key, request.loan_no, mobile, "staff_alert", params, deadline=deadline
            )
            texts += sent.went
        if not recipients:
            log.warning(
                "alert %s: no %s of %s has a mobile", mask_key(request.key), role, request.branch
            )
        if texts == 0 and level == AlertLevel.BRANCH_HEAD:
            self._mark_urgent(request)  # nobody at all was texted: the dashboard's banner
        if request.ack_key:
            # Acknowledged while this was sent: the acknowledgement closed the tasks it saw,
            # this closes its own (the task was committed above, the acknowledgement is read
            # after: one of the two always sees the other).
            with self.sessions.begin() as session:
                if _audited(session, request.loan_no, request.ack_key):
                    _close_alert_tasks(session, request.key.rsplit(":", 1)[0] + ":")
        return AlertSent(created, texts)

    def _mark_urgent(self, request: AlertRequest) -> None:
        """The alert's task marked URGENT (once, whatever the retries): shown in red on the
        dashboard of the branch's supervisors and heads until someone acknowledges it."""
        with self.sessions.begin() as session:
            task = session.scalar(select(Task).where(Task.key == request.key))
            if task is not None and not task.detail.startswith(URGENT):
                task.detail = f"{URGENT} {task.detail}"[:2000]

    @activity.defn(name=A.RECORD_SAFETY)
    def record_safety(self, event: SafetyAudit) -> None:
        with self.sessions.begin() as session:
            _audit_once(
                session,
                event.key,
                dict(
                    at=event.at, username=event.by[:64], role=SYSTEM_ROLE, action=event.action,
                    loan_no=event.loan_no, outcome="DONE", detail=event.detail,
                ),
            )  # fmt: skip
        if event.closes:  # after the audit line is committed (see raise_safety_alert)
            with self.sessions.begin() as session:
                _close_alert_tasks(session, event.closes)
