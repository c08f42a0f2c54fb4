"""What people do to a case, through the workflow's Updates, answered and audited.

Every action goes to the case as an Update, so the answer is the workflow's own: accepted
(with the stage after it) or refused with the validator's reason, which names the field.
Either way the attempt is written to the audit trail with the user who made it.

Dates and times without an offset are the case's local time: its branch's time zone, else
the configured policy's (service/local_time.py).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from db.models import Branch, Case
from domain.human_input import Refused, check_offline_time
from domain.models import (
    AlertAck,
    AlertLocation,
    AppliedOpAsk,
    CallReport,
    CaseStatus,
    CheckIn,
    CheckOut,
    CloseRequest,
    ComplaintAction,
    ComplaintReport,
    ConsentChange,
    HardshipHold,
    HelpRequest,
    LegalDecisionRequest,
    LiftHold,
    LiftHostileTeam,
    PlannedInstallment,
    PlanProposal,
    PromiseRequest,
    Reassignment,
    SignatureConfirmation,
    ThirdPartyMessage,
    UpdateAccepted,
    VisitLocation,
    VisitReport,
    WaiverDecision,
    WaiverProposal,
)
from domain.names import workflow_id
from domain.phone_actions import (
    OP_ID_REFUSED,
    PHONE_UPDATES,
    clock_corrected,
    phone_update_id,
    request_digest,
)
from domain.plans import monthly_plan
from domain.policy import Policy
from domain.stages import ConsentKind
from service import audit
from service.loan_contacts import contact_on_loan
from service.local_time import loan_policy, local_moment
from service.users import Principal, Role
from workflows.collection import LoanCollectionWorkflow as WF

APPROVER_ROLES = (Role.COLLECTOR, Role.SUPERVISOR, Role.BRANCH_HEAD)
SUPERVISORS = (Role.SUPERVISOR, Role.BRANCH_HEAD)
COMPLAINT_ROLES = (Role.COLLECTOR, Role.SUPERVISOR, Role.BRANCH_HEAD)
# An action queued on a phone while offline carries an id made on the phone: with the action
# and the user it makes the Update's id (domain/phone_actions.phone_update_id), and Temporal
# answers a repeated Update id with the first one's result, so an action sent twice (a lost
# answer, a second flush) is applied once; across the case's runs the case itself keeps the
# ids it applied (workflows/phone_ops.py). Only the phone's actions (PHONE_UPDATES) carry one.
# The phone's clock at sending (SENT_AT) puts the time it recorded on the server's clock
# (domain/phone_actions.clock_corrected); that time is bounded here and again by the case
# (domain/human_input.check_offline_time).
UPDATE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("update_id", default=None)
SENT_AT: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("sent_at", default=None)
SENT_AT_REFUSED = "sent_at: only a phone's visit, call, check-in, check-out or need-help has one"
# A Query the case could not answer (no worker, a failing handler, a closed run): the page
# says the answer is unavailable rather than failing.
QUERY_ERRORS = (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError)


@dataclass
class ActionOutcome:
    accepted: bool
    message: str
    stage: str | None = None
    number: int = 0


@dataclass
class Locations:
    """What the branch's supervisors and heads see of where the phones were: the check-in of
    the visit in progress and each open call for help; `unavailable` when the case did not
    answer (the page says so instead of failing)."""

    visit: VisitLocation | None = None
    alerts: list[AlertLocation] = field(default_factory=list)
    unavailable: bool = False


def refusal(error: WorkflowUpdateFailedError) -> str:
    """The reason a case refused an Update: the validator's, or the activity's (nested one
    level deeper: WorkflowUpdateFailedError -> ActivityError -> ApplicationError)."""
    cause = error.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


class CaseActions:
    def __init__(self, client: Client, sessions: sessionmaker[Session], policy: Policy) -> None:
        self.client = client
        self.sessions = sessions
        self.policy = policy  # the configured policy

    def policy_for(self, loan_no: str) -> Policy:
        """The configured policy on the clock of the loan's branch."""
        return loan_policy(self.sessions, loan_no, self.policy)

    def _local(self, loan_no: str, value: date | datetime) -> datetime:
        """An aware time as given; a bare time or a date (its end) on the case's clock."""
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return value  # no need to look the branch up
        return local_moment(value, self.policy_for(loan_no))

    async def status(self, loan_no: str) -> CaseStatus | None:
        try:
            return await self.client.get_workflow_handle(workflow_id(loan_no)).query(WF.status)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def locations(self, who: Principal, loan_no: str, visit: bool) -> Locations:
        """Where the phones were (`visit`: a visit is in progress): for the supervisors and
        branch heads (of the case's branch: the caller has checked that it may see it)."""
        if who.role not in SUPERVISORS:
            return Locations()
        handle = self.client.get_workflow_handle(workflow_id(loan_no))
        try:
            found = Locations(alerts=list(await handle.query(WF.alert_locations)))
            if visit:
                found.visit = await handle.query(WF.visit_location)
            return found
        except QUERY_ERRORS:
            return Locations(unavailable=True)

    async def visit_location(self, who: Principal, loan_no: str) -> VisitLocation | None:
        """Where the phone was at the check-in of the visit in progress (see `locations`)."""
        return (await self.locations(who, loan_no, True)).visit

    async def _phone_checks(
        self, loan_no: str, update_id: str | None, arg: Any, sent_at: datetime | None
    ) -> tuple[Any, str, ActionOutcome | None]:
        """A phone's action: its recorded time on the server's clock (`sent_at`, the phone's
        clock at sending) and within the policy's bounds. Out of them: refused, unless the
        case applied that very action already (its answer was lost): then its answer.
        Returns the request to send, a note on the phone's clock, and any early answer."""
        policy, now, note = self.policy_for(loan_no), datetime.now(UTC), ""
        try:
            if sent_at is not None:
                arg, note = clock_corrected(policy, arg, sent_at, now)
            check_offline_time(policy, arg, now)
            return arg, note, None
        except Refused as refused:
            why = str(refused)
        done = None
        if update_id is not None:
            handle = self.client.get_workflow_handle(workflow_id(loan_no))
            try:
                done = await handle.query(
                    WF.applied_op, AppliedOpAsk(update_id, request_digest(arg))
                )
            except QUERY_ERRORS:
                done = None
        if done is not None:
            return arg, note, ActionOutcome(True, done.message, str(done.stage), done.number)
        return arg, note, ActionOutcome(False, why)

    async def _update(
        self, who: Principal, loan_no: str, action: str, update: Any, arg: Any, detail: str
    ) -> ActionOutcome:
        handle = self.client.get_workflow_handle(workflow_id(loan_no))
        op, sent_at = UPDATE_ID.get(), SENT_AT.get()
        update_id, early = None, None
        if (op or sent_at) and action not in PHONE_UPDATES:
            early = ActionOutcome(False, OP_ID_REFUSED if op else SENT_AT_REFUSED)
        elif op or sent_at:
            # Namespaced by the action and the user: nobody else's answer, nothing else's.
            update_id = phone_update_id(action, who.username, op) if op else None
            arg, note, early = await self._phone_checks(loan_no, update_id, arg, sent_at)
            detail += note
        try:
            if early is not None:
                outcome = early
            else:
                result: UpdateAccepted = await handle.execute_update(update, arg, id=update_id)
                outcome = ActionOutcome(True, result.message, str(result.stage), result.number)
        except WorkflowUpdateFailedError as e:
            outcome = ActionOutcome(False, refusal(e))
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                outcome = ActionOutcome(False, f"loan {loan_no}: no case")
            elif e.status == RPCStatusCode.FAILED_PRECONDITION or "completed" in e.message:
                outcome = ActionOutcome(False, f"loan {loan_no}: the case is closed")
            else:
                raise
        audit.record(
            self.sessions,
            who.username,
            who.role.value,
            action,
            "ACCEPTED" if outcome.accepted else "REFUSED",
            f"{detail} -> {outcome.message}",
            loan_no,
        )
        return outcome

    async def report_visit(
        self,
        who: Principal,
        loan_no: str,
        outcome: str,
        collector_ids: list[str],
        visited_at: datetime,
        notes: str = "",
        counselling: list[str] | None = None,
        hardships: list[str] | None = None,
        situation: str = "",
    ) -> ActionOutcome:
        visited_at = self._local(loan_no, visited_at)
        report = VisitReport(
            outcome, collector_ids, visited_at, notes, who.actor,
            list(counselling or []), list(hardships or []), situation,
        )  # fmt: skip
        return await self._update(
            who, loan_no, "report_visit", WF.report_visit, report,
            f"visit {outcome} by {', '.join(collector_ids)} at {visited_at.isoformat()}",
        )  # fmt: skip

    async def propose_plan(
        self,
        who: Principal,
        loan_no: str,
        installments: list[PlannedInstallment],
        first_is_down_payment: bool = False,
        notes: str = "",
    ) -> ActionOutcome:
        proposal = PlanProposal(installments, who.actor, first_is_down_payment, notes)
        total = sum(i.amount_fen for i in installments)
        return await self._update(
            who, loan_no, "propose_plan", WF.propose_plan, proposal,
            f"{len(installments)} installments, {total} fen",
        )  # fmt: skip

    async def propose_even_plan(
        self,
        who: Principal,
        loan_no: str,
        months: int,
        first_due: date,
        down_payment_fen: int = 0,
        notes: str = "",
    ) -> ActionOutcome:
        """An even monthly plan over what is outstanding now (the Query says how much)."""
        status = await self.status(loan_no)
        if status is None:
            return ActionOutcome(False, f"loan {loan_no}: no case")
        if status.outstanding_fen is None:
            return ActionOutcome(False, "stage: the debt is not known yet")
        if not 0 <= down_payment_fen < status.outstanding_fen:
            return ActionOutcome(False, "down_payment: less than what is outstanding")
        if not 1 <= months <= 120:
            return ActionOutcome(False, "months: 1 to 120")
        plan = monthly_plan(
            status.outstanding_fen,
            months,
            first_due,
            self.policy_for(loan_no),  # due at the end of the day on the case's clock
            who.actor,
            down_payment_fen,
        )
        return await self.propose_plan(
            who, loan_no, plan.installments, plan.first_is_down_payment, notes
        )

    async def confirm_signature(
        self,
        who: Principal,
        loan_no: str,
        version: int,
        sha256: str,
        collector_id: str,
        signed_at: datetime,
        place: str,
    ) -> ActionOutcome:
        signed_at = self._local(loan_no, signed_at)
        confirmation = SignatureConfirmation(version, sha256, collector_id, signed_at, place)
        return await self._update(
            who, loan_no, "confirm_signature", WF.confirm_signature, confirmation,
            f"version {version} sha256 {sha256[:16]} at {place}",
        )  # fmt: skip

    async def reassign(
        self, who: Principal, loan_no: str, collector_ids: list[str], reason: str
    ) -> ActionOutcome:
        request = Reassignment(collector_ids, who.actor, reason)
        return await self._update(
            who, loan_no, "reassign", WF.reassign, request,
            f"to {', '.join(collector_ids)}: {reason}",
        )  # fmt: skip

    async def hold(
        self, who: Principal, loan_no: str, until: date | datetime, reason: str
    ) -> ActionOutcome:
        """Until a time, or a date: the end of that day on the case's clock."""
        until = self._local(loan_no, until)
        request = HardshipHold(until, reason, who.actor)
        return await self._update(
            who, loan_no, "hold", WF.hold, request, f"until {until.isoformat()}: {reason}"
        )

    async def lift_hold(self, who: Principal, loan_no: str, reason: str) -> ActionOutcome:
        return await self._update(
            who, loan_no, "lift_hold", WF.lift_hold, LiftHold(who.actor, reason), reason
        )

    async def close(self, who: Principal, loan_no: str, outcome: str, reason: str) -> ActionOutcome:
        request = CloseRequest(outcome, reason, who.actor)
        return await self._update(
            who, loan_no, "close_case", WF.close_case, request, f"{outcome}: {reason}"
        )

    async def record_call(
        self,
        who: Principal,
        loan_no: str,
        outcome: str,
        collector_id: str,
        called_at: datetime,
        party: str = "borrower",
        notes: str = "",
    ) -> ActionOutcome:
        """A call attempt: refused at night without consent and beyond the day's unanswered
        calls to the number (the activity counts every loan of the borrower)."""
        called_at = self._local(loan_no, called_at)
        report = CallReport(outcome, collector_id, called_at, party, notes, who.actor)
        return await self._update(
            who, loan_no, "record_call", WF.record_call, report,
            f"call {outcome} to {party} by {collector_id} at {called_at.isoformat()}",
        )  # fmt: skip

    async def record_consent(
        self,
        who: Principal,
        loan_no: str,
        given: bool,
        how: str,
        at: datetime,
        notes: str = "",
        kind: str = ConsentKind.NIGHT_CONTACT,
    ) -> ActionOutcome:
        """The borrower gives or withdraws consent (to calls and visits at night)."""
        at = self._local(loan_no, at)
        change = ConsentChange(kind, given, how, who.actor, at, notes)
        verb = "given" if given else "withdrawn"
        return await self._update(
            who, loan_no, "record_consent", WF.record_consent, change,
            f"{kind} {verb} ({how}) at {at.isoformat()}",
        )  # fmt: skip

    async def contact_third_party(
        self, who: Principal, loan_no: str, contact_id: int
    ) -> ActionOutcome:
        """An SMS asking a loan contact to pass a message on. Whether the contact is related
        to the debt comes from `loan_contacts`, never from the caller."""
        contact = contact_on_loan(self.sessions, loan_no, contact_id)
        if contact is None:
            outcome = ActionOutcome(
                False, f"contact_id: {contact_id} is not a contact of loan {loan_no}"
            )
            audit.record(
                self.sessions, who.username, who.role.value, "contact_third_party", "REFUSED",
                f"contact {contact_id} -> {outcome.message}", loan_no,
            )  # fmt: skip
            return outcome
        message = ThirdPartyMessage(contact.id, who.actor, related=contact.related)
        return await self._update(
            who, loan_no, "contact_third_party", WF.contact_third_party, message,
            f"contact {contact.id} ({contact.relation}, {contact.phone_masked})",
        )  # fmt: skip

    async def record_promise(
        self,
        who: Principal,
        loan_no: str,
        amount_fen: int,
        due_date: date,
        source: str,
        notes: str = "",
    ) -> ActionOutcome:
        """A promise to pay (承诺还款) from a call, a visit or an SMS reply."""
        request = PromiseRequest(amount_fen, due_date, source, who.actor, notes)
        return await self._update(
            who, loan_no, "record_promise", WF.record_promise, request,
            f"promise {amount_fen} fen by {due_date} ({source})",
        )  # fmt: skip

    async def propose_waiver(
        self,
        who: Principal,
        loan_no: str,
        kind: str,
        reason: str,
        penalty_fen: int = 0,
        interest_fen: int = 0,
        settle_fen: int = 0,
    ) -> ActionOutcome:
        """A waiver (息费减免) or settlement (一次性结清): the proposer's role is the signed-in
        user's, so a collector's proposal beyond their own limit waits for an approver."""
        role = who.role.value if who.role in APPROVER_ROLES else ""
        proposal = WaiverProposal(
            kind, who.actor, role, reason, penalty_fen, interest_fen, settle_fen
        )
        return await self._update(
            who, loan_no, "propose_waiver", WF.propose_waiver, proposal,
            f"{kind}: penalty {penalty_fen}, interest {interest_fen}, settle {settle_fen} fen: "
            f"{reason}",
        )  # fmt: skip

    async def decide_waiver(
        self, who: Principal, loan_no: str, seq: int, approve: bool, reason: str = ""
    ) -> ActionOutcome:
        """An approver's answer; the case checks that the role's level covers the request."""
        if who.role not in (Role.SUPERVISOR, Role.BRANCH_HEAD):
            outcome = ActionOutcome(False, "role: only a supervisor or branch head decides")
            audit.record(
                self.sessions, who.username, who.role.value, "decide_waiver", "REFUSED",
                f"waiver {seq} -> {outcome.message}", loan_no,
            )  # fmt: skip
            return outcome
        decision = WaiverDecision(seq, approve, who.actor, who.role.value, reason)
        verb = "approve" if approve else "refuse"
        return await self._update(
            who, loan_no, "decide_waiver", WF.decide_waiver, decision,
            f"{verb} waiver {seq}: {reason}",
        )  # fmt: skip

    # ------------------------------------------------------------------ staff safety

    async def check_in(
        self,
        who: Principal,
        loan_no: str,
        collector_ids: list[str],
        at: datetime,
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> ActionOutcome:
        """The team arrives: the supervisor is alerted unless it checks out in time."""
        at = self._local(loan_no, at)
        request = CheckIn(collector_ids, at, who.actor, latitude, longitude)
        return await self._update(
            who, loan_no, "check_in", WF.check_in, request,
            f"check-in by {', '.join(collector_ids)} at {at.isoformat()}",
        )  # fmt: skip

    async def check_out(
        self,
        who: Principal,
        loan_no: str,
        outcome: str,
        collector_ids: list[str],
        visited_at: datetime,
        notes: str = "",
        counselling: list[str] | None = None,
        hardships: list[str] | None = None,
        situation: str = "",
    ) -> ActionOutcome:
        visited_at = self._local(loan_no, visited_at)
        report = VisitReport(
            outcome, collector_ids, visited_at, notes, who.actor,
            list(counselling or []), list(hardships or []), situation,
        )  # fmt: skip
        return await self._update(
            who, loan_no, "check_out", WF.check_out, CheckOut(report, who.actor),
            f"check-out, visit {outcome} by {', '.join(collector_ids)}",
        )  # fmt: skip

    async def need_help(
        self,
        who: Principal,
        loan_no: str,
        collector_id: str,
        at: datetime,
        notes: str = "",
        latitude: float | None = None,
        longitude: float | None = None,
    ) -> ActionOutcome:
        request = HelpRequest(collector_id, self._local(loan_no, at), notes, latitude, longitude)
        return await self._update(
            who, loan_no, "need_help", WF.need_help, request, f"help asked by {collector_id}"
        )

    async def acknowledge_alert(
        self, who: Principal, loan_no: str, alert_no: int, notes: str = ""
    ) -> ActionOutcome:
        return await self._update(
            who, loan_no, "acknowledge_alert", WF.acknowledge_alert,
            AlertAck(alert_no, who.actor, notes), f"alert {alert_no}: {notes}",
        )  # fmt: skip

    def _refuse_unless(
        self, who: Principal, loan_no: str, action: str, roles: tuple[Role, ...], on_case: bool
    ) -> ActionOutcome | None:
        """The role and the branch (or, for a collector, the case's team), checked here for
        every caller (web pages, CLI); a refusal is audited and answered, never sent on."""
        from service.case_record import case_header

        header = case_header(self.sessions, loan_no)
        allowed = who.role in roles
        if allowed and header is not None:
            branch, collectors = header
            if who.role == Role.COLLECTOR:
                allowed = on_case and bool(who.collector_id) and who.collector_id in collectors
            else:
                allowed = branch in who.branches
        if header is not None and allowed:
            return None
        names = "/".join(r.value for r in roles)
        message = (
            f"loan {loan_no}: no case"
            if header is None
            else f"role: only {names} of the case's branch may do this (无权操作)"
        )
        audit.record(
            self.sessions, who.username, who.role.value, action, "REFUSED", message, loan_no
        )
        return ActionOutcome(False, message)

    async def legal_decision(
        self, who: Principal, loan_no: str, decision: str, reason: str, advice: str = ""
    ) -> ActionOutcome:
        """A legal reviewer's decision on a dead end: a LEGAL user of the case's branch (the
        role also goes into the Update, whose validator checks it)."""
        if refused := self._refuse_unless(who, loan_no, "legal_decision", (Role.LEGAL,), False):
            return refused
        request = LegalDecisionRequest(decision, who.actor, reason, advice, who.role.value)
        return await self._update(
            who, loan_no, "legal_decision", WF.legal_decision, request,
            f"{decision}: {reason}" + (f" (advice: {advice})" if advice else ""),
        )  # fmt: skip

    async def record_complaint(
        self, who: Principal, loan_no: str, source: str, summary: str, at: datetime,
        about: str = "",
    ) -> ActionOutcome:  # fmt: skip
        """A complaint the borrower made at a visit or on a call (SMS ones come by SMS):
        a collector of the case, or a supervisor or branch head of its branch."""
        if refused := self._refuse_unless(who, loan_no, "record_complaint", COMPLAINT_ROLES, True):
            return refused
        report = ComplaintReport(source, summary, who.actor, self._local(loan_no, at), about)
        return await self._update(
            who, loan_no, "record_complaint", WF.record_complaint, report,
            f"{source}: {summary[:200]}",
        )  # fmt: skip

    async def acknowledge_complaint(
        self, who: Principal, loan_no: str, number: int
    ) -> ActionOutcome:
        if refused := self._refuse_unless(
            who, loan_no, "acknowledge_complaint", COMPLAINT_ROLES, True
        ):
            return refused
        return await self._update(
            who, loan_no, "acknowledge_complaint", WF.acknowledge_complaint,
            ComplaintAction(number, who.actor), f"complaint {number}",
        )  # fmt: skip

    async def resolve_complaint(
        self, who: Principal, loan_no: str, number: int, outcome: str
    ) -> ActionOutcome:
        """The outcome is texted to the borrower."""
        if refused := self._refuse_unless(who, loan_no, "resolve_complaint", COMPLAINT_ROLES, True):
            return refused
        return await self._update(
            who, loan_no, "resolve_complaint", WF.resolve_complaint,
            ComplaintAction(number, who.actor, outcome), f"complaint {number}: {outcome}",
        )  # fmt: skip

    async def lift_hostile_team(self, who: Principal, loan_no: str, reason: str) -> ActionOutcome:
        """A supervisor or branch head of the case's branch lifts the hostile-visit team."""
        if refused := self._refuse_unless(who, loan_no, "lift_hostile_team", SUPERVISORS, False):
            return refused
        return await self._update(
            who, loan_no, "lift_hostile_team", WF.lift_hostile_team,
            LiftHostileTeam(who.actor, reason), reason,
        )  # fmt: skip

    def open_loans_in(self, region_or_branch: str) -> list[str]:
        """Loan numbers of the open cases in a region (county) or a single branch."""
        from db.models import Loan

        with self.sessions() as session:
            branches = list(
                session.scalars(
                    select(Branch.code).where(
                        (Branch.region == region_or_branch) | (Branch.code == region_or_branch)
                    )
                )
            )
            return list(
                session.scalars(
                    select(Loan.loan_no)
                    .join(Case, Case.loan_id == Loan.id)
                    .where(Case.branch_code.in_(branches), Case.closed_at.is_(None))
                    .order_by(Loan.loan_no)
                )
            )

    async def hold_many(
        self,
        who: Principal,
        loan_nos: list[str],
        until: date | datetime,
        reason: str,
        progress: Callable[[str, ActionOutcome], None] | None = None,
        concurrency: int = 16,
    ) -> dict[str, ActionOutcome]:
        """The same hold on many cases (a flood, a drought): each answered on its own; a
        date or a bare time is read on each case's own clock."""
        gate = asyncio.Semaphore(concurrency)
        results: dict[str, ActionOutcome] = {}

        async def one(loan_no: str) -> None:
            async with gate:
                results[loan_no] = await self.hold(who, loan_no, until, reason)
            if progress:
                progress(loan_no, results[loan_no])

        await asyncio.gather(*(one(n) for n in loan_nos))
        return results
