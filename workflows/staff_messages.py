"""Messages of issue 15 (staff safety, legal review, complaints), mixed into the case's
workflow class so that workflows/collection.py stays the main loop and the older messages.
Each handler's body is in workflows/safety.py, workflows/complaints.py or here when short;
each validator is a pure rule of domain/human_input.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import phone_ops, visit_updates
from workflows.case import Case
from workflows.complaints import Complaints
from workflows.safety import Safety

with workflow.unsafe.imports_passed_through():
    from domain import human_input as check
    from domain.models import (
        AlertAck,
        AlertLocation,
        AppliedOpAsk,
        CaseState,
        CheckIn,
        CheckOut,
        ComplaintAction,
        ComplaintReport,
        HelpRequest,
        LegalDecisionRequest,
        LiftHostileTeam,
        UpdateAccepted,
        VisitLocation,
    )
    from domain.phone_actions import OP_ID_REUSED


def checked(rule: Callable[..., None], s: CaseState, request: Any, *rest: Any) -> None:
    """Run a pure check of human input; a refusal becomes the Update's rejection.

    A phone's action (sent with its own id, workflows/phone_ops.py) applied before, in this
    run or an earlier one, is let through to be answered as the first time, but only when it
    is the same Update with the same request: the same id on anything else is refused, never
    let past the rule. A new one has the time it was recorded bounded by the policy (the
    phone's clock, its queue's age)."""
    try:
        if (op := phone_ops.phone_op()) is not None:
            done = phone_ops.applied(s, op)
            if done is not None:
                if phone_ops.same_action(done, request):
                    return  # answered as the first time by the handler
                raise check.Refused(OP_ID_REUSED)
            check.check_offline_time(s.policy, request, workflow.now())
        rule(s, request, *rest)
    except check.Refused as refused:
        raise ApplicationError(str(refused), type="InvalidInput", non_retryable=True) from None


_checked = checked


class StaffMessages:
    """Update handlers; the workflow class sets these attributes in its init."""

    case: Case
    s: CaseState
    safety: Safety
    complaints: Complaints

    @workflow.update
    async def check_in(self, request: CheckIn) -> UpdateAccepted:
        return await self.safety.check_in(request)

    @check_in.validator
    def _validate_check_in(self, request: CheckIn) -> None:
        _checked(check.check_check_in, self.s, request, workflow.now())

    @workflow.update
    async def check_out(self, request: CheckOut) -> UpdateAccepted:
        if (done := phone_ops.repeated(self.s, request)) is not None:
            return done  # sent again by a phone after the case continued as new
        self.safety.check_out(request)
        return await visit_updates.report(self.case, self.safety, request.report)

    @check_out.validator
    def _validate_check_out(self, request: CheckOut) -> None:
        _checked(check.check_check_out, self.s, request, workflow.now())

    @workflow.update
    def need_help(self, request: HelpRequest) -> UpdateAccepted:
        return self.safety.need_help(request)

    @need_help.validator
    def _validate_help(self, request: HelpRequest) -> None:
        _checked(check.check_help, self.s, request, workflow.now())

    @workflow.update
    async def acknowledge_alert(self, ack: AlertAck) -> UpdateAccepted:
        return await self.safety.acknowledge(ack)

    @acknowledge_alert.validator
    def _validate_ack(self, ack: AlertAck) -> None:
        _checked(check.check_alert_ack, self.s, ack)

    @workflow.update
    def legal_decision(self, request: LegalDecisionRequest) -> UpdateAccepted:
        self.s.legal_decision = request
        self.case.note("legal", f"legal decision: {request.decision}", request.by)
        return UpdateAccepted(self.s.stage, f"legal decision taken: {request.decision}")

    @legal_decision.validator
    def _validate_legal(self, request: LegalDecisionRequest) -> None:
        _checked(check.check_legal_decision, self.s, request)

    @workflow.update
    async def record_complaint(self, report: ComplaintReport) -> UpdateAccepted:
        return await self.complaints.record(report)

    @record_complaint.validator
    def _validate_complaint(self, report: ComplaintReport) -> None:
        _checked(check.check_complaint, self.s, report, workflow.now())

    @workflow.update
    async def acknowledge_complaint(self, action: ComplaintAction) -> UpdateAccepted:
        return await self.complaints.acknowledge(action)

    @acknowledge_complaint.validator
    def _validate_complaint_ack(self, action: ComplaintAction) -> None:
        _checked(check.check_complaint_ack, self.s, action)

    @workflow.update
    async def resolve_complaint(self, action: ComplaintAction) -> UpdateAccepted:
        return await self.complaints.resolve(action)

    @resolve_complaint.validator
    def _validate_complaint_resolution(self, action: ComplaintAction) -> None:
        _checked(check.check_complaint_resolution, self.s, action)

    @workflow.update
    async def lift_hostile_team(self, request: LiftHostileTeam) -> UpdateAccepted:
        return await self.safety.lift_hostile(request)

    @lift_hostile_team.validator
    def _validate_lift_hostile(self, request: LiftHostileTeam) -> None:
        _checked(check.check_lift_hostile, self.s, request)

    # ------------------------------------------------------------------ queries

    @workflow.query
    def visit_location(self) -> VisitLocation | None:
        """Where the phone was at the check-in of the visit in progress, if it said: for the
        branch's supervisors only (the pages ask it for them; the status Query leaves it out)."""
        visit = self.s.visit
        if visit is None or visit.latitude is None or visit.longitude is None:
            return None
        return VisitLocation(visit.latitude, visit.longitude)

    @workflow.query
    def alert_locations(self) -> list[AlertLocation]:
        """Where the phones were when their collectors called for help, of the open alerts
        that said: for the branch's supervisors and heads only (as `visit_location`)."""
        return [
            AlertLocation(a.number, a.latitude, a.longitude)
            for a in self.s.alerts
            if a.latitude is not None and a.longitude is not None
        ]

    @workflow.query
    def applied_op(self, ask: AppliedOpAsk) -> UpdateAccepted | None:
        """The answer a phone's action got, if the case applied it: asked by its Update id,
        which holds the action and the user (domain/phone_actions.phone_update_id), so it
        answers nobody else and no other action; and by the request's digest, so the same
        id with another request is not answered as applied."""
        done = phone_ops.applied(self.s, ask.op_id)
        if done is None or done.digest != ask.digest:
            return None
        return phone_ops.answer(self.s, ask.op_id)
