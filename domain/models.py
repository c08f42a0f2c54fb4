"""Typed inputs and outputs of the workflow, its messages and its activities.

Every field added later must have a default, so that running cases (whose histories hold
the old shape) still decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from domain.policy import Policy
from domain.policy_wire import PolicyDelta, case_policy
from domain.stages import ReplyIntent, Stage, TaskKind

# ---------------------------------------------------------------- workflow input and result


@dataclass
class CaseInput:
    loan_no: str
    branch: str
    policy: Policy = field(default_factory=Policy)
    started_by: str = "system"
    # Set only when the case continues as new: the whole state of the previous run.
    state: CaseState | None = None
    # A fresh id per start (collection-v4's generation): the same after a workflow reset,
    # which replays this input, and new when a failed case is started again.
    generation: str = ""


@dataclass
class CaseResult:
    loan_no: str
    outcome: Stage
    closed_at: datetime
    debt_fen: int
    paid_fen: int
    outstanding_fen: int
    reason: str


# ---------------------------------------------------------------- human input (updates)


@dataclass
class VisitReport:
    outcome: str  # a VisitOutcome value; checked by the validator with a clear message
    collector_ids: list[str]
    visited_at: datetime
    notes: str = ""
    reported_by: str = ""
    # Help recorded (issue 15): counselling given (Counselling values), the borrower's
    # situation as they stated it (Hardship values and their words).
    counselling: list[str] = field(default_factory=list)
    hardships: list[str] = field(default_factory=list)
    situation: str = ""


@dataclass
class PlannedInstallment:
    due_at: datetime
    amount_fen: int


@dataclass
class PlanProposal:
    installments: list[PlannedInstallment]
    proposed_by: str
    first_is_down_payment: bool = False
    notes: str = ""


@dataclass
class SignatureConfirmation:
    version: int
    sha256: str
    collector_id: str
    signed_at: datetime
    place: str


@dataclass
class Reassignment:
    collector_ids: list[str]
    by: str
    reason: str


@dataclass
class HardshipHold:
    until: datetime
    reason: str
    by: str


@dataclass
class LiftHold:
    by: str
    reason: str


@dataclass
class CloseRequest:
    outcome: str  # LEGAL_ESCALATION, WRITTEN_OFF or CANCELLED
    reason: str
    by: str


@dataclass
class CheckIn:
    """The team arrives at the borrower's (the phone page's "check in"); a place from the
    phone's geolocation when the collector allowed it."""

    collector_ids: list[str]
    checked_in_at: datetime
    by: str = ""
    latitude: float | None = None
    longitude: float | None = None


@dataclass
class CheckOut:
    """The team leaves: the visit's report (recorded as `report_visit` records it)."""

    report: VisitReport
    by: str = ""


@dataclass
class HelpRequest:
    """The "need help" button: the supervisor is alerted at once."""

    collector_id: str
    at: datetime
    notes: str = ""
    latitude: float | None = None
    longitude: float | None = None


@dataclass
class AlertAck:
    """Someone at the branch has reached the team (or knows they are safe)."""

    alert_no: int
    by: str
    notes: str = ""


@dataclass
class LegalDecisionRequest:
    """A legal reviewer's decision on a dead end (a LegalDecision value)."""

    decision: str
    by: str
    reason: str
    advice: str = ""  # for the collectors, when the case returns to negotiation
    role: str = ""  # the signed-in role of `by` (LEGAL), checked by the validator


@dataclass
class ComplaintReport:
    """A complaint a collector records (from a visit or a call): the borrower's words."""

    source: str  # VISIT or CALL (SMS complaints come by the borrower_reply signal)
    summary: str
    by: str
    received_at: datetime
    about: str = ""  # the collector complained about, if the borrower named one


@dataclass
class ComplaintAction:
    """A complaint acknowledged, or resolved with its outcome (sent to the borrower)."""

    number: int
    by: str
    outcome: str = ""  # for a resolution: what the borrower is told


@dataclass
class LiftHostileTeam:
    by: str
    reason: str


@dataclass
class UpdateAccepted:
    """What an accepted update answers: the case's stage after it and a short message."""

    stage: Stage
    message: str
    number: int = 0  # visit number, plan number, agreement version ...


# ---------------------------------------------------------------- facts that arrive (signals)


@dataclass
class PaymentPosted:
    reference: str
    amount_fen: int
    paid_at: datetime
    source: str = "core-banking"


@dataclass
class CallReport:
    """A collector's phone call to the debtor ("borrower") or a loan contact ("contact:<id>")."""

    outcome: str  # a CallOutcome value
    collector_id: str
    called_at: datetime
    party: str = "borrower"
    notes: str = ""
    reported_by: str = ""


@dataclass
class ConsentChange:
    """The borrower gives or withdraws consent (e.g. to calls and visits at night)."""

    kind: str  # a ConsentKind value
    given: bool
    how: str  # AGREEMENT (a signed clause), SMS, VISIT, CALL
    by: str
    at: datetime
    notes: str = ""


@dataclass
class ThirdPartyMessage:
    """An SMS to a loan contact (contact id from loan_contacts)."""

    contact_id: int
    by: str
    related: bool = False  # filled from loan_contacts by the service, checked again on sending


@dataclass
class BranchMove:
    """A later export names another branch for the loan: the case follows it."""

    branch: str
    by: str = "intake"


@dataclass
class DebtUpdate:
    """A later export's figures for the loan: the balances at the start of `as_of` (the
    export's date), so payments dated before it are already deducted from them."""

    as_of: date
    principal_fen: int  # outstanding principal
    interest_fen: int
    penalty_fen: int
    by: str = "intake"
    overdue_since: date | None = None  # the export's, when it corrects the case's

    @property
    def total_fen(self) -> int:
        return self.principal_fen + self.interest_fen + self.penalty_fen


@dataclass
class CountedPayment:
    """A payment the case counted, by its date in the policy's zone: an export dated later
    has already deducted it from its balances."""

    paid_on: date
    amount_fen: int


@dataclass
class DebtRecord:
    """A debt update the case took, for the database (projection and audit trail)."""

    loan_no: str
    update: DebtUpdate
    debt_before_fen: int
    debt_after_fen: int
    outstanding_fen: int
    # collection-v5: the workflow time `outstanding_fen` is as of (the case row's
    # outstanding_fen follows only a newer one); None from released runs: not written.
    outstanding_at: datetime | None = None


@dataclass
class DeliveryFailure:
    """The provider could not deliver a message it had accepted (status callback)."""

    message_sid: str
    status: str  # undelivered or failed
    error_code: str = ""
    number_unusable: bool = False


@dataclass
class BorrowerReply:
    message_sid: str
    intent: ReplyIntent
    received_at: datetime
    claims_paid: bool = False  # a complaint that also says it was paid: the payment checked


# ---------------------------------------------------------------- state and status


@dataclass
class Installment:
    seq: int
    due_at: datetime
    amount_fen: int


@dataclass
class Plan:
    number: int
    installments: list[Installment]
    proposed_by: str
    accepted_at: datetime
    # paid_fen of the case when the plan was accepted: later payments count towards it.
    base_paid_fen: int
    first_is_down_payment: bool = False
    notes: str = ""
    # The debt as the case knew it when the plan was accepted (collection-v4): the agreement
    # is rendered from these, never from the loan row as it is at rendering time.
    debt_fen: int | None = None
    principal_fen: int | None = None
    interest_fen: int | None = None
    penalty_fen: int | None = None
    # Approved waivers and settlements before the plan (their own line in the agreement):
    # principal + interest + penalty - waived = debt.
    waived_fen: int = 0

    @property
    def total_fen(self) -> int:
        return sum(i.amount_fen for i in self.installments)


@dataclass
class AgreementRef:
    version: int
    sha256: str
    plan_number: int
    path: str = ""


@dataclass
class Hold:
    until: datetime
    reason: str
    by: str
    since: datetime


@dataclass
class HistoryEntry:
    at: datetime
    kind: str
    detail: str
    actor: str = "system"


@dataclass
class Counters:
    sms_sent: int = 0
    sms_blocked: int = 0
    sms_failed: int = 0
    visits: int = 0
    unreached_visits: int = 0
    refusals: int = 0
    failed_negotiations: int = 0
    broken_promises: int = 0
    renegotiations: int = 0
    escalations: int = 0
    promises_kept: int = 0
    promises_broken: int = 0  # promises to pay broken (broken_promises: missed installments)


@dataclass
class CallEntry:
    at: datetime
    party: str
    outcome: str


@dataclass
class ThirdPartyEntry:
    at: datetime
    contact_id: int
    related: bool


@dataclass
class VisitInProgress:
    """A checked-in visit: the supervisor is alerted at `alert_at` unless the team checks
    out before."""

    number: int
    collector_ids: list[str]
    checked_in_at: datetime
    expected_back: datetime
    alert_at: datetime
    by: str = ""
    latitude: float | None = None
    longitude: float | None = None
    alerted: bool = False

    def shown(self) -> VisitShown:
        """The visit as the status Query shows it to anyone who may see the case."""
        return VisitShown(
            self.number, list(self.collector_ids), self.checked_in_at, self.expected_back,
            self.alert_at, self.by, self.alerted,
        )  # fmt: skip


@dataclass
class VisitShown:
    """A checked-in visit without the phone's location: that is the branch's supervisors'
    only (the `visit_location` Query, asked for them by the pages)."""

    number: int
    collector_ids: list[str]
    checked_in_at: datetime
    expected_back: datetime
    alert_at: datetime
    by: str = ""
    alerted: bool = False


@dataclass
class VisitLocation:
    """Where the phone was when the team checked in (when the collector allowed it)."""

    latitude: float
    longitude: float


@dataclass
class AppliedOp:
    """An action a phone sent with its own id, applied: its answer, given again to a repeat
    of the same action (the Update's name and the request's digest,
    domain/phone_actions.py); `at` (the case's clock) is when it was applied."""

    op_id: str
    message: str
    number: int = 0
    name: str = ""  # "" for one kept before names were: never taken for a repeat
    digest: str = ""
    at: datetime | None = None


@dataclass
class AppliedOpAsk:
    """Whether the case applied a phone's action: its Update id and its request's digest
    (the same id with another request is not that action)."""

    op_id: str
    digest: str


@dataclass
class SafetyAlert:
    """An open alert: the supervisor alerted (level SUPERVISOR), the branch head at
    `head_at` unless acknowledged before."""

    number: int
    kind: str  # an AlertKind value
    detail: str
    raised_at: datetime
    level: str = ""  # "" (not yet sent), then an AlertLevel value
    head_at: datetime | None = None
    # Where the phone was when the collector called for help (if it said): for the
    # branch's supervisors and heads only (their task, the `alert_locations` Query).
    latitude: float | None = None
    longitude: float | None = None

    def shown(self) -> SafetyAlert:
        """The alert as the status Query shows it to anyone who may see the case."""
        return replace(self, latitude=None, longitude=None)


@dataclass
class AlertLocation:
    """Where the phone was when its collector called for help (alert `number`)."""

    number: int
    latitude: float
    longitude: float


@dataclass
class Complaint:
    number: int
    source: str  # SMS, VISIT, CALL
    summary: str
    received_at: datetime
    ack_due: datetime
    resolve_due: datetime
    collectors: list[str] = field(default_factory=list)  # whom it is about
    by: str = "borrower"
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    ack_escalated: bool = False
    resolve_escalated: bool = False


@dataclass
class CaseState:
    loan_no: str
    branch: str
    policy: Policy
    stage: Stage
    stage_since: datetime
    opened_at: datetime
    started_by: str = "system"
    transition_seq: int = 0
    # From the investigation.
    debt_fen: int | None = None
    overdue_since: date | None = None
    risk_tier: str = ""
    strategy: str = ""
    team_required: bool = False
    remote: bool = False
    hostile: bool = False
    has_phone: bool = True
    collectors: list[str] = field(default_factory=list)
    # Money.
    paid_fen: int = 0
    payment_refs: list[str] = field(default_factory=list)
    # Where the current stage is: a named phase and its deadline (survive continue-as-new).
    phase: str = ""
    phase_due: datetime | None = None
    attempt: int = 0  # visit attempt within the current round of visits
    round_unreached: int = 0
    round_refusals: int = 0
    cycle_done: bool = False  # an installment cycle ended: time to continue as new
    last_covered_seq: int = 0  # installments of the plan paid at the last cycle boundary
    next_action: str = ""
    next_action_at: datetime | None = None
    # Human input waiting for the main loop.
    pending_visit_outcome: str | None = None
    pending_plan: Plan | None = None
    plan: Plan | None = None
    plans_made: int = 0
    agreement: AgreementRef | None = None
    signed_version: int | None = None
    reminded_seqs: list[int] = field(default_factory=list)
    next_revisit_at: datetime | None = None
    hold: Hold | None = None
    resume_stage: Stage | None = None
    close_request: CloseRequest | None = None
    opted_out: bool = False
    acknowledged: bool = False
    sms_seq: int = 0
    task_seq: int = 0
    sms_sent_at: list[datetime] = field(default_factory=list)
    reply_sids: list[str] = field(default_factory=list)
    failed_sids: list[str] = field(default_factory=list)
    sms_undeliverable: bool = False  # a delivery receipt said the last message never arrived
    counters: Counters = field(default_factory=Counters)
    history: list[HistoryEntry] = field(default_factory=list)
    runs: int = 1
    # collection-v4: the first run's id (8 characters), in every idempotency key, so that a
    # case started again after a failed or terminated run never meets its predecessor's keys.
    generation: str = ""
    visit_notice_sent: bool = False  # collection-v4: in this round of visits
    # collection-v4, the rule set: collectors at every visit (0: released code's team rule).
    team_size: int = 0
    consents: list[ConsentChange] = field(default_factory=list)  # the newest per kind counts
    calls: list[CallEntry] = field(default_factory=list)  # the last eight days
    calls_made: int = 0
    consents_made: int = 0
    payments_pending: int = 0  # counted, their records not yet confirmed (collection-v4)
    failures_in_row: int = 0  # failed attempts to reach the debtor since the last success
    third_party: list[ThirdPartyEntry] = field(default_factory=list)  # the last eight days
    # The debt's breakdown as of the investigation (collection-v4), snapshotted into plans.
    principal_fen: int | None = None
    interest_fen: int | None = None
    penalty_fen: int | None = None
    # Debts that change (issue 18): payments counted since the ledger began, by date, the
    # date of the newest export the case took, and an export that came before the
    # investigation read the loan (taken right after it).
    counted_payments: list[CountedPayment] = field(default_factory=list)
    debt_as_of: date | None = None
    debt_update_pending: DebtUpdate | None = None
    # OverdueSince is a search attribute of this run (collection-v4, or from a debt update).
    overdue_attribute: bool = False
    # collection-v5: the OutstandingFen search attribute's value (refreshed at stage changes
    # and when the case ends; the database has the exact amount), and the workflow time of
    # the last outstanding amount written to the database (each write a later one).
    outstanding_shown: int | None = None
    outstanding_stamp: datetime | None = None
    # collection-v6: the next action the case row has (written by the activity before the
    # wait, once it is done), the workflow time it is as of (each write a later one), and
    # the NextActionAt search attribute's value: unset while the row has the current
    # wait's, else that wait's deadline (a wait nothing wrote ahead of it).
    # `next_action_rows`: this state's fields are kept by a collection-v6 run (a released
    # run's state learns them once).
    next_action_row: str = ""
    next_action_row_at: datetime | None = None
    next_action_row_stamp: datetime | None = None  # of the newest write known done
    next_action_stamp: datetime | None = None  # of the newest write issued
    next_action_shown: datetime | None = None
    next_action_rows: bool = False
    # Promises to pay (the last few; every one is in the database) and waivers/settlements.
    promises: list[Promise] = field(default_factory=list)
    promises_made: int = 0
    waivers: list[Waiver] = field(default_factory=list)
    waivers_made: int = 0
    waived_fen: int = 0  # approved waivers: debt_fen is the breakdown's sum less this
    # The strategy chosen at the assessment (collection-v4), kept for the case's life.
    strategy_version: str = ""
    segment: str = ""
    strategy_arm: str = ""  # CHAMPION or CHALLENGER
    offer_promises: bool = True
    offer_settlements: bool = True
    # Staff safety (issue 15): the visit checked in and not yet out, open alerts (the
    # watcher in workflows/safety.py raises and escalates them), and the team of at least
    # policy.hostile_visit_team_size after a hostile visit until a supervisor lifts it.
    visit: VisitInProgress | None = None
    check_ins: int = 0
    alerts: list[SafetyAlert] = field(default_factory=list)
    alerts_raised: int = 0
    hostile_team: bool = False
    safety_seq: int = 0  # changed by every safety message: wakes the watcher
    # A change of team while a visit was checked in (collection-v4): nobody out on the visit
    # leaves the case before the check-out, after which the watcher makes the change.
    assign_after_visit: AssignRequest | None = None
    # Legal review (collection-v4, issue 15): the decision waiting for the stage, the advice
    # of the last return to negotiation.
    legal_decision: LegalDecisionRequest | None = None
    legal_advice: str = ""
    dead_end_reason: str = ""  # why the case is under legal review
    # Complaints (issue 15): open ones; the watcher in workflows/complaints.py escalates.
    complaints: list[Complaint] = field(default_factory=list)
    complaints_made: int = 0
    complaint_seq: int = 0
    complaint_outcomes: list[ComplaintAction] = field(default_factory=list)  # SMS to send
    # Help recorded at visits: the hardships the borrower stated (they lengthen the next
    # plan's limits, domain/plans.py plan_policy) and the counselling given.
    hardships: list[str] = field(default_factory=list)
    counselling_given: list[str] = field(default_factory=list)
    # Actions phones sent with their own ids, the newest last (workflows/phone_ops.py): kept
    # across continue-as-new, where Temporal's own Update-id check does not reach.
    applied_ops: list[AppliedOp] = field(default_factory=list)


# ---------------------------------------------------------------- promises and waivers


@dataclass
class PromiseRequest:
    """A promise to pay (承诺还款): this much by the end of this local date."""

    amount_fen: int
    due_date: date
    source: str  # CALL, VISIT or SMS (the borrower's reply)
    by: str  # who recorded it
    notes: str = ""


@dataclass
class Promise:
    seq: int
    amount_fen: int
    due_date: date
    source: str
    by: str
    made_at: datetime
    base_paid_fen: int  # the case's paid_fen when it was made: later payments count
    status: str = "OPEN"  # OPEN, KEPT, BROKEN, CANCELLED
    resolved_at: datetime | None = None
    paid_fen: int = 0  # paid towards it when it was resolved
    notes: str = ""
    # Payments counted after it was made and dated from its day to its due date (by the
    # payment's own date, so a payment posted the next morning still counts).
    counted_fen: int = 0


@dataclass
class PromiseRecord:
    loan_no: str
    key: str
    generation: str
    promise: Promise


@dataclass
class WaiverProposal:
    """A waiver (息费减免: penalty and/or interest) or a settlement (一次性结清: the borrower
    pays `settle_fen` at once and the rest is waived, penalty first, then interest, then
    principal)."""

    kind: str  # WAIVER or SETTLEMENT
    proposed_by: str
    role: str  # the proposer's role, checked at the way in (web, CLI)
    reason: str
    penalty_fen: int = 0
    interest_fen: int = 0
    settle_fen: int = 0


@dataclass
class WaiverDecision:
    seq: int
    approve: bool
    by: str
    role: str  # the approver's role, checked at the way in; its level by the validator
    reason: str = ""


@dataclass
class Waiver:
    seq: int
    kind: str
    principal_fen: int
    interest_fen: int
    penalty_fen: int
    level: str  # the role whose limit covers it: COLLECTOR, SUPERVISOR, BRANCH_HEAD
    proposed_by: str
    proposed_at: datetime
    deadline: datetime
    reason: str
    settle_fen: int = 0
    # PENDING, APPROVED, REFUSED, EXPIRED; a settlement once approved is conditional:
    # APPROVED until its lump sum is paid (SETTLED, the rest waived) or pay_by passes (LAPSED).
    status: str = "PENDING"
    decided_by: str = ""
    decided_at: datetime | None = None
    decision_reason: str = ""
    pay_by: datetime | None = None  # a settlement's lump sum is due by then
    base_paid_fen: int = 0  # the case's paid_fen at the proposal: later payments count

    @property
    def total_fen(self) -> int:
        return self.principal_fen + self.interest_fen + self.penalty_fen


@dataclass
class WaiverRecord:
    loan_no: str
    key: str
    generation: str
    waiver: Waiver
    # collection-v5: the case's outstanding after the decision, as of this workflow time.
    outstanding_fen: int | None = None
    outstanding_at: datetime | None = None


@dataclass
class InstallmentStatus:
    seq: int
    due_at: datetime
    amount_fen: int
    covered_fen: int
    status: str  # PAID, PARTLY_PAID, DUE, OVERDUE, UPCOMING


@dataclass
class CaseStatus:
    loan_no: str
    branch: str
    stage: Stage
    stage_since: datetime
    next_action: str
    next_action_at: datetime | None
    collectors: list[str]
    risk_tier: str
    strategy: str
    team_required: bool
    debt_fen: int | None
    paid_fen: int
    outstanding_fen: int | None
    days_past_due: int | None
    plan_number: int | None
    installments: list[InstallmentStatus]
    agreement: AgreementRef | None
    signed_version: int | None
    hold: Hold | None
    opted_out: bool
    counters: Counters
    history: list[HistoryEntry]
    policy_version: str
    run: int
    team_size: int = 1  # collectors required at a visit
    night_consent: bool = False
    contact_lost: bool = False
    unanswered_calls_today: int = 0  # to the debtor's number, borrower-local day
    ruleset: str = ""
    promises: list[Promise] = field(default_factory=list)
    waivers: list[Waiver] = field(default_factory=list)
    waived_fen: int = 0
    strategy_version: str = ""
    segment: str = ""
    strategy_arm: str = ""
    visit: VisitShown | None = None  # without the phone's location
    alerts: list[SafetyAlert] = field(default_factory=list)
    hostile_team: bool = False
    legal_advice: str = ""
    complaints: list[Complaint] = field(default_factory=list)
    hardships: list[str] = field(default_factory=list)
    counselling_given: list[str] = field(default_factory=list)
    max_installments: int = 0  # the next plan's limit (longer after a stated hardship)


# ---------------------------------------------------------------- activity inputs and outputs


@dataclass
class CaseFacts:
    """What the investigation reads about a loan and its borrower (no names, no numbers)."""

    loan_no: str
    branch: str
    region: str
    debt_fen: int
    principal_fen: int
    interest_fen: int
    penalty_fen: int
    overdue_since: date
    monthly_income_fen: int
    household_size: int
    remote: bool
    hostile: bool
    has_phone: bool
    sms_opted_out: bool
    disaster_affected: bool
    prior_broken_promises: int


@dataclass
class AssessRequest:
    facts: CaseFacts
    policy: Policy | None  # None from collection-v6: `rules`
    as_of: datetime
    rules: PolicyDelta | None = None  # collection-v6: the case's policy against a base

    def case_policy(self) -> Policy:
        return case_policy(self.policy, self.rules)


@dataclass
class Assessment:
    risk_tier: str
    strategy: str
    goal: str
    team_required: bool
    reasons: list[str]
    # The strategy file's choice (domain/strategy.py), taken by collection-v4 cases.
    strategy_version: str = ""
    segment: str = ""
    arm: str = ""  # CHAMPION or CHALLENGER
    treatment: str = ""
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    offer_promises: bool = True
    offer_settlements: bool = True


@dataclass
class AssignRequest:
    loan_no: str
    branch: str
    team_size: int
    # Explicit collectors (reassignment); empty: choose by capacity.
    requested: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    by: str = "system"
    reason: str = ""
    # A remote or hostile visit: no collector whose safety training has expired (issue 15).
    trained_only: bool = False


@dataclass
class TrainingCheck:
    """A check-in's team on a remote or hostile case: each must have valid safety training
    on the branch's date of `at` (the database keeps the dates, as for the assignment)."""

    loan_no: str
    collector_ids: list[str]
    at: datetime


@dataclass
class Transition:
    loan_no: str
    seq: int
    from_stage: Stage | None
    to_stage: Stage
    at: datetime
    actor: str
    reason: str
    branch: str
    risk_tier: str
    collectors: list[str]
    debt_fen: int | None
    paid_fen: int
    next_action: str
    next_action_at: datetime | None
    generation: str = ""  # CaseState.generation
    strategy_version: str = ""
    segment: str = ""
    strategy_arm: str = ""
    # collection-v5: what the borrower owes, as of this workflow time (for the case row's
    # outstanding_fen, which only a newer time overwrites); None from released runs.
    outstanding_fen: int | None = None
    outstanding_at: datetime | None = None
    # collection-v6: the time next_action/next_action_at are as of (only a newer time
    # overwrites the case row's); None from released runs (written at every transition).
    next_action_stamp: datetime | None = None


@dataclass
class TaskRequest:
    key: str
    loan_no: str
    kind: TaskKind
    assignees: list[str]
    due_at: datetime | None
    detail: str
    created_at: datetime
    # collection-v5, with a payment taken back: the case's outstanding as of this time.
    outstanding_fen: int | None = None
    outstanding_at: datetime | None = None
    # collection-v6: the case's next action as of this workflow time (for the case row's
    # next_action/next_action_at, which only a newer time overwrites); None: not written.
    next_action: str = ""
    next_action_at: datetime | None = None
    next_action_stamp: datetime | None = None


@dataclass
class SmsRequest:
    key: str  # unique per (case, purpose, sequence): the outbox's idempotency key
    loan_no: str
    purpose: str  # the template name
    params: dict[str, str]
    requested_at: datetime
    # Set when the workflow already knows the message must not go out: recorded, not sent.
    blocked_reason: str = ""
    policy: Policy | None = field(default_factory=Policy)  # None from collection-v6: `rules`
    # "borrower", or "contact:<id>" for a loan contact (third party): the activity resolves
    # the number and checks the third-party rules again.
    party: str = "borrower"
    contact_lost: bool = False  # the workflow's view, for the third-party rule
    rules: PolicyDelta | None = None  # collection-v6: the case's policy against a base
    # collection-v6: the wait that follows the message once it is done (sent, recorded,
    # blocked or failed, not deferred), for the case row's next action, as of this workflow
    # time (only a newer time overwrites); None: not written (released runs, most messages).
    next_action: str = ""
    next_action_at: datetime | None = None
    next_action_stamp: datetime | None = None

    def case_policy(self) -> Policy:
        return case_policy(self.policy, self.rules)


@dataclass
class SmsResult:
    key: str
    status: str  # SENT, RECORDED (embedded gateway), DEFERRED, BLOCKED
    reason: str = ""
    not_before: datetime | None = None
    sent_at: datetime | None = None
    segments: int = 0
    error_code: int | None = None  # the provider's, when status is FAILED
    number_unusable: bool = False  # FAILED because no SMS can reach the number
    # SENT, but the provider's receipt (undelivered/failed) came before the send activity had
    # stored the Message SID: the case learns it here instead of by the signal.
    delivery_failure: DeliveryFailure | None = None
    two_way: bool = True  # sent on a channel whose replies reach us (not Twilio to China)


@dataclass
class VisitRecord:
    loan_no: str
    visit_no: int
    report: VisitReport
    stage: Stage
    generation: str = ""  # CaseState.generation
    # The case's policy: its rule set and version go on the contact log's row.
    policy: Policy | None = field(default_factory=Policy)  # None from collection-v6: `rules`
    rules: PolicyDelta | None = None  # collection-v6: the case's policy against a base

    def case_policy(self) -> Policy:
        return case_policy(self.policy, self.rules)


@dataclass
class PaymentRecord:
    loan_no: str
    payment: PaymentPosted
    counted: bool
    paid_total_fen: int
    outstanding_fen: int | None
    # collection-v5: the workflow time `outstanding_fen` is as of (written with a payment
    # that is this loan's, when newer than the case row's); None from released runs.
    outstanding_at: datetime | None = None
    # collection-v6: the case's next action as of this workflow time (for the case row's
    # next_action/next_action_at, which only a newer time overwrites); None: not written.
    next_action: str = ""
    next_action_at: datetime | None = None
    next_action_stamp: datetime | None = None


@dataclass
class AgreementRequest:
    loan_no: str
    plan: Plan
    collectors: list[str]
    debt_fen: int
    paid_fen: int
    policy: Policy | None  # None from collection-v6: `rules`
    generation: str = ""  # CaseState.generation: a restarted case renders its own versions
    rules: PolicyDelta | None = None  # collection-v6: the case's policy against a base

    def case_policy(self) -> Policy:
        return case_policy(self.policy, self.rules)


@dataclass
class SignatureRecord:
    loan_no: str
    confirmation: SignatureConfirmation


@dataclass
class CallRecord:
    """A call attempt to record; the activity checks the rule set again (the cap counts every
    case that calls the same number, the window reads the consent on record)."""

    loan_no: str
    key: str
    report: CallReport
    policy: Policy
    contact_lost: bool = False  # the case's view, for a call to an unrelated third party


@dataclass
class CallRecorded:
    party: str
    number_masked: str
    unanswered_today: int  # to that number, after this call


@dataclass
class ConsentRecord:
    loan_no: str
    key: str
    change: ConsentChange


@dataclass
class AlertRequest:
    """A safety alert for the branch's supervisors (or its head): a task, an SMS to each of
    their mobiles (staff purpose, outside the borrower rules) and an audit line."""

    key: str
    loan_no: str
    branch: str
    alert_no: int
    kind: str
    level: str  # an AlertLevel value
    detail: str
    at: datetime
    collector_ids: list[str] = field(default_factory=list)
    # The key of the alert's acknowledgement in the audit trail (SafetyAudit.key): an alert
    # acknowledged while this was being sent leaves no open task behind.
    ack_key: str = ""
    # A call for help's location: in the task (for the supervisors and heads it goes to),
    # never in the audit line, the case's history nor the texts.
    latitude: float | None = None
    longitude: float | None = None


@dataclass
class AlertSent:
    task_created: bool
    texts: int  # staff mobiles texted (or recorded)


@dataclass
class SafetyAudit:
    """An acknowledgement, a hostile team lifted: one audit line, once by its key."""

    key: str
    loan_no: str
    action: str
    by: str
    detail: str
    at: datetime
    # An acknowledgement: the alert's tasks (keys starting with this) are done, which takes
    # the alert off the dashboard's urgent banner.
    closes: str = ""


@dataclass
class ComplaintRecord:
    """A complaint as it stands now (opened, acknowledged, escalated, resolved): one row per
    (loan, generation, number) in `complaints`."""

    loan_no: str
    generation: str
    complaint: Complaint
    event: str  # OPENED, ACKNOWLEDGED, ACK_OVERDUE, RESOLVE_OVERDUE, RESOLVED
    at: datetime
    by: str = "system"
    outcome: str = ""
