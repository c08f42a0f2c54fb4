"""Safety-alert tasks that nobody can acknowledge any more (issue 15, weak signal review).

An alert's tasks close when the case acknowledges the alert (activities/safety.py). Some
cannot: a hostile visit's alert on a case that closed (a closed case waits for its calls for
help and overdue teams, not for a hostile visit's alert), an alert of a run that was
terminated or superseded by a new generation of the case. Those are left off the urgent
banner where the database can tell (`stale`), and a supervisor or branch head of the case's
branch may close one (`close_orphaned`) once the case says it no longer has the alert open:
role and branch checked here, audited either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from db.models import Case, Loan, Task
from domain.names import workflow_id
from domain.stages import AlertKind, TaskKind
from service import audit
from service.users import Principal, Role

CLOSERS = (Role.SUPERVISOR, Role.BRANCH_HEAD)
ACTION = "close_alert_task"
NOT_YOURS = "role: only a supervisor or branch head of the case's branch may do this (无权操作)"


@dataclass
class AlertKey:
    generation: str  # "" for the released code's keys
    alert_no: int
    prefix: str  # every task of the alert (both levels) starts with it


def alert_key(key: str, loan_no: str) -> AlertKey | None:
    """An alert task's key, `{loan}[:{generation}]:alert:{n}:{LEVEL}` (workflows/safety.py)."""
    found = re.fullmatch(re.escape(loan_no) + r"(?::([^:]*))?:alert:(\d+):[A-Z_]+", key)
    if found is None:
        return None
    return AlertKey(found[1] or "", int(found[2]), key.rsplit(":", 1)[0] + ":")


def stale(key: str, loan_no: str, generation: str, closed: bool, detail: str) -> bool:
    """Whether the case can no longer acknowledge the alert of this task, as far as the
    database tells: it belongs to an earlier generation of the case (a run terminated and
    started again), or it is a hostile visit's alert on a closed case (a closed case ends
    without waiting for those). A closed case's call for help or overdue team is not: the
    case waits for its acknowledgement before it ends."""
    parts = alert_key(key, loan_no)
    if parts is None:
        return False
    if superseded(parts, generation):
        return True
    return closed and f"({AlertKind.HOSTILE.value})" in detail


def superseded(parts: AlertKey, generation: str) -> bool:
    """The alert is of an earlier generation than the case's row (which takes each new
    generation at its first stage change; a row that has none yet tells nothing)."""
    return bool(generation) and parts.generation != generation


@dataclass
class Closed:
    ok: bool
    message: str


async def close_orphaned(
    sessions: sessionmaker[Session], client: Client, who: Principal, task_id: int, reason: str
) -> Closed:
    """Close an alert's open tasks that the case can no longer acknowledge, for a supervisor
    or branch head of the case's branch, with a reason; refused (and audited) otherwise."""
    with sessions() as session:
        row = session.execute(
            select(Task, Loan.loan_no, Case.branch_code, Case.generation)
            .join(Case, Case.id == Task.case_id)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Task.id == task_id, Task.kind == TaskKind.SAFETY_ALERT.value)
        ).first()
    loan_no = row[1] if row is not None else None
    parts = alert_key(row[0].key, row[1]) if row is not None else None
    if who.role not in CLOSERS or (row is not None and row[2] not in who.branches):
        message = NOT_YOURS
    elif row is None or parts is None:
        message = f"task_id: {task_id} is not a safety alert's task"
    elif row[0].status != "OPEN":
        message = f"task_id: alert {parts.alert_no}'s task is closed already"
    elif not reason.strip():
        message = "reason: say why the alert's task is closed (e.g. the team was reached)"
    elif not superseded(parts, row[3]) and (
        still := await _still_open(client, row[1], parts.alert_no)
    ) in (True, None):
        message = (
            f"alert_no: alert {parts.alert_no} is still open on the case; acknowledge it on "
            "the case page (请在案件页面确认警报)"
            if still
            else "alert_no: the case did not answer; try again in a while (稍后再试)"
        )
    else:
        with sessions.begin() as session:
            session.execute(
                update(Task)
                .where(
                    Task.kind == TaskKind.SAFETY_ALERT.value,
                    Task.key.startswith(parts.prefix, autoescape=True),
                    Task.status == "OPEN",
                )
                .values(status="DONE")
            )
        message = f"alert {parts.alert_no}'s task closed (警报任务已关闭): {reason.strip()[:200]}"
        audit.record(sessions, who.username, who.role.value, ACTION, "ACCEPTED", message, loan_no)
        return Closed(True, message)
    audit.record(
        sessions, who.username, who.role.value, ACTION, "REFUSED",
        f"task {task_id} -> {message}", loan_no,
    )  # fmt: skip
    return Closed(False, message)


async def _still_open(client: Client, loan_no: str, alert_no: int) -> bool | None:
    """Whether the case's run is going and has the alert open (it may be acknowledged);
    None when the case did not say (its worker down: then nothing is closed)."""
    from workflows.collection import LoanCollectionWorkflow as WF

    handle = client.get_workflow_handle(workflow_id(loan_no))
    try:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            return False  # ended, terminated: nobody acknowledges it any more
        status = await handle.query(WF.status)
    except RPCError as e:
        return False if e.status == RPCStatusCode.NOT_FOUND else None
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None
    return any(a.number == alert_no for a in status.alerts)
