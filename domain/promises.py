"""Promises to pay (承诺还款) and waivers or settlements (息费减免, 一次性结清): the pure rules.

A promise is lighter than a signed plan: an amount by the end of a local date. It is kept
when the payments counted since it was made, dated from its day to its due date, reach its
amount (judged a grace period after the date, for payment files that arrive late). A waiver
needs the approval of the lowest role whose limits cover the total granted on the case with
it (collector → supervisor → branch head, the limits in the policy); beyond the branch head's
limits it is refused. Within the collector's limit it is approved at once; above it, by
someone of the level other than the proposer. A settlement once approved is conditional:
the rest is waived only when its lump sum is paid by its deadline, else it lapses. The
workflow calls these with its state and `workflow.now()`; tests/test_promises.py calls them
with values.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.human_input import Refused
from domain.models import CaseState, Promise, PromiseRequest, Waiver, WaiverDecision, WaiverProposal
from domain.money import yuan
from domain.policy import DAY, Policy
from domain.stages import Stage
from domain.timerules import local_date, start_of_local_day

# Stages before a signed plan: a promise pauses the stage's next steps until its date.
PROMISE_STAGES = frozenset({Stage.INITIAL_CONTACT, Stage.FIELD_VISIT, Stage.NEGOTIATION})
PROMISE_SOURCES = ("CALL", "VISIT", "SMS")
WAIVER_KINDS = ("WAIVER", "SETTLEMENT")
# Approval levels, lowest first.
LEVELS = ("COLLECTOR", "SUPERVISOR", "BRANCH_HEAD")
LEVEL_ZH = {"COLLECTOR": "催收员", "SUPERVISOR": "主管", "BRANCH_HEAD": "网点负责人"}


# ---------------------------------------------------------------- promises


def open_promise(s: CaseState) -> Promise | None:
    if s.promises and s.promises[-1].status == "OPEN":
        return s.promises[-1]
    return None


def counts_towards(p: Promise, paid_on: date, policy: Policy) -> bool:
    """Whether a payment counted while the promise is open counts towards it: by the
    payment's own date, from the day the promise was made to its due date (a payment dated
    before the promise was already owed; one dated after the due date is late)."""
    return local_date(p.made_at, policy) <= paid_on <= p.due_date


def is_kept(p: Promise) -> bool:
    return p.counted_fen >= p.amount_fen


def promise_deadline(p: Promise, policy: Policy) -> datetime:
    """The end of the promise's local date (the borrower's midnight after it) and then the
    policy's grace for payment files that arrive late (a payment dated on the due date and
    posted the next morning keeps the promise). On a fast policy's clock (a day of
    `day_seconds`) the date counts in policy days from the day the promise was made."""
    grace = timedelta(seconds=policy.promise_grace_seconds)
    if policy.day_seconds == DAY:
        return start_of_local_day(p.due_date + timedelta(days=1), policy) + grace
    days = (p.due_date - local_date(p.made_at, policy)).days + 1
    return p.made_at + timedelta(seconds=days * policy.day_seconds) + grace


def check_promise(
    s: CaseState, req: PromiseRequest, outstanding: int | None, now: datetime
) -> None:
    if s.stage not in PROMISE_STAGES:
        names = ", ".join(sorted(PROMISE_STAGES))
        raise Refused(f"stage: a promise is recorded in {names}, not while the case is {s.stage}")
    if not s.offer_promises:
        raise Refused(f"stage: the case's strategy ({s.strategy}) offers no promises to pay")
    current = open_promise(s)
    if current is not None:
        raise Refused(
            f"promise: promise {current.seq} ({yuan(current.amount_fen)} yuan by "
            f"{current.due_date}) is still open; one open promise at a time"
        )
    if req.source not in PROMISE_SOURCES:
        raise Refused(f"source: {req.source!r} is not one of {', '.join(PROMISE_SOURCES)}")
    if not req.by.strip():
        raise Refused("by: name who recorded the promise")
    if req.amount_fen <= 0:
        raise Refused("amount_fen: a promise is of a positive amount")
    if outstanding is None or req.amount_fen > outstanding:
        owed = "unknown" if outstanding is None else f"{yuan(outstanding)} yuan"
        raise Refused(f"amount_fen: {yuan(req.amount_fen)} yuan is more than is owed ({owed})")
    today = local_date(now, s.policy)
    latest = today + timedelta(days=s.policy.max_promise_days)
    if not isinstance(req.due_date, date) or not today <= req.due_date <= latest:
        raise Refused(
            f"due_date: {req.due_date} must be between today ({today}) and {latest} "
            f"(at most {s.policy.max_promise_days} days ahead)"
        )


# ---------------------------------------------------------------- waivers and settlements


def applied(w: Waiver) -> bool:
    """Whether the waiver lowered the debt: an approved waiver, a settlement once paid."""
    return w.status == "SETTLED" or (w.status == "APPROVED" and w.kind == "WAIVER")


def awaiting_payment(w: Waiver) -> bool:
    """An approved settlement whose lump sum is not yet paid (conditional)."""
    return w.status == "APPROVED" and w.kind == "SETTLEMENT"


def settlement_paid(w: Waiver, paid_fen: int) -> bool:
    return paid_fen - w.base_paid_fen >= w.settle_fen


def waived(s: CaseState) -> tuple[int, int, int]:
    """(principal, interest, penalty) waived by the waivers applied so far."""
    done = [w for w in s.waivers if applied(w)]
    return (
        sum(w.principal_fen for w in done),
        sum(w.interest_fen for w in done),
        sum(w.penalty_fen for w in done),
    )


def granted(s: CaseState) -> tuple[int, int]:
    """(principal, interest and penalty) of every approved request on the case, a settlement
    still awaiting its lump sum included: the approval limits apply to this total."""
    done = [w for w in s.waivers if w.status in ("APPROVED", "SETTLED")]
    return (
        sum(w.principal_fen for w in done),
        sum(w.interest_fen + w.penalty_fen for w in done),
    )


def open_settlement(s: CaseState) -> Waiver | None:
    for w in s.waivers:
        if awaiting_payment(w):
            return w
    return None


def pending_waiver(s: CaseState) -> Waiver | None:
    for w in s.waivers:
        if w.status == "PENDING":
            return w
    return None


def level_of(role: str) -> int:
    return LEVELS.index(role) if role in LEVELS else -1


def required_level(principal_fen: int, fees_fen: int, policy: Policy) -> str | None:
    """The lowest role whose limits cover the waiver, or None when none does."""
    limits = (
        ("COLLECTOR", policy.waiver_collector_limit_fen, policy.waiver_collector_principal_fen),
        ("SUPERVISOR", policy.waiver_supervisor_limit_fen, policy.waiver_supervisor_principal_fen),
        ("BRANCH_HEAD", policy.waiver_head_limit_fen, policy.waiver_head_principal_fen),
    )
    for role, fees_limit, principal_limit in limits:
        if fees_fen <= fees_limit and principal_fen <= principal_limit:
            return role
    return None


def unpaid(s: CaseState) -> tuple[int, int, int]:
    """(principal, interest, penalty) still owed: the breakdown less the waivers applied,
    less the payments counted, which go to penalty, then interest, then principal (the
    core-banking order)."""
    w_principal, w_interest, w_penalty = waived(s)
    penalty = max(0, (s.penalty_fen or 0) - w_penalty)
    interest = max(0, (s.interest_fen or 0) - w_interest)
    principal = max(0, (s.principal_fen or 0) - w_principal)
    paid = max(0, s.paid_fen)
    on_penalty = min(paid, penalty)
    on_interest = min(paid - on_penalty, interest)
    on_principal = min(paid - on_penalty - on_interest, principal)
    return principal - on_principal, interest - on_interest, penalty - on_penalty


def waiver_parts(s: CaseState, proposal: WaiverProposal, outstanding: int) -> tuple[int, int, int]:
    """(principal, interest, penalty) the proposal would waive. A settlement waives all but
    its lump sum: penalty first, then interest, then principal, of what is still unpaid."""
    _, interest_left, penalty_left = unpaid(s)
    if proposal.kind == "WAIVER":
        return 0, proposal.interest_fen, proposal.penalty_fen
    rest = outstanding - proposal.settle_fen
    on_penalty = min(rest, penalty_left)
    on_interest = min(rest - on_penalty, interest_left)
    return rest - on_penalty - on_interest, on_interest, on_penalty


def check_waiver_proposal(
    s: CaseState, proposal: WaiverProposal, outstanding: int | None
) -> tuple[int, int, int, str]:
    """The parts and the level that must approve; Refused when the case cannot take it."""
    if s.stage in (
        Stage.PAID_IN_FULL,
        Stage.LEGAL_ESCALATION,
        Stage.WRITTEN_OFF,
        Stage.CANCELLED,
        Stage.INVESTIGATION,
    ):
        raise Refused(f"stage: no waiver while the case is {s.stage}")
    if outstanding is None or outstanding <= 0:
        raise Refused("stage: nothing is owed to waive")
    if s.stage in (Stage.AGREEMENT_SIGNING, Stage.FOLLOW_UP) or s.pending_plan is not None:
        raise Refused(
            f"stage: a plan exists (the case is {s.stage}); a waiver now would reach neither "
            "the agreement nor its schedule: renegotiate the plan to change what is owed "
            "(已有还款计划，请重新协商)"
        )
    current = pending_waiver(s)
    if current is not None:
        raise Refused(f"waiver: request {current.seq} awaits its decision; one at a time")
    settling = open_settlement(s)
    if settling is not None and settling.pay_by is not None:
        raise Refused(
            f"waiver: settlement {settling.seq} awaits its lump sum of "
            f"{yuan(settling.settle_fen)} yuan until {settling.pay_by.isoformat()}; one at a time"
        )
    if proposal.kind not in WAIVER_KINDS:
        raise Refused(f"kind: {proposal.kind!r} is not one of {', '.join(WAIVER_KINDS)}")
    if proposal.role not in LEVELS:
        raise Refused(f"role: {proposal.role!r} may not propose a waiver")
    if not proposal.proposed_by.strip() or not proposal.reason.strip():
        raise Refused("reason: name who proposes it and why")
    if proposal.kind == "WAIVER":
        if proposal.settle_fen:
            raise Refused("settle_fen: a waiver has no lump sum (kind SETTLEMENT has)")
        if min(proposal.interest_fen, proposal.penalty_fen) < 0:
            raise Refused("penalty_fen: amounts are never negative")
        if proposal.interest_fen + proposal.penalty_fen <= 0:
            raise Refused("penalty_fen: waive some penalty or interest")
        _, interest_left, penalty_left = unpaid(s)
        if proposal.penalty_fen > penalty_left:
            left = penalty_left
            raise Refused(f"penalty_fen: only {yuan(left)} yuan of penalty is left to waive")
        if proposal.interest_fen > interest_left:
            left = interest_left
            raise Refused(f"interest_fen: only {yuan(left)} yuan of interest is left to waive")
        if proposal.interest_fen + proposal.penalty_fen > outstanding:
            raise Refused(f"penalty_fen: more than is owed ({yuan(outstanding)} yuan)")
    elif not s.offer_settlements:
        raise Refused(f"kind: the case's strategy ({s.strategy}) offers no settlements")
    elif not 0 < proposal.settle_fen < outstanding:
        raise Refused(
            f"settle_fen: a settlement is a lump sum above 0 and below what is owed "
            f"({yuan(outstanding)} yuan)"
        )
    principal, interest, penalty = waiver_parts(s, proposal, outstanding)
    # The limits are on the total granted on the case: five small waivers need what one
    # waiver of their sum needs.
    before_principal, before_fees = granted(s)
    total_principal, total_fees = before_principal + principal, before_fees + interest + penalty
    level = required_level(total_principal, total_fees, s.policy)
    if level is None:
        p = s.policy
        raise Refused(
            f"{'settle_fen' if proposal.kind == 'SETTLEMENT' else 'penalty_fen'}: beyond the "
            f"branch head's limit for the case (interest and penalty {yuan(total_fees)} of "
            f"{yuan(p.waiver_head_limit_fen)} yuan, principal {yuan(total_principal)} of "
            f"{yuan(p.waiver_head_principal_fen)} yuan, with what was granted before)"
        )
    return principal, interest, penalty, level


def check_waiver_decision(s: CaseState, decision: WaiverDecision, now: datetime) -> Waiver:
    current = pending_waiver(s)
    if current is None or current.seq != decision.seq:
        raise Refused(f"seq: no waiver request {decision.seq} awaits a decision")
    if now >= current.deadline:
        raise Refused(
            f"seq: request {current.seq}'s deadline {current.deadline.isoformat()} has passed; "
            "it expires (申请已过期)"
        )
    if level_of(decision.role) < level_of(current.level):
        raise Refused(
            f"role: request {current.seq} needs a {current.level} ({LEVEL_ZH[current.level]}) "
            f"or above; {decision.role or 'nobody'} may not decide it"
        )
    if not decision.by.strip():
        raise Refused("by: name who decides")
    if decision.by == current.proposed_by:
        raise Refused("by: the proposer does not approve their own request")
    return current
