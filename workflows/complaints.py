"""Complaints (投诉, issue 15): opened by the borrower's SMS (投诉 and its variants) or by a
collector from a visit or a call; acknowledged within the policy's working day(s), resolved
within its period, each deadline passed escalated to the branch head (a task), the outcome
sent to the borrower by SMS. While one is open, collection contact (texts, calls) pauses if
the policy says so (workflows/contact.py, collection-v4). Every step is a row in
`complaints` (activities/complaints.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.case import Case
from workflows.contact import send_sms

with workflow.unsafe.imports_passed_through():
    from domain.complaints import deadlines
    from domain.models import (
        Complaint,
        ComplaintAction,
        ComplaintRecord,
        ComplaintReport,
        UpdateAccepted,
    )
    from domain.names import Activities as A
    from domain.stages import CLOSED_STAGES, TaskKind


class Complaints:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.busy = False  # an outcome SMS is being sent: the run does not continue yet

    def open(self, source: str, summary: str, by: str, at: datetime, about: str = "") -> Complaint:
        """Decided at once (before any await): the complaint, its deadlines, the pause."""
        s = self.case.s
        s.complaints_made += 1
        ack_due, resolve_due = deadlines(at, s.policy)
        complaint = Complaint(
            s.complaints_made, source, summary[:500], at, ack_due, resolve_due,
            [about] if about else list(s.collectors), by,
        )  # fmt: skip
        s.complaints.append(complaint)
        s.complaint_seq += 1
        self.case.note("complaint", f"complaint {complaint.number} ({source}) received", by)
        return complaint

    async def opened(self, complaint: Complaint) -> None:
        case, s = self.case, self.case.s
        await self._record(complaint, "OPENED", complaint.by)
        await case.task(
            TaskKind.COMPLAINT,
            f"投诉 complaint {complaint.number} ({complaint.source}): {complaint.summary[:200]}; "
            f"acknowledge by {complaint.ack_due.isoformat()}",
            complaint.ack_due,
            assignees=[f"supervisor:{s.branch}"],
        )

    async def record(self, report: ComplaintReport) -> UpdateAccepted:
        complaint = self.open(
            report.source, report.summary, report.by, report.received_at, report.about
        )
        await self.opened(complaint)
        return UpdateAccepted(
            self.case.s.stage,
            f"complaint {complaint.number} recorded; acknowledge by "
            f"{complaint.ack_due.isoformat()}",
            complaint.number,
        )

    async def acknowledge(self, action: ComplaintAction) -> UpdateAccepted:
        s = self.case.s
        complaint = self._open(action)
        complaint.acknowledged_at, complaint.acknowledged_by = workflow.now(), action.by
        s.complaint_seq += 1
        self.case.note("complaint", f"complaint {complaint.number} acknowledged", action.by)
        await self._record(complaint, "ACKNOWLEDGED", action.by)
        return UpdateAccepted(s.stage, f"complaint {complaint.number} acknowledged", action.number)

    async def resolve(self, action: ComplaintAction) -> UpdateAccepted:
        case, s = self.case, self.case.s
        complaint = self._open(action)
        s.complaints = [c for c in s.complaints if c.number != action.number]
        s.complaint_seq += 1
        if complaint.acknowledged_at is None:
            complaint.acknowledged_at, complaint.acknowledged_by = workflow.now(), action.by
        s.complaint_outcomes.append(action)  # sent by the watcher, under the SMS rules
        case.note("complaint", f"complaint {complaint.number} resolved", action.by)
        await self._record(complaint, "RESOLVED", action.by, action.outcome)
        return UpdateAccepted(
            s.stage,
            f"complaint {complaint.number} resolved; the outcome goes to the borrower by SMS",
            action.number,
        )

    def _open(self, action: ComplaintAction) -> Complaint:
        """The open complaint an action names. The validator refused any other; one resolved
        by another Update accepted at the same time fails this Update, never the case."""
        for complaint in self.case.s.complaints:
            if complaint.number == action.number:
                return complaint
        raise ApplicationError(
            f"number: {action.number} is not an open complaint", type="InvalidInput",
            non_retryable=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ deadlines

    async def watch(self) -> None:
        s = self.case.s
        while True:
            seen = s.complaint_seq
            while s.complaint_outcomes:
                self.busy = True  # the case neither ends nor continues before the outcome
                try:
                    await self._send_outcome(s.complaint_outcomes[0])
                finally:
                    s.complaint_outcomes.pop(0)
                    self.busy = False
            now = workflow.now()
            for complaint in list(s.complaints):
                try:  # a failed step is noted; the watcher goes on (it is the only one)
                    if complaint.acknowledged_at is None and not complaint.ack_escalated:
                        if complaint.ack_due <= now:
                            complaint.ack_escalated = True
                            self.busy = True
                            await self._escalate(complaint, "ACK_OVERDUE", "acknowledged")
                    if not complaint.resolve_escalated and complaint.resolve_due <= now:
                        complaint.resolve_escalated = True
                        self.busy = True
                        await self._escalate(complaint, "RESOLVE_OVERDUE", "resolved")
                except Exception as e:  # noqa: BLE001 - never end the watcher silently
                    self.case.note("complaint", f"complaint {complaint.number}: {e}"[:300])
                finally:
                    self.busy = False
            if s.complaint_seq != seen:
                continue
            wake = self._next_wake()
            remaining = None if wake is None else max(wake - now, timedelta(milliseconds=1))
            try:
                await workflow.wait_condition(
                    lambda seen=seen: s.complaint_seq != seen, timeout=remaining
                )
            except TimeoutError:
                pass

    async def _send_outcome(self, action: ComplaintAction) -> None:
        """The outcome SMS, waiting for the contact window even if the case closes meanwhile;
        not sent (opted out, no number, a failure): a task to tell the borrower otherwise."""
        case, s = self.case, self.case.s
        params = {"complaint_no": str(action.number), "outcome": action.outcome}
        why = ""
        try:
            result = await send_sms(case, "complaint_outcome", params.copy, interruptible=False)
            if result.status not in ("SENT", "RECORDED"):
                why = result.reason or result.status
        except Exception as e:  # noqa: BLE001 - the outcome is never lost silently
            why = str(e)[:200] or type(e).__name__
        if not why:
            return
        if s.stage not in CLOSED_STAGES:  # a closed case's last line stays its closing
            case.note("complaint", f"complaint {action.number}: outcome SMS not sent ({why})")
        try:
            await case.task(
                TaskKind.COMPLAINT,
                f"投诉结果短信未发出 complaint {action.number}: the outcome SMS was not sent "
                f"({why}); tell the borrower by phone or at a visit: {action.outcome}",
                None,
                assignees=[f"supervisor:{s.branch}"],
            )
        except Exception as e:  # noqa: BLE001
            case.note("complaint", f"complaint {action.number}: no task ({e})"[:300])

    def _next_wake(self) -> datetime | None:
        times = []
        for c in self.case.s.complaints:
            if c.acknowledged_at is None and not c.ack_escalated:
                times.append(c.ack_due)
            if not c.resolve_escalated:
                times.append(c.resolve_due)
        return min(times) if times else None

    async def _escalate(self, complaint: Complaint, event: str, what: str) -> None:
        case, s = self.case, self.case.s
        case.note("complaint", f"complaint {complaint.number} not {what} in time: escalated")
        await case.task(
            TaskKind.COMPLAINT_OVERDUE,
            f"投诉逾期 complaint {complaint.number} not {what} by its deadline: "
            f"{complaint.summary[:200]}",
            None,
            assignees=[f"head:{s.branch}", f"supervisor:{s.branch}"],
        )
        await self._record(complaint, event, "system")

    async def _record(self, complaint: Complaint, event: str, by: str, outcome: str = "") -> None:
        s = self.case.s
        await self.case.act(
            A.RECORD_COMPLAINT,
            ComplaintRecord(s.loan_no, s.generation, complaint, event, workflow.now(), by, outcome),
        )
