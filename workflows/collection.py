"""LoanCollectionWorkflow: one durable case per overdue loan.

The case is a state machine over `CaseState.stage`. This class holds the main loop, the
messages people and systems send (Updates with validators, Signals, the status Query) and
nothing else: each stage's steps are in `workflows/stages/`, the effects they share in
`workflows/case.py`, SMS under the contact rules in `workflows/contact.py`, and decisions
that need no Temporal in `domain/` (case_rules, installments, human_input).

A payment that clears the debt, a supervisor's close request and a hardship hold cut any
wait short (`Interrupted`); the main loop then closes the case or puts it on hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import contact_updates, debt, payments, promises, visit_updates
from workflows.case import EXPECTED, Case, Interrupted
from workflows.complaints import Complaints
from workflows.contact import send_sms
from workflows.safety import Safety
from workflows.staff_messages import StaffMessages
from workflows.staff_messages import checked as _checked
from workflows.stages import (
    agreement_signing,
    field_visit,
    follow_up,
    initial_contact,
    investigation,
    legal_review,
    negotiation,
    on_hold,
)

with workflow.unsafe.imports_passed_through():
    from domain import human_input as check
    from domain.installments import statuses
    from domain.models import (
        AssignRequest,
        BorrowerReply,
        BranchMove,
        CallReport,
        CaseInput,
        CaseResult,
        CaseState,
        CaseStatus,
        CloseRequest,
        ConsentChange,
        DebtUpdate,
        DeliveryFailure,
        HardshipHold,
        Hold,
        Installment,
        LiftHold,
        PaymentPosted,
        PaymentRecord,
        Plan,
        PlanProposal,
        PromiseRequest,
        Reassignment,
        SignatureConfirmation,
        SignatureRecord,
        ThirdPartyMessage,
        UpdateAccepted,
        VisitReport,
        WaiverDecision,
        WaiverProposal,
    )
    from domain.money import yuan
    from domain.names import WORKFLOW_TYPE
    from domain.names import Activities as A
    from domain.plans import plan_policy
    from domain.promises import check_promise, check_waiver_decision, check_waiver_proposal
    from domain.rulebook import has_consent, unanswered_today
    from domain.stages import CLOSED_STAGES, ConsentKind, ReplyIntent, Stage, TaskKind

# collection-v6: the waits the stages can tell in advance (workflows/case.py row_next_action).
EXPECTED[Stage.FOLLOW_UP] = follow_up.expected
EXPECTED[Stage.ON_HOLD] = on_hold.expected

STEPS: dict[Stage, Callable[[Case], Awaitable[None]]] = {
    Stage.INVESTIGATION: investigation.run,
    Stage.INITIAL_CONTACT: initial_contact.run,
    Stage.FIELD_VISIT: field_visit.run,
    Stage.NEGOTIATION: negotiation.run,
    Stage.AGREEMENT_SIGNING: agreement_signing.run,
    Stage.FOLLOW_UP: follow_up.run,
    Stage.ON_HOLD: on_hold.run,
    Stage.LEGAL_REVIEW: legal_review.run,
}


@workflow.defn(name=WORKFLOW_TYPE)
class LoanCollectionWorkflow(StaffMessages):
    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        if inp.state is not None:
            state = inp.state
            state.runs += 1
        else:
            now = workflow.now()
            state = CaseState(
                loan_no=inp.loan_no,
                branch=inp.branch,
                policy=inp.policy,
                stage=Stage.INVESTIGATION,
                stage_since=now,
                opened_at=now,
                started_by=inp.started_by,
            )
        self.case = Case(state)
        self.s = state
        self.safety = Safety(self.case)
        self.complaints = Complaints(self.case)

    # ------------------------------------------------------------------ main loop

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        case, s = self.case, self.s
        # Staff safety's timers (workflows/safety.py): idle, with no command, until a team
        # checks in or an alert is raised, so runs without them replay as before.
        watchers = [asyncio.create_task(w()) for w in (self.safety.watch, self.complaints.watch)]
        if case.versions.v5():  # asked first: a run that began without it keeps its ways
            watchers.append(asyncio.create_task(case.visibility.watch(lambda: not case.acting)))
            if case.versions.v6() and not s.next_action_rows:  # asked at the start too
                # The NextActionAt a released run published (or none, a new case): from
                # now on unset while the case row has the next action (workflows/case.py).
                s.next_action_shown, s.next_action_rows = s.next_action_at, True
        if inp.state is None:
            if case.versions.v4():  # the caller's generation survives a workflow reset
                s.generation = inp.generation or workflow.info().run_id[:8]
                s.overdue_attribute = True
            if case.versions.v5():
                case.visibility.from_start()
            case.note("stage", f"case opened at {Stage.INVESTIGATION}", inp.started_by)
            await case.record_transition(None, "case opened", inp.started_by)
        elif case.versions.v2():
            if case.versions.v5() and s.outstanding_shown is None:
                s.outstanding_shown = case.outstanding()  # what a released run published
            if not s.overdue_attribute and case.versions.v4():
                s.overdue_attribute = True  # a released case's new run: the new attributes
                case.visibility.publish()
            else:
                case.visibility.inherit()  # carried over by continue-as-new
        else:
            case.visibility.publish()
        self._waivers = asyncio.create_task(promises.watch_waivers(case))  # no command idle
        while s.stage not in CLOSED_STAGES:
            closing = case.closing_decision()
            if closing is not None:
                if closing[0] == Stage.PAID_IN_FULL:
                    thanks = {"amount_fen": str(s.paid_fen)}
                    await send_sms(case, "paid_in_full", thanks.copy, may_wait=False)
                await case.enter(*closing)
                break
            if s.hold is not None and s.stage != Stage.ON_HOLD:
                await case.enter(
                    Stage.ON_HOLD,
                    f"hardship hold until {s.hold.until.isoformat()}: {s.hold.reason}",
                    s.hold.by,
                )
                continue
            try:
                if promises.waiting_for_promise(case):
                    await promises.wait(case)
                    continue
                await STEPS[s.stage](case)
            except Interrupted:
                continue
            if s.stage not in CLOSED_STAGES and (
                s.cycle_done or workflow.info().is_continue_as_new_suggested()
            ):
                if case.versions.v2() and case.closing_decision() is not None:
                    s.cycle_done = False
                    continue  # paid in full (or closing): close here, not in a new run
                if s.cycle_done and case.versions.run_has_room():
                    s.cycle_done = False
                    continue  # the next cycle in this run
                # One condition: a handler that starts while the case is busy must not be
                # cut off by the continue-as-new once the case is idle.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and self._idle()
                )
                s.cycle_done = False
                case.visibility.flush(final=True)
                workflow.continue_as_new(
                    CaseInput(s.loan_no, s.branch, s.policy, s.started_by, state=s)
                )
        await promises.close_open(case)  # an open promise or request closes with the case
        outstanding = case.outstanding()
        if outstanding is not None and outstanding < 0:
            await case.task(
                TaskKind.REFUND_OVERPAYMENT,
                f"overpaid by {yuan(-outstanding)} yuan: refund the borrower",
                None,
            )
        # Nobody is forgotten: a closed case still waits for its team's check-out and for
        # every safety alert to be acknowledged.
        await workflow.wait_condition(lambda: self.safety.settled() and self._idle())
        for watcher in watchers:
            watcher.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if case.versions.v5():
            case.show_outstanding()  # the ended case's lists: its last amount
        case.visibility.flush(final=True)
        last = s.history[-1].detail if s.history else ""
        return CaseResult(
            loan_no=s.loan_no,
            outcome=s.stage,
            closed_at=s.stage_since,
            debt_fen=s.debt_fen or 0,
            paid_fen=s.paid_fen,
            outstanding_fen=max(0, case.outstanding() or 0),
            reason=last,
        )

    def _idle(self) -> bool:
        """No alert and no complaint outcome SMS being sent (their watchers' activities)."""
        return not self.safety.busy and not self.complaints.busy

    # ------------------------------------------------------------------ updates (human input)

    @workflow.update
    async def report_visit(self, report: VisitReport) -> UpdateAccepted:
        return await visit_updates.report(self.case, self.safety, report)

    @report_visit.validator
    def _validate_visit(self, report: VisitReport) -> None:
        _checked(check.check_visit_report, self.s, report, workflow.now())

    @workflow.update
    async def propose_plan(self, proposal: PlanProposal) -> UpdateAccepted:
        s = self.s
        s.plans_made += 1
        plan = Plan(
            debt_fen=s.debt_fen,
            principal_fen=s.principal_fen,
            interest_fen=s.interest_fen,
            penalty_fen=s.penalty_fen,
            waived_fen=s.waived_fen,
            number=s.plans_made,
            installments=[
                Installment(n, i.due_at, i.amount_fen)
                for n, i in enumerate(proposal.installments, start=1)
            ],
            proposed_by=proposal.proposed_by,
            accepted_at=workflow.now(),
            base_paid_fen=s.paid_fen,
            first_is_down_payment=proposal.first_is_down_payment,
            notes=proposal.notes,
        )
        s.pending_plan = plan
        self.case.note("plan", f"plan {plan.number} accepted", proposal.proposed_by)
        return UpdateAccepted(
            s.stage,
            f"plan {plan.number} accepted: {len(plan.installments)} installments, "
            f"{yuan(plan.total_fen)} yuan; the agreement will be prepared for signature",
            plan.number,
        )

    @propose_plan.validator
    def _validate_plan(self, proposal: PlanProposal) -> None:
        outstanding = self.case.outstanding()
        _checked(check.check_plan_proposal, self.s, proposal, outstanding, workflow.now())

    @workflow.update
    async def confirm_signature(self, confirmation: SignatureConfirmation) -> UpdateAccepted:
        s = self.s
        record = SignatureRecord(s.loan_no, confirmation)
        first_record = not self.case.versions.v4()
        if first_record:
            await self.case.act(A.RECORD_SIGNATURE, record)
        s.signed_version = confirmation.version
        self.case.note(
            "agreement",
            f"version {confirmation.version} signed at {confirmation.place}",
            confirmation.collector_id,
        )
        if not first_record:  # collection-v4: signed first, as in report_visit
            await self.case.act(A.RECORD_SIGNATURE, record)
        return UpdateAccepted(
            s.stage, f"agreement version {confirmation.version} signed", confirmation.version
        )

    @confirm_signature.validator
    def _validate_signature(self, confirmation: SignatureConfirmation) -> None:
        _checked(check.check_signature, self.s, confirmation, workflow.now())

    @workflow.update
    async def reassign(self, request: Reassignment) -> UpdateAccepted:
        s = self.s
        visit = s.visit
        done = await self.case.assign(
            AssignRequest(
                s.loan_no,
                s.branch,
                len(request.collector_ids),
                requested=list(request.collector_ids),
                by=request.by,
                reason=request.reason,
            )
        )
        if not done and visit is not None:
            return UpdateAccepted(
                s.stage,
                f"外访进行中，签退后生效 / visit {visit.number} is checked in: "
                f"{', '.join(request.collector_ids)} take over once it checks out",
            )
        # The new collector shows in lists at once, not at the next wait.
        self.case.visibility.flush()
        return UpdateAccepted(s.stage, f"assigned to {', '.join(s.collectors)}")

    @reassign.validator
    def _validate_reassign(self, request: Reassignment) -> None:
        _checked(check.check_reassignment, self.s, request)

    @workflow.update
    def hold(self, request: HardshipHold) -> UpdateAccepted:
        s = self.s
        if s.hold is None:
            s.hold = Hold(request.until, request.reason, request.by, since=workflow.now())
        else:
            s.hold.until, s.hold.reason = request.until, request.reason
        self.case.note(
            "hold", f"hold until {request.until.isoformat()}: {request.reason}", request.by
        )
        return UpdateAccepted(s.stage, f"collection paused until {request.until.isoformat()}")

    @hold.validator
    def _validate_hold(self, request: HardshipHold) -> None:
        _checked(check.check_hold, self.s, request, workflow.now())

    @workflow.update
    def lift_hold(self, request: LiftHold) -> UpdateAccepted:
        s = self.s
        if s.hold is None:  # lifted by another Update accepted at the same time
            raise ApplicationError(
                "stage: the case is not on hold", type="InvalidInput", non_retryable=True
            )
        s.hold.until = workflow.now()
        self.case.note("hold", f"hold lifted: {request.reason}", request.by)
        return UpdateAccepted(s.stage, "hold lifted; collection resumes")

    @lift_hold.validator
    def _validate_lift(self, request: LiftHold) -> None:
        _checked(check.check_lift_hold, self.s, request)

    @workflow.update
    def close_case(self, request: CloseRequest) -> UpdateAccepted:
        self.s.close_request = request
        return UpdateAccepted(self.s.stage, f"case will close as {request.outcome}")

    @close_case.validator
    def _validate_close(self, request: CloseRequest) -> None:
        # overdue_attribute is set by every collection-v4 run (new or carried over): the
        # legal review's rule for v4 only; released runs close as before.
        _checked(check.check_close, self.s, request, self.s.overdue_attribute)

    @workflow.update
    async def record_call(self, report: CallReport) -> UpdateAccepted:
        return await contact_updates.record_call(self.case, report)

    @record_call.validator
    def _validate_call(self, report: CallReport) -> None:
        _checked(check.check_call, self.s, report, workflow.now())

    @workflow.update
    async def record_consent(self, change: ConsentChange) -> UpdateAccepted:
        return await contact_updates.record_consent(self.case, change)

    @record_consent.validator
    def _validate_consent(self, change: ConsentChange) -> None:
        _checked(check.check_consent, self.s, change, workflow.now())

    @workflow.update
    async def contact_third_party(self, message: ThirdPartyMessage) -> UpdateAccepted:
        return await contact_updates.contact_third_party(self.case, message)

    @contact_third_party.validator
    def _validate_third_party(self, message: ThirdPartyMessage) -> None:
        lost = self.case.contact_lost()
        _checked(check.check_third_party, self.s, message, lost, workflow.now())

    @workflow.update
    async def record_promise(self, request: PromiseRequest) -> UpdateAccepted:
        return await promises.record_promise(self.case, request)

    @record_promise.validator
    def _validate_promise(self, request: PromiseRequest) -> None:
        _checked(check_promise, self.s, request, self.case.outstanding(), workflow.now())

    @workflow.update
    async def propose_waiver(self, proposal: WaiverProposal) -> UpdateAccepted:
        return await promises.propose_waiver(self.case, proposal)

    @propose_waiver.validator
    def _validate_waiver(self, proposal: WaiverProposal) -> None:
        _checked(check_waiver_proposal, self.s, proposal, self.case.outstanding())

    @workflow.update
    async def decide_waiver(self, decision: WaiverDecision) -> UpdateAccepted:
        return await promises.decide_waiver(self.case, decision)

    @decide_waiver.validator
    def _validate_decision(self, decision: WaiverDecision) -> None:
        _checked(check_waiver_decision, self.s, decision, workflow.now())

    # ------------------------------------------------------------------ signals (facts)

    @workflow.signal
    async def payment_posted(self, payment: PaymentPosted) -> None:
        case, s = self.case, self.s
        counted = False
        if not payment.reference.strip() or payment.amount_fen <= 0:
            case.note("payment", f"ignored payment {payment.reference!r}: no reference or amount")
        elif payment.reference in s.payment_refs:
            case.note("payment", f"payment {payment.reference} already counted")
        elif case.versions.v4():
            await payments.count_payment(case, payment)
            return
        else:
            counted = True
            s.payment_refs.append(payment.reference)
            s.paid_fen += payment.amount_fen
            payments.towards_promise(case, payments.ledger_entry(case, payment))
            case.note("payment", f"{yuan(payment.amount_fen)} yuan ({payment.reference})")
            case.visibility.publish()
        await case.act(
            A.RECORD_PAYMENT,
            PaymentRecord(s.loan_no, payment, counted, s.paid_fen, case.outstanding()),
        )

    @workflow.signal
    async def branch_moved(self, move: BranchMove) -> None:
        """The loan belongs to another branch now: its collectors and supervisors take over."""
        s = self.s
        if s.stage in CLOSED_STAGES or not move.branch.strip() or move.branch == s.branch:
            return
        previous, s.branch = s.branch, move.branch
        self.case.note("assignment", f"loan moved from branch {previous} to {s.branch}", move.by)
        self.case.visibility.publish()
        # Always, even mid-investigation: an assignment in flight holds the lock, so this one
        # follows it and replaces collectors it found in the old branch.
        team = max(len(s.collectors), self.case.team_size())
        await self.case.assign(
            AssignRequest(
                s.loan_no, s.branch, team, by=move.by, reason=f"loan moved from {previous}"
            )
        )

    @workflow.signal
    async def debt_updated(self, update: DebtUpdate) -> None:
        """A later export's balances for the loan (workflows/debt.py)."""
        await debt.apply_update(self.case, update)

    @workflow.signal
    def sms_delivery_failed(self, failure: DeliveryFailure) -> None:
        self.case.delivery_failed(failure)

    @workflow.signal
    async def borrower_reply(self, reply: BorrowerReply) -> None:
        s = self.s
        if reply.message_sid in s.reply_sids:
            return
        s.reply_sids = (s.reply_sids + [reply.message_sid])[-50:]
        self.case.note("reply", f"borrower replied: {reply.intent}", "borrower")
        s.failures_in_row = 0
        if reply.intent == ReplyIntent.OPT_OUT:
            s.opted_out = True
        elif reply.intent == ReplyIntent.ACKNOWLEDGED:
            s.acknowledged = True
        elif reply.intent == ReplyIntent.COMPLAINT:
            complaint = self.complaints.open("SMS", "borrower complained by SMS", "borrower",
                                             reply.received_at)  # fmt: skip
            await self.complaints.opened(complaint)
            if reply.claims_paid:  # 我已还款但要投诉: the payment is checked besides
                await self.case.task(
                    TaskKind.CHECK_CLAIMED_PAYMENT,
                    "borrower says they paid (in a complaint): check the account",
                    None,
                )
        elif reply.intent == ReplyIntent.CLAIMS_PAID:
            await self.case.task(
                TaskKind.CHECK_CLAIMED_PAYMENT, "borrower says they paid: check the account", None
            )
        else:
            await self.case.task(
                TaskKind.READ_REPLY, "borrower replied by SMS: read and answer", None
            )

    # ------------------------------------------------------------------ query

    @workflow.query
    def status(self) -> CaseStatus:
        case, s = self.case, self.s
        return CaseStatus(
            loan_no=s.loan_no,
            branch=s.branch,
            stage=s.stage,
            stage_since=s.stage_since,
            next_action=s.next_action,
            next_action_at=s.next_action_at,
            collectors=list(s.collectors),
            risk_tier=s.risk_tier,
            strategy=s.strategy,
            team_required=s.team_required,
            debt_fen=s.debt_fen,
            paid_fen=s.paid_fen,
            outstanding_fen=case.outstanding(),
            days_past_due=case.dpd(),
            plan_number=s.plan.number if s.plan else None,
            installments=statuses(
                s.plan,
                s.paid_fen,
                workflow.now(),
                timedelta(seconds=s.policy.reminder_lead_seconds),
            ),
            agreement=s.agreement,
            signed_version=s.signed_version,
            hold=s.hold,
            opted_out=s.opted_out,
            counters=s.counters,
            history=list(s.history),
            policy_version=s.policy.version,
            run=s.runs,
            team_size=self.case.team_size(),
            night_consent=has_consent(s.consents, ConsentKind.NIGHT_CONTACT),
            contact_lost=self.case.contact_lost(),
            unanswered_calls_today=unanswered_today(s.calls, "borrower", workflow.now(), s.policy),
            ruleset=s.policy.ruleset,
            promises=list(s.promises),
            waivers=list(s.waivers),
            waived_fen=s.waived_fen,
            strategy_version=s.strategy_version,
            segment=s.segment,
            strategy_arm=s.strategy_arm,
            visit=s.visit.shown() if s.visit else None,
            alerts=[a.shown() for a in s.alerts],  # no help location: supervisors only
            hostile_team=s.hostile_team,
            legal_advice=s.legal_advice,
            complaints=list(s.complaints),
            hardships=list(s.hardships),
            counselling_given=list(s.counselling_given),
            max_installments=plan_policy(s.policy, s.hardships).max_installments,
        )
