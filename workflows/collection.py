"""LoanCollectionWorkflow: one durable case per overdue loan.

The case is a state machine over `CaseState.stage`. Each stage is a step that waits for
people or for time and then decides the next stage; every wait has a deadline from the
case's policy and every deadline has a next step. All I/O goes through activities, named by
string so that no activity module (and none of their libraries) is imported here.

A payment that clears the debt, a supervisor's close request and a hardship hold cut any
wait short (`_Interrupted`); the main loop then closes the case or puts it on hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from domain.models import (
        AgreementRef,
        AgreementRequest,
        Assessment,
        AssessRequest,
        AssignRequest,
        BorrowerReply,
        CaseFacts,
        CaseInput,
        CaseResult,
        CaseState,
        CaseStatus,
        CloseRequest,
        DeliveryFailure,
        HardshipHold,
        HistoryEntry,
        Hold,
        Installment,
        InstallmentStatus,
        LiftHold,
        PaymentPosted,
        PaymentRecord,
        Plan,
        PlanProposal,
        Reassignment,
        SignatureConfirmation,
        SignatureRecord,
        SmsRequest,
        SmsResult,
        TaskRequest,
        Transition,
        UpdateAccepted,
        VisitRecord,
        VisitReport,
    )
    from domain.money import yuan
    from domain.names import WORKFLOW_TYPE
    from domain.names import Activities as A
    from domain.plans import PlanRejected, check_plan
    from domain.sms_text import OPTED_OUT_CODE
    from domain.stages import (
        CLOSED_STAGES,
        MANUAL_CLOSE_STAGES,
        ReplyIntent,
        Stage,
        TaskKind,
        VisitOutcome,
    )
    from domain.timerules import cap_release, days_past_due, local_date, next_contact_time

ACTIVITY_TIMEOUT = timedelta(seconds=60)
# Activities retry until they succeed (a database outage must not fail a case); errors that
# retrying cannot mend are raised as non-retryable ApplicationErrors by the activities.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["InvalidInput", "NotFound"],
)
# The second version of the case's behaviour (one patch, one marker per case):
# - a wait always starts its timer, even when its deadline has just passed (replay after a
#   timed-out workflow task must see the same commands; tests/test_faults.py);
# - search attributes are upserted once before the workflow next waits, not at each change,
#   and are inherited across continue-as-new;
# - a case paid in full at an installment-cycle boundary closes in the same run.
PATCH_V2 = "collection-v2"
# The third: at an installment-cycle boundary the case continues as new only once its run's
# history is long (RUN_EVENTS_BEFORE_NEW_RUN, or the server suggests it), not at every
# boundary. A cycle is ~30 events, so a run holds ~10 installments: the history stays short
# enough to replay quickly after a cache eviction, with a tenth of the runs (and of the
# sandbox set-ups and state transfers that each new run costs).
PATCH_V3 = "collection-v3"
RUN_EVENTS_BEFORE_NEW_RUN = 500
HISTORY_KEPT = 100  # entries in the workflow state; the full audit trail is in the database
CLOCK_SKEW = timedelta(minutes=10)  # how far in the future a reported time may lie
MAX_NOTES = 2000


class _Interrupted(Exception):
    """A wait was cut short by a payment in full, a close request or a hardship hold."""


def _reject(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidInput", non_retryable=True)


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _reject(f"{name}: a time must carry its time zone")


@workflow.defn(name=WORKFLOW_TYPE)
class LoanCollectionWorkflow:
    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        if inp.state is not None:
            self.s = inp.state
            self.s.runs += 1
        else:
            now = workflow.now()
            self.s = CaseState(
                loan_no=inp.loan_no,
                branch=inp.branch,
                policy=inp.policy,
                stage=Stage.INVESTIGATION,
                stage_since=now,
                opened_at=now,
                started_by=inp.started_by,
            )
        self._published: tuple[Any, ...] | None = None
        self._v2_applies: bool | None = None  # PATCH_V2, decided at its first use
        self._v3_applies: bool | None = None  # PATCH_V3, likewise
        self._dirty = False  # search attributes changed since the last upsert
        self._assign_lock = asyncio.Lock()
        self._steps: dict[Stage, Callable[[], Any]] = {
            Stage.INVESTIGATION: self._investigation,
            Stage.INITIAL_CONTACT: self._initial_contact,
            Stage.FIELD_VISIT: self._field_visit,
            Stage.NEGOTIATION: self._negotiation,
            Stage.AGREEMENT_SIGNING: self._agreement_signing,
            Stage.FOLLOW_UP: self._follow_up,
            Stage.ON_HOLD: self._on_hold,
        }

    # ------------------------------------------------------------------ main loop

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        s = self.s
        if inp.state is None:
            self._note("stage", f"case opened at {Stage.INVESTIGATION}", inp.started_by)
            await self._record_transition(None, "case opened", inp.started_by)
        elif self._v2():
            self._published = self._attribute_values()  # carried over by continue-as-new
        else:
            self._publish()
        while s.stage not in CLOSED_STAGES:
            closing = self._closing_decision()
            if closing is not None:
                if closing[0] == Stage.PAID_IN_FULL:
                    await self._sms("paid_in_full", may_wait=False, amount_fen=str(s.paid_fen))
                await self._enter(*closing)
                break
            if s.hold is not None and s.stage != Stage.ON_HOLD:
                await self._enter(
                    Stage.ON_HOLD,
                    f"hardship hold until {s.hold.until.isoformat()}: {s.hold.reason}",
                    s.hold.by,
                )
                continue
            try:
                await self._steps[s.stage]()
            except _Interrupted:
                continue
            if s.stage not in CLOSED_STAGES and (
                s.cycle_done or workflow.info().is_continue_as_new_suggested()
            ):
                if self._v2() and self._closing_decision() is not None:
                    s.cycle_done = False
                    continue  # paid in full (or closing): close here, not in a new run
                if s.cycle_done and self._run_has_room():
                    s.cycle_done = False
                    continue  # the next cycle in this run
                await workflow.wait_condition(workflow.all_handlers_finished)
                s.cycle_done = False
                self._flush()
                workflow.continue_as_new(
                    CaseInput(s.loan_no, s.branch, s.policy, s.started_by, state=s)
                )
        if self._outstanding() is not None and self._outstanding() < 0:
            await self._task(
                TaskKind.REFUND_OVERPAYMENT,
                f"overpaid by {yuan(-self._outstanding())} yuan: refund the borrower",
                None,
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._flush()
        last = s.history[-1].detail if s.history else ""
        return CaseResult(
            loan_no=s.loan_no,
            outcome=s.stage,
            closed_at=s.stage_since,
            debt_fen=s.debt_fen or 0,
            paid_fen=s.paid_fen,
            outstanding_fen=max(0, self._outstanding() or 0),
            reason=last,
        )

    def _closing_decision(self) -> tuple[Stage, str, str] | None:
        s = self.s
        if s.debt_fen is not None and s.paid_fen >= s.debt_fen:
            return Stage.PAID_IN_FULL, f"paid in full ({yuan(s.paid_fen)} yuan)", "system"
        if s.close_request is not None:
            req = s.close_request
            return Stage(req.outcome), req.reason, req.by
        return None

    def _interrupted(self) -> bool:
        s = self.s
        if self._closing_decision() is not None:
            return True
        return s.hold is not None and s.stage != Stage.ON_HOLD

    async def _wait(self, done: Callable[[], bool], until: datetime, action: str) -> bool:
        """Wait until `done()` or `until`; True if done. Raises _Interrupted when cut short."""
        self._set_next_action(action, until)
        remaining = until - workflow.now()
        # Whether a timer starts must not depend on the exact time: after a worker crash left
        # a workflow task timed out, the SDK's clock on first execution and on a later replay
        # can differ by seconds, and a deadline just passed would start a timer in one and not
        # in the other (a non-determinism error; tests/test_faults.py). So a timer always starts.
        timer_always = self._v2()
        due = remaining > timedelta(0) or timer_always
        if due and not done() and not self._interrupted():
            self._flush()
            try:
                await workflow.wait_condition(
                    lambda: done() or self._interrupted(),
                    timeout=max(remaining, timedelta(milliseconds=1)),
                )
            except TimeoutError:
                pass
        if self._interrupted():
            raise _Interrupted()
        return done()

    # ------------------------------------------------------------------ stages

    async def _investigation(self) -> None:
        s = self.s
        facts: CaseFacts = await self._act(A.LOAD_CASE, s.loan_no, CaseFacts)
        s.debt_fen = facts.debt_fen
        s.overdue_since = facts.overdue_since
        s.remote, s.hostile, s.has_phone = facts.remote, facts.hostile, facts.has_phone
        s.opted_out = s.opted_out or facts.sms_opted_out
        assessment: Assessment = await self._act(
            A.ASSESS_CASE, AssessRequest(facts, s.policy, workflow.now()), Assessment
        )
        s.risk_tier, s.strategy = assessment.risk_tier, assessment.strategy
        s.team_required = assessment.team_required
        self._note("assessment", f"{s.risk_tier} / {s.strategy}: " + "; ".join(assessment.reasons))
        if not s.collectors:
            await self._assign(AssignRequest(s.loan_no, s.branch, 2 if s.team_required else 1))
        if self._interrupted():
            raise _Interrupted()
        await self._enter(
            Stage.INITIAL_CONTACT, f"risk {s.risk_tier}, strategy {s.strategy}: {assessment.goal}"
        )

    async def _initial_contact(self) -> None:
        s = self.s
        if s.phase == "":
            s.phase = "NOTICE"
        if s.phase == "NOTICE":
            notice = await self._sms(
                "first_notice",
                amount_fen=str(self._outstanding()),
                days_past_due=str(self._dpd()),
            )
            if notice.status == "FAILED":
                await self._enter(
                    Stage.FIELD_VISIT, f"first notice could not be delivered ({notice.reason})"
                )
                return
            s.phase = "AWAIT_RESPONSE"
            s.phase_due = workflow.now() + timedelta(seconds=s.policy.contact_wait_seconds)
            await self._task(
                TaskKind.PHONE_CALL, "call the borrower about the overdue loan", s.phase_due
            )
        assert s.phase_due is not None
        if await self._wait(
            lambda: s.sms_undeliverable, s.phase_due, "field visit unless the debt is paid"
        ):
            await self._enter(Stage.FIELD_VISIT, "the first notice was not delivered")
            return
        await self._enter(Stage.FIELD_VISIT, "no payment in full after the first notice")

    async def _field_visit(self) -> None:
        s, p = self.s, self.s.policy
        while True:
            now = workflow.now()
            if s.phase == "":
                if s.team_required and len(s.collectors) < 2:
                    await self._assign(
                        AssignRequest(s.loan_no, s.branch, 2, keep=list(s.collectors))
                    )
                s.attempt += 1
                s.phase = "AWAIT_REPORT"
                s.phase_due = now + timedelta(seconds=p.visit_deadline_seconds)
                kind = "team visit" if s.team_required else "visit"
                await self._task(TaskKind.VISIT, f"{kind}, attempt {s.attempt}", s.phase_due)
                if s.attempt == 1:
                    await self._sms("visit_notice", amount_fen=str(self._outstanding()))
                continue
            assert s.phase_due is not None
            action = "revisit" if s.phase == "WAIT_REVISIT" else "visit report"
            if await self._wait(lambda: s.pending_visit_outcome is not None, s.phase_due, action):
                outcome = VisitOutcome(s.pending_visit_outcome)
                s.pending_visit_outcome = None
                if await self._after_visit(outcome):
                    return
                continue
            # The deadline passed without a report: remind, then escalate, then count it.
            if s.phase == "WAIT_REVISIT":
                s.phase = ""
            elif s.phase == "AWAIT_REPORT":
                s.phase = "REMINDED"
                s.phase_due = now + timedelta(seconds=p.visit_reminder_grace_seconds)
                await self._task(TaskKind.VISIT_REMINDER, "visit report overdue", s.phase_due)
            elif s.phase == "REMINDED":
                s.phase = "ESCALATED"
                s.phase_due = now + timedelta(seconds=p.escalation_grace_seconds)
                s.counters.escalations += 1
                await self._task(
                    TaskKind.SUPERVISOR_ESCALATION,
                    f"no visit report after a reminder (collectors {', '.join(s.collectors)})",
                    s.phase_due,
                    assignees=[f"supervisor:{s.branch}"],
                )
            else:
                if await self._count_unreached("no visit report even after escalation"):
                    return

    async def _after_visit(self, outcome: VisitOutcome) -> bool:
        """Act on a visit report; True when the stage was left."""
        s, p = self.s, self.s.policy
        if outcome in (VisitOutcome.MET, VisitOutcome.PROMISED_TO_PAY):
            await self._enter(Stage.NEGOTIATION, f"visit {s.attempt}: {outcome}")
            return True
        if outcome in (VisitOutcome.NOT_HOME, VisitOutcome.MOVED):
            return await self._count_unreached(f"visit {s.attempt}: {outcome}")
        s.round_refusals += 1
        s.counters.refusals += 1
        if outcome == VisitOutcome.HOSTILE and p.team_visit_after_hostile:
            s.team_required = True
        if s.round_refusals > p.max_refusals:
            await self._dead_end(f"refused {s.round_refusals} times (last: {outcome})")
            return True
        self._schedule_revisit()
        return False

    async def _count_unreached(self, why: str) -> bool:
        s = self.s
        s.round_unreached += 1
        s.counters.unreached_visits += 1
        if s.round_unreached >= s.policy.max_unreached_visits:
            await self._dead_end(f"borrower not reached in {s.round_unreached} attempts ({why})")
            return True
        self._note("visit", f"{why}; another attempt follows")
        self._schedule_revisit()
        return False

    def _schedule_revisit(self) -> None:
        s = self.s
        s.phase = "WAIT_REVISIT"
        s.phase_due = workflow.now() + timedelta(seconds=s.policy.revisit_delay_seconds)

    async def _negotiation(self) -> None:
        s, p = self.s, self.s.policy
        if s.phase == "":
            s.phase = "AWAIT_PLAN"
            s.phase_due = workflow.now() + timedelta(seconds=p.negotiation_deadline_seconds)
            await self._task(TaskKind.NEGOTIATE, "agree a repayment plan", s.phase_due)
        assert s.phase_due is not None
        if await self._wait(lambda: s.pending_plan is not None, s.phase_due, "plan proposal"):
            plan = s.pending_plan
            assert plan is not None
            s.plan, s.pending_plan = plan, None
            s.agreement, s.signed_version = None, None
            s.last_covered_seq = 0
            await self._enter(
                Stage.AGREEMENT_SIGNING,
                f"plan {plan.number}: {len(plan.installments)} installments, "
                f"{yuan(plan.total_fen)} yuan",
                plan.proposed_by,
            )
            return
        await self._failed_negotiation("no plan agreed before the deadline", Stage.FIELD_VISIT)

    async def _failed_negotiation(self, why: str, back_to: Stage) -> None:
        s = self.s
        s.counters.failed_negotiations += 1
        if s.counters.failed_negotiations > s.policy.max_failed_negotiations:
            await self._dead_end(f"{why} ({s.counters.failed_negotiations} times)")
        else:
            await self._enter(back_to, why)

    async def _agreement_signing(self) -> None:
        s, p = self.s, self.s.policy
        assert s.plan is not None and s.debt_fen is not None
        if s.agreement is None or s.agreement.plan_number != s.plan.number:
            s.agreement = await self._act(
                A.RENDER_AGREEMENT,
                AgreementRequest(s.loan_no, s.plan, list(s.collectors), s.debt_fen, s.paid_fen, p),
                AgreementRef,
            )
            self._note(
                "agreement", f"version {s.agreement.version} rendered, sha256 {s.agreement.sha256}"
            )
        if s.phase == "":
            s.phase = "AWAIT_SIGNATURE"
            s.phase_due = workflow.now() + timedelta(seconds=p.signature_deadline_seconds)
            await self._task(
                TaskKind.COLLECT_SIGNATURE,
                f"have agreement version {s.agreement.version} signed "
                f"(sha256 {s.agreement.sha256[:12]}…)",
                s.phase_due,
            )
            await self._sms("agreement_ready", amount_fen=str(s.plan.total_fen))
        agreement = s.agreement
        assert s.phase_due is not None
        if await self._wait(
            lambda: s.signed_version == agreement.version, s.phase_due, "signature"
        ):
            s.reminded_seqs = []
            s.next_revisit_at = workflow.now() + timedelta(seconds=p.revisit_interval_seconds)
            await self._enter(Stage.FOLLOW_UP, f"agreement version {agreement.version} signed")
            return
        await self._failed_negotiation(
            "agreement not signed before the deadline", Stage.NEGOTIATION
        )

    async def _follow_up(self) -> None:
        s, p = self.s, self.s.policy
        assert s.plan is not None
        due = self._first_uncovered()
        covered_upto = due.seq - 1 if due is not None else len(s.plan.installments)
        if covered_upto > s.last_covered_seq:
            # A cycle boundary: the run loop continues as new here when the run is long.
            s.last_covered_seq = covered_upto
            self._note("payment", f"installments 1–{covered_upto} of plan {s.plan.number} paid")
            s.cycle_done = True
            return
        if due is None:
            # Every installment is covered yet debt remains: the plan no longer fits the debt.
            await self._enter(Stage.NEGOTIATION, "plan paid but debt remains: new plan needed")
            return
        remind_at = due.due_at - timedelta(seconds=p.reminder_lead_seconds)
        deadline = due.due_at + timedelta(seconds=p.grace_seconds)

        def covered() -> bool:
            return self._covered(due.seq)

        while not covered():
            now = workflow.now()
            if due.seq not in s.reminded_seqs and now >= remind_at:
                s.reminded_seqs.append(due.seq)
                if now < due.due_at:
                    await self._sms(
                        "installment_reminder",
                        amount_fen=str(due.amount_fen),
                        due_date=local_date(due.due_at, p).isoformat(),
                    )
                continue
            if s.next_revisit_at is not None and now >= s.next_revisit_at:
                s.next_revisit_at = now + timedelta(seconds=p.revisit_interval_seconds)
                await self._task(TaskKind.REVISIT, "periodic revisit (定期回访)", s.next_revisit_at)
                continue
            if now >= deadline:
                await self._broken_promise(due)
                return
            wake = [deadline]
            if due.seq not in s.reminded_seqs:
                wake.append(remind_at)
            if s.next_revisit_at is not None:
                wake.append(s.next_revisit_at)
            await self._wait(covered, min(wake), f"installment {due.seq} due")

    async def _broken_promise(self, missed: Installment) -> None:
        s, p = self.s, self.s.policy
        s.counters.broken_promises += 1
        await self._sms("missed_installment", amount_fen=str(missed.amount_fen))
        why = f"installment {missed.seq} not paid after {p.grace_seconds // 86400} grace days"
        if s.counters.renegotiations < p.max_renegotiations:
            s.counters.renegotiations += 1
            await self._enter(
                Stage.FIELD_VISIT,
                f"broken promise: {why}; revisit and renegotiation "
                f"{s.counters.renegotiations} of {p.max_renegotiations}",
            )
        else:
            await self._dead_end(f"broken promise: {why}; renegotiations exhausted")

    async def _on_hold(self) -> None:
        s = self.s
        while s.hold is not None and workflow.now() < s.hold.until:
            until = s.hold.until

            def changed(until: datetime = until) -> bool:
                return s.hold is None or s.hold.until != until

            await self._wait(changed, until, "hardship hold ends")
        hold = s.hold
        s.hold = None
        resume = s.resume_stage or Stage.INVESTIGATION
        if hold is not None and resume == Stage.FOLLOW_UP and s.plan is not None:
            # Installments that fell due during the hold are not broken promises: move them.
            held_for = workflow.now() - hold.since
            for inst in s.plan.installments:
                if not self._covered(inst.seq):
                    inst.due_at += held_for
            if s.next_revisit_at is not None:
                s.next_revisit_at += held_for
            s.reminded_seqs = [q for q in s.reminded_seqs if self._covered(q)]
            self._note("plan", f"unpaid installments moved by {held_for.days} days for the hold")
        await self._enter(resume, "hardship hold ended")

    async def _dead_end(self, why: str) -> None:
        s = self.s
        outstanding = self._outstanding() or 0
        if outstanding < s.policy.write_off_below_fen:
            await self._enter(Stage.WRITTEN_OFF, f"{why}; {yuan(outstanding)} yuan written off")
        else:
            await self._enter(Stage.LEGAL_ESCALATION, why)

    # ------------------------------------------------------------------ updates (human input)

    @workflow.update
    async def report_visit(self, report: VisitReport) -> UpdateAccepted:
        s = self.s
        s.counters.visits += 1
        number = s.counters.visits
        await self._act(A.RECORD_VISIT, VisitRecord(s.loan_no, number, report, s.stage))
        outcome = VisitOutcome(report.outcome)
        if outcome == VisitOutcome.HOSTILE:
            s.hostile = True
        self._note(
            "visit",
            f"visit {number}: {outcome} by {', '.join(report.collector_ids)}",
            report.reported_by or report.collector_ids[0],
        )
        if s.stage == Stage.FIELD_VISIT:
            s.pending_visit_outcome = outcome
        return UpdateAccepted(s.stage, f"visit {number} recorded: {outcome}", number)

    @report_visit.validator
    def _validate_visit(self, report: VisitReport) -> None:
        s = self.s
        allowed = (Stage.FIELD_VISIT, Stage.NEGOTIATION, Stage.AGREEMENT_SIGNING, Stage.FOLLOW_UP)
        if s.stage not in allowed:
            raise _reject(f"stage: no visit report is expected while the case is {s.stage}")
        if report.outcome not in VisitOutcome.__members__:
            raise _reject(
                f"outcome: {report.outcome!r} is not one of {', '.join(VisitOutcome.__members__)}"
            )
        self._check_collectors(report.collector_ids)
        if s.stage == Stage.FIELD_VISIT and s.team_required and len(set(report.collector_ids)) < 2:
            raise _reject("collector_ids: this case needs a team of two collectors at a visit")
        _aware(report.visited_at, "visited_at")
        if report.visited_at > workflow.now() + CLOCK_SKEW:
            raise _reject("visited_at: the visit cannot be in the future")
        if report.visited_at < s.opened_at:
            raise _reject("visited_at: the visit is before the case was opened")
        if len(report.notes) > MAX_NOTES:
            raise _reject(f"notes: at most {MAX_NOTES} characters")

    @workflow.update
    async def propose_plan(self, proposal: PlanProposal) -> UpdateAccepted:
        s = self.s
        s.plans_made += 1
        plan = Plan(
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
        self._note("plan", f"plan {plan.number} accepted", proposal.proposed_by)
        return UpdateAccepted(
            s.stage,
            f"plan {plan.number} accepted: {len(plan.installments)} installments, "
            f"{yuan(plan.total_fen)} yuan; the agreement will be prepared for signature",
            plan.number,
        )

    @propose_plan.validator
    def _validate_plan(self, proposal: PlanProposal) -> None:
        s = self.s
        if s.stage != Stage.NEGOTIATION:
            raise _reject(f"stage: plans are proposed in NEGOTIATION, the case is {s.stage}")
        if s.pending_plan is not None:
            raise _reject("stage: a plan was just accepted and is being prepared")
        outstanding = self._outstanding()
        if outstanding is None:
            raise _reject("stage: the debt is not known yet")
        try:
            check_plan(proposal, outstanding, s.policy, workflow.now())
        except PlanRejected as e:
            raise _reject(str(e)) from None
        if len(proposal.notes) > MAX_NOTES:
            raise _reject(f"notes: at most {MAX_NOTES} characters")

    @workflow.update
    async def confirm_signature(self, confirmation: SignatureConfirmation) -> UpdateAccepted:
        s = self.s
        await self._act(A.RECORD_SIGNATURE, SignatureRecord(s.loan_no, confirmation))
        s.signed_version = confirmation.version
        self._note(
            "agreement",
            f"version {confirmation.version} signed at {confirmation.place}",
            confirmation.collector_id,
        )
        return UpdateAccepted(
            s.stage, f"agreement version {confirmation.version} signed", confirmation.version
        )

    @confirm_signature.validator
    def _validate_signature(self, confirmation: SignatureConfirmation) -> None:
        s = self.s
        if s.stage != Stage.AGREEMENT_SIGNING or s.agreement is None:
            raise _reject(f"stage: no agreement awaits a signature while the case is {s.stage}")
        if confirmation.version != s.agreement.version:
            raise _reject(
                f"version: the agreement to sign is version {s.agreement.version}, "
                f"not {confirmation.version}"
            )
        if confirmation.sha256.strip().lower() != s.agreement.sha256:
            raise _reject(
                f"sha256: does not match agreement version {s.agreement.version}; "
                "read it again from the signed document"
            )
        self._check_collectors([confirmation.collector_id])
        _aware(confirmation.signed_at, "signed_at")
        if confirmation.signed_at > workflow.now() + CLOCK_SKEW:
            raise _reject("signed_at: the signature cannot be in the future")
        if not confirmation.place.strip():
            raise _reject("place: say where the agreement was signed")

    @workflow.update
    async def reassign(self, request: Reassignment) -> UpdateAccepted:
        await self._assign(
            AssignRequest(
                self.s.loan_no,
                self.s.branch,
                len(request.collector_ids),
                requested=list(request.collector_ids),
                by=request.by,
                reason=request.reason,
            )
        )
        self._flush()  # the new collector shows in the lists at once, not at the next wait
        return UpdateAccepted(self.s.stage, f"assigned to {', '.join(self.s.collectors)}")

    @reassign.validator
    def _validate_reassign(self, request: Reassignment) -> None:
        self._check_open()
        ids = request.collector_ids
        if not ids or len(ids) > 2 or len(set(ids)) != len(ids):
            raise _reject("collector_ids: name one collector, or two different ones for a team")
        if not all(i.strip() for i in ids):
            raise _reject("collector_ids: a collector id is empty")
        if not request.by.strip() or not request.reason.strip():
            raise _reject("reason: say who reassigns and why")

    @workflow.update
    def hold(self, request: HardshipHold) -> UpdateAccepted:
        s = self.s
        if s.hold is None:
            s.hold = Hold(request.until, request.reason, request.by, since=workflow.now())
        else:
            s.hold.until, s.hold.reason = request.until, request.reason
        self._note("hold", f"hold until {request.until.isoformat()}: {request.reason}", request.by)
        return UpdateAccepted(s.stage, f"collection paused until {request.until.isoformat()}")

    @hold.validator
    def _validate_hold(self, request: HardshipHold) -> None:
        self._check_open()
        _aware(request.until, "until")
        now = workflow.now()
        if request.until <= now:
            raise _reject("until: a hold must end in the future")
        if request.until - now > timedelta(seconds=self.s.policy.max_hold_seconds):
            raise _reject(
                f"until: a hold may last at most {self.s.policy.max_hold_seconds // 86400} days"
            )
        if not request.reason.strip() or not request.by.strip():
            raise _reject("reason: say who holds the case and why")

    @workflow.update
    def lift_hold(self, request: LiftHold) -> UpdateAccepted:
        s = self.s
        assert s.hold is not None
        s.hold.until = workflow.now()
        self._note("hold", f"hold lifted: {request.reason}", request.by)
        return UpdateAccepted(s.stage, "hold lifted; collection resumes")

    @lift_hold.validator
    def _validate_lift(self, request: LiftHold) -> None:
        self._check_open()
        if self.s.hold is None:
            raise _reject("stage: the case is not on hold")
        if not request.by.strip():
            raise _reject("by: say who lifts the hold")

    @workflow.update
    def close_case(self, request: CloseRequest) -> UpdateAccepted:
        self.s.close_request = request
        return UpdateAccepted(self.s.stage, f"case will close as {request.outcome}")

    @close_case.validator
    def _validate_close(self, request: CloseRequest) -> None:
        self._check_open()
        if request.outcome not in {s.value for s in MANUAL_CLOSE_STAGES}:
            raise _reject(
                "outcome: must be one of " + ", ".join(sorted(s.value for s in MANUAL_CLOSE_STAGES))
            )
        if not request.reason.strip() or not request.by.strip():
            raise _reject("reason: say who closes the case and why")

    # ------------------------------------------------------------------ signals (facts)

    @workflow.signal
    async def payment_posted(self, payment: PaymentPosted) -> None:
        s = self.s
        counted = False
        if not payment.reference.strip() or payment.amount_fen <= 0:
            self._note("payment", f"ignored payment {payment.reference!r}: no reference or amount")
        elif payment.reference in s.payment_refs:
            self._note("payment", f"payment {payment.reference} already counted")
        else:
            counted = True
            s.payment_refs.append(payment.reference)
            s.paid_fen += payment.amount_fen
            self._note("payment", f"{yuan(payment.amount_fen)} yuan ({payment.reference})")
            self._publish()
        await self._act(
            A.RECORD_PAYMENT,
            PaymentRecord(s.loan_no, payment, counted, s.paid_fen, self._outstanding()),
        )

    @workflow.signal
    def sms_delivery_failed(self, failure: DeliveryFailure) -> None:
        s = self.s
        if failure.message_sid in s.failed_sids:
            return
        s.failed_sids = (s.failed_sids + [failure.message_sid])[-50:]
        s.counters.sms_failed += 1
        s.sms_undeliverable = True
        if failure.number_unusable:
            s.has_phone = False
        self._note("sms", f"a message was {failure.status} (error {failure.error_code or '-'})")

    @workflow.signal
    async def borrower_reply(self, reply: BorrowerReply) -> None:
        s = self.s
        if reply.message_sid in s.reply_sids:
            return
        s.reply_sids = (s.reply_sids + [reply.message_sid])[-50:]
        self._note("reply", f"borrower replied: {reply.intent}", "borrower")
        if reply.intent == ReplyIntent.OPT_OUT:
            s.opted_out = True
        elif reply.intent == ReplyIntent.ACKNOWLEDGED:
            s.acknowledged = True
        elif reply.intent == ReplyIntent.CLAIMS_PAID:
            await self._task(
                TaskKind.CHECK_CLAIMED_PAYMENT, "borrower says they paid: check the account", None
            )
        else:
            await self._task(TaskKind.READ_REPLY, "borrower replied by SMS: read and answer", None)

    # ------------------------------------------------------------------ query

    @workflow.query
    def status(self) -> CaseStatus:
        s = self.s
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
            outstanding_fen=self._outstanding(),
            days_past_due=self._dpd(),
            plan_number=s.plan.number if s.plan else None,
            installments=self._installment_statuses(),
            agreement=s.agreement,
            signed_version=s.signed_version,
            hold=s.hold,
            opted_out=s.opted_out,
            counters=s.counters,
            history=list(s.history),
            policy_version=s.policy.version,
            run=s.runs,
        )

    # ------------------------------------------------------------------ helpers

    async def _enter(self, stage: Stage, reason: str, actor: str = "system") -> None:
        s = self.s
        previous = s.stage
        if stage == Stage.ON_HOLD and previous != Stage.ON_HOLD:
            s.resume_stage = previous
        if stage == Stage.FIELD_VISIT and previous != Stage.FIELD_VISIT:
            s.attempt, s.round_unreached, s.round_refusals = 0, 0, 0
        s.stage, s.stage_since = stage, workflow.now()
        s.phase, s.phase_due = "", None
        s.pending_visit_outcome = None
        if stage in CLOSED_STAGES:
            s.next_action, s.next_action_at = "", None
        self._note("stage", f"{previous} → {stage}: {reason}", actor)
        await self._record_transition(previous, reason, actor)

    async def _record_transition(self, previous: Stage | None, reason: str, actor: str) -> None:
        s = self.s
        s.transition_seq += 1
        self._publish()
        await self._act(
            A.RECORD_TRANSITION,
            Transition(
                loan_no=s.loan_no,
                seq=s.transition_seq,
                from_stage=previous,
                to_stage=s.stage,
                at=s.stage_since,
                actor=actor,
                reason=reason,
                branch=s.branch,
                risk_tier=s.risk_tier,
                collectors=list(s.collectors),
                debt_fen=s.debt_fen,
                paid_fen=s.paid_fen,
                next_action=s.next_action,
                next_action_at=s.next_action_at,
            ),
        )

    async def _assign(self, request: AssignRequest) -> None:
        async with self._assign_lock:
            collectors: list[str] = await self._act(A.ASSIGN_COLLECTORS, request, list[str])
            self.s.collectors = collectors
            who = ", ".join(collectors) or "nobody (no capacity)"
            self._note("assignment", f"assigned to {who}", request.by)
            self._publish()
        if not collectors:
            await self._task(
                TaskKind.ASSIGN_COLLECTOR,
                f"no collector with capacity in branch {self.s.branch}: assign one",
                None,
                assignees=[f"supervisor:{self.s.branch}"],
            )

    async def _sms(self, purpose: str, may_wait: bool = True, **params: str) -> SmsResult:
        """Send one SMS under the rules: quiet hours and caps wait, opt-out blocks.

        A message that may not wait (the thanks at closing) is dropped, not sent at night.
        """
        s, p = self.s, self.s.policy
        s.sms_seq += 1
        key = f"{s.loan_no}:{purpose}:{s.sms_seq}"
        blocked = ""
        while True:
            now = workflow.now()
            if s.opted_out:
                blocked = "borrower opted out of SMS"
            elif not s.has_phone:
                blocked = "no mobile number on file"
            elif p.sms_over_cap == "DROP" and cap_release(now, s.sms_sent_at, p) > now:
                blocked = "contact cap reached"
            if not blocked:
                at = next_contact_time(now, s.sms_sent_at, p)
                if at > now and not may_wait:
                    blocked = "not sent: outside contact hours or over the cap"
                elif at > now:
                    await self._wait(lambda: False, at, f"send {purpose} SMS")
                    continue
            result: SmsResult = await self._act(
                A.SEND_SMS, SmsRequest(key, s.loan_no, purpose, params, now, blocked, p), SmsResult
            )
            if result.status == "DEFERRED" and not may_wait:
                break
            if result.status == "DEFERRED" and result.not_before is not None:
                await self._wait(lambda: False, result.not_before, f"send {purpose} SMS")
                continue
            break
        if result.status in ("SENT", "RECORDED"):
            sent_at = result.sent_at or now
            s.sms_sent_at = [t for t in s.sms_sent_at if sent_at - t < timedelta(days=8)]
            s.sms_sent_at.append(sent_at)
            s.counters.sms_sent += 1
            self._note("sms", f"{purpose} {result.status.lower()}")
        elif result.status == "FAILED":
            s.counters.sms_failed += 1
            if result.error_code == OPTED_OUT_CODE:
                s.opted_out = True
            elif result.number_unusable:
                s.has_phone = False
            self._note("sms", f"{purpose} failed: {result.reason}")
        else:
            s.counters.sms_blocked += 1
            if "opted out" in result.reason:
                s.opted_out = True
            self._note("sms", f"{purpose} not sent: {result.reason}")
        return result

    async def _task(
        self,
        kind: TaskKind,
        detail: str,
        due: datetime | None,
        assignees: list[str] | None = None,
    ) -> None:
        s = self.s
        s.task_seq += 1
        await self._act(
            A.CREATE_TASK,
            TaskRequest(
                key=f"{s.loan_no}:{kind}:{s.task_seq}",
                loan_no=s.loan_no,
                kind=kind,
                assignees=assignees if assignees is not None else list(s.collectors),
                due_at=due,
                detail=detail,
                created_at=workflow.now(),
            ),
        )

    async def _act(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        self._flush()
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=self._attempt_timeout(name),
            retry_policy=ACTIVITY_RETRY,
        )

    def _attempt_timeout(self, name: str) -> timedelta:
        """A crashed worker's activity is retried elsewhere after this long: short for the
        SMS (one HTTP call), long enough for a PDF render, a minute for the rest."""
        p = self.s.policy
        if name == A.SEND_SMS:
            return timedelta(seconds=p.sms_attempt_timeout_s)
        if name == A.RENDER_AGREEMENT:
            return timedelta(seconds=p.render_attempt_timeout_s)
        return ACTIVITY_TIMEOUT

    def _check_open(self) -> None:
        if self.s.stage in CLOSED_STAGES:
            raise _reject(f"stage: the case is closed ({self.s.stage})")

    def _check_collectors(self, ids: list[str]) -> None:
        if not ids:
            raise _reject("collector_ids: name the collector(s)")
        strangers = [i for i in ids if i not in self.s.collectors]
        if strangers:
            raise _reject(
                f"collector_ids: {', '.join(strangers)} not assigned to this case "
                f"(assigned: {', '.join(self.s.collectors) or 'nobody'})"
            )

    def _note(self, kind: str, detail: str, actor: str = "system") -> None:
        history = self.s.history
        history.append(HistoryEntry(workflow.now(), kind, detail, actor))
        if len(history) > HISTORY_KEPT:
            del history[: len(history) - HISTORY_KEPT]

    def _set_next_action(self, action: str, at: datetime) -> None:
        self.s.next_action, self.s.next_action_at = action, at
        self._publish()

    def _outstanding(self) -> int | None:
        s = self.s
        return None if s.debt_fen is None else s.debt_fen - s.paid_fen

    def _dpd(self) -> int | None:
        s = self.s
        if s.overdue_since is None:
            return None
        return days_past_due(s.overdue_since, workflow.now(), s.policy)

    def _paid_towards_plan(self) -> int:
        s = self.s
        return 0 if s.plan is None else s.paid_fen - s.plan.base_paid_fen

    def _covered(self, seq: int) -> bool:
        s = self.s
        assert s.plan is not None
        needed = sum(i.amount_fen for i in s.plan.installments if i.seq <= seq)
        return self._paid_towards_plan() >= needed

    def _first_uncovered(self) -> Installment | None:
        assert self.s.plan is not None
        return next((i for i in self.s.plan.installments if not self._covered(i.seq)), None)

    def _installment_statuses(self) -> list[InstallmentStatus]:
        s = self.s
        if s.plan is None:
            return []
        now = workflow.now()
        lead = timedelta(seconds=s.policy.reminder_lead_seconds)
        left = self._paid_towards_plan()
        result = []
        for inst in s.plan.installments:
            covered = max(0, min(inst.amount_fen, left))
            left -= inst.amount_fen
            if covered == inst.amount_fen:
                status = "PAID"
            elif now > inst.due_at:
                status = "OVERDUE"
            elif covered > 0:
                status = "PARTLY_PAID"
            elif now >= inst.due_at - lead:
                status = "DUE"
            else:
                status = "UPCOMING"
            result.append(
                InstallmentStatus(inst.seq, inst.due_at, inst.amount_fen, covered, status)
            )
        return result

    def _attribute_values(self) -> tuple[Any, ...]:
        s = self.s
        return (
            s.stage.value,
            s.branch,
            s.collectors[0] if s.collectors else None,
            s.risk_tier or None,
            self._dpd(),
            self._outstanding(),
            s.next_action_at,
        )

    def _v2(self) -> bool:
        if self._v2_applies is None:
            self._v2_applies = workflow.patched(PATCH_V2)
        return self._v2_applies

    def _v3(self) -> bool:
        if self._v3_applies is None:
            self._v3_applies = workflow.patched(PATCH_V3)
        return self._v3_applies

    def _run_has_room(self) -> bool:
        """Whether the next installment cycle may run in this run (PATCH_V3)."""
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return False
        return self._v3() and info.get_current_history_length() < RUN_EVENTS_BEFORE_NEW_RUN

    def _publish(self) -> None:
        """Search attributes changed: upserted now (released code) or, with the patch, once
        before the workflow next waits, however many changes it made meanwhile."""
        if self._v2():
            self._dirty = True
        else:
            self._upsert()

    def _flush(self) -> None:
        if self._dirty:
            self._dirty = False
            self._upsert()

    def _upsert(self) -> None:
        """Upsert the search attributes when one of them changed."""
        values = self._attribute_values()
        if values == self._published:
            return
        self._published = values
        keys = (
            sa.STAGE,
            sa.BRANCH,
            sa.COLLECTOR,
            sa.RISK_TIER,
            sa.DAYS_PAST_DUE,
            sa.OUTSTANDING_FEN,
            sa.NEXT_ACTION_AT,
        )
        workflow.upsert_search_attributes(
            [
                key.value_unset() if value is None else key.value_set(value)  # type: ignore[attr-defined]
                for key, value in zip(keys, values, strict=True)
            ]
        )
