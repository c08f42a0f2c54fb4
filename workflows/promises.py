"""Promises to pay (承诺还款) and waivers or settlements (息费减免, 一次性结清) in a running case.

A promise pauses the stage it was made in (initial contact, field visit, negotiation): the
main loop waits for it (`wait`) until the payments dated from its day to its due date reach
its amount (kept: the stage goes on, its deadline moved by the time the promise took) or its
date ends and the grace for late payment files passes (broken: counted, and the case goes
where the policy's strategy says, or to a dead end after too many). A hardship hold cancels
an open promise. A waiver request waits for its approver in `watch_waivers`, a coroutine the
run starts beside its main loop: the request expires at its deadline (a durable timer); an
approved settlement then waits there for its lump sum until its own deadline (settled: the
rest waived; else lapsed). When the case closes, what is still open is closed with it
(`close_open`). Rules are pure, in domain/promises.py; every step is written through an
activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import phone_ops
from workflows.case import Case, Interrupted
from workflows.stages import dead_end

with workflow.unsafe.imports_passed_through():
    from domain.models import (
        Promise,
        PromiseRecord,
        PromiseRequest,
        UpdateAccepted,
        Waiver,
        WaiverDecision,
        WaiverProposal,
        WaiverRecord,
    )
    from domain.money import yuan
    from domain.names import Activities as A
    from domain.promises import (
        PROMISE_STAGES,
        check_waiver_proposal,
        is_kept,
        open_promise,
        open_settlement,
        pending_waiver,
        promise_deadline,
        settlement_paid,
    )
    from domain.stages import CLOSED_STAGES, Stage, TaskKind

PROMISES_KEPT = 10  # in the workflow state; every promise is in the database


# ---------------------------------------------------------------- promises


async def record_promise(case: Case, req: PromiseRequest) -> UpdateAccepted:
    """A promise, perhaps from a phone's queue (its id: applied once, workflows/phone_ops.py;
    its date and amount checked on arrival by the validator)."""
    s = case.s
    if (done := phone_ops.repeated(s, req)) is not None:
        return done  # sent again by a phone after the case continued as new
    s.promises_made += 1
    promise = Promise(
        seq=s.promises_made,
        amount_fen=req.amount_fen,
        due_date=req.due_date,
        source=req.source,
        by=req.by,
        made_at=workflow.now(),
        base_paid_fen=s.paid_fen,
        notes=req.notes,
    )
    s.promises = (s.promises + [promise])[-PROMISES_KEPT:]
    case.note(
        "promise",
        f"promise {promise.seq}: {yuan(promise.amount_fen)} yuan by {promise.due_date} "
        f"({promise.source})",
        req.by,
    )
    case.visibility.publish()
    await _record_promise(case, promise)
    answer = UpdateAccepted(
        s.stage,
        f"promise {promise.seq} recorded: {yuan(promise.amount_fen)} yuan by "
        f"{promise.due_date}; the case waits for it",
        promise.seq,
    )
    return phone_ops.remember(s, req, answer)


async def _record_promise(case: Case, promise: Promise) -> None:
    s = case.s
    key = case.key("promise", promise.seq)
    await case.act(A.RECORD_PROMISE, PromiseRecord(s.loan_no, key, s.generation, promise))


def waiting_for_promise(case: Case) -> bool:
    """Whether the main loop waits for a promise now instead of the stage's next step."""
    s = case.s
    return s.stage in PROMISE_STAGES and open_promise(s) is not None


async def wait(case: Case) -> None:
    """Wait for the open promise: kept, broken at the end of its date, or cut short."""
    s = case.s
    promise = open_promise(s)
    assert promise is not None
    deadline = promise_deadline(promise, s.policy)
    case.awaiting_promise = True
    try:
        kept = await case.wait(lambda: is_kept(promise), deadline, f"promise {promise.seq} due")
    except Interrupted:
        if is_kept(promise):  # paid in full: kept, and the case closes
            await _kept(case, promise)
        elif s.hold is not None and case.closing_decision() is None:
            why = "a hardship hold began (困难暂停): record a new promise after it"
            await _cancel(case, promise, why)
        raise
    finally:
        case.awaiting_promise = False
    if kept:
        await _kept(case, promise)
        return
    await _broken(case, promise)


async def _kept(case: Case, promise: Promise) -> None:
    s = case.s
    now = workflow.now()
    promise.status, promise.resolved_at = "KEPT", now
    promise.paid_fen = promise.counted_fen
    s.counters.promises_kept += 1
    if s.phase_due is not None:  # the stage goes on where it paused
        s.phase_due += now - promise.made_at
    case.note("promise", f"promise {promise.seq} kept: {yuan(promise.paid_fen)} yuan paid")
    case.visibility.publish()
    await _record_promise(case, promise)


async def _broken(case: Case, promise: Promise) -> None:
    s, p = case.s, case.s.policy
    promise.status, promise.resolved_at = "BROKEN", workflow.now()
    promise.paid_fen = promise.counted_fen
    s.counters.promises_broken += 1
    why = (
        f"promise {promise.seq} broken: {yuan(promise.paid_fen)} of "
        f"{yuan(promise.amount_fen)} yuan paid by {promise.due_date}"
    )
    await _record_promise(case, promise)
    if s.counters.promises_broken > p.max_broken_promises:
        await dead_end.enter(case, f"{why} ({s.counters.promises_broken} broken promises)")
        return
    await case.enter(Stage(p.promise_broken_next), why)


async def _cancel(case: Case, promise: Promise, why: str) -> None:
    promise.status, promise.resolved_at = "CANCELLED", workflow.now()
    promise.paid_fen = promise.counted_fen
    case.note("promise", f"promise {promise.seq} cancelled: {why}")
    case.visibility.publish()
    await _record_promise(case, promise)


async def close_open(case: Case) -> None:
    """The case closed: an open promise is cancelled (kept if paid), a pending request
    expires, a settlement still awaiting its lump sum lapses; each recorded."""
    s = case.s
    promise = open_promise(s)
    if promise is not None:
        if is_kept(promise):
            await _kept(case, promise)
        else:
            await _cancel(case, promise, f"the case closed ({s.stage})")
    waiver = pending_waiver(s)
    if waiver is not None:
        waiver.status, waiver.decided_at = "EXPIRED", workflow.now()
        case.note("waiver", f"waiver {waiver.seq} expired: the case closed ({s.stage})")
        await _record_waiver(case, waiver)
    settling = open_settlement(s)
    if settling is not None:
        await _lapse(case, settling, f"the case closed ({s.stage})")


# ---------------------------------------------------------------- waivers and settlements


async def propose_waiver(case: Case, proposal: WaiverProposal) -> UpdateAccepted:
    s = case.s
    outstanding = case.outstanding() or 0
    principal, interest, penalty, level = check_waiver_proposal(s, proposal, outstanding)
    s.waivers_made += 1
    now = workflow.now()
    waiver = Waiver(
        seq=s.waivers_made,
        kind=proposal.kind,
        principal_fen=principal,
        interest_fen=interest,
        penalty_fen=penalty,
        level=level,
        proposed_by=proposal.proposed_by,
        proposed_at=now,
        deadline=now + timedelta(seconds=s.policy.waiver_decision_seconds),
        reason=proposal.reason,
        settle_fen=proposal.settle_fen,
        base_paid_fen=s.paid_fen,  # a settlement's lump sum: payments from now on count
    )
    s.waivers.append(waiver)
    what = f"{proposal.kind.lower()} {waiver.seq} of {yuan(waiver.total_fen)} yuan"
    case.note("waiver", f"{what} proposed: {proposal.reason}", proposal.proposed_by)
    if level == "COLLECTOR":
        # Within the collector's standing limit (with what was granted before): approved as
        # proposed. Above it, someone of the level other than the proposer decides.
        _approve(case, waiver, proposal.proposed_by, "within the collector's limit")
        await _record_waiver(case, waiver)
        return UpdateAccepted(s.stage, f"{what} approved (within your limit)", waiver.seq)
    await _record_waiver(case, waiver)
    await case.task(
        TaskKind.APPROVE_WAIVER,
        f"approve or refuse {what} (needs a {level}) by {waiver.deadline.isoformat()}",
        waiver.deadline,
        assignees=[f"{level.lower()}:{s.branch}"],
    )
    return UpdateAccepted(
        s.stage, f"{what} awaits a {level}'s decision until {waiver.deadline}", waiver.seq
    )


def _approve(case: Case, waiver: Waiver, by: str, reason: str) -> None:
    s = case.s
    waiver.status, waiver.decided_by = "APPROVED", by
    waiver.decided_at, waiver.decision_reason = workflow.now(), reason
    if waiver.kind == "SETTLEMENT":  # conditional: nothing is waived until the sum is paid
        waiver.pay_by = workflow.now() + timedelta(seconds=s.policy.settlement_pay_seconds)
        case.note(
            "waiver",
            f"settlement {waiver.seq} approved on condition: {yuan(waiver.settle_fen)} yuan "
            f"paid by {waiver.pay_by.isoformat()}, then {yuan(waiver.total_fen)} yuan is "
            "waived; unpaid, it lapses and the debt stays whole",
            by,
        )
        case.visibility.publish()
        return
    _lower_debt(case, waiver, by)


def _lower_debt(case: Case, waiver: Waiver, by: str) -> None:
    s = case.s
    s.waived_fen += waiver.total_fen
    if s.debt_fen is not None:
        s.debt_fen -= waiver.total_fen
    case.note(
        "waiver",
        f"{waiver.kind.lower()} {waiver.seq} approved: {yuan(waiver.total_fen)} yuan waived "
        f"(principal {yuan(waiver.principal_fen)}, interest {yuan(waiver.interest_fen)}, "
        f"penalty {yuan(waiver.penalty_fen)}); outstanding now {yuan(case.outstanding() or 0)}",
        by,
    )
    case.visibility.publish()


async def decide_waiver(case: Case, decision: WaiverDecision) -> UpdateAccepted:
    s = case.s
    waiver = pending_waiver(s)
    assert waiver is not None and waiver.seq == decision.seq  # the validator checked
    if decision.approve:
        _approve(case, waiver, decision.by, decision.reason)
    else:
        waiver.status, waiver.decided_by = "REFUSED", decision.by
        waiver.decided_at, waiver.decision_reason = workflow.now(), decision.reason
        case.note("waiver", f"waiver {waiver.seq} refused: {decision.reason}", decision.by)
    await _record_waiver(case, waiver)
    return UpdateAccepted(s.stage, f"waiver {waiver.seq} {waiver.status.lower()}", waiver.seq)


async def _record_waiver(case: Case, waiver: Waiver) -> None:
    s = case.s
    key = case.key("waiver", waiver.seq)
    at = case.outstanding_at()  # collection-v5: the case row's outstanding after the decision
    outstanding = case.outstanding() if at else None
    record = WaiverRecord(s.loan_no, key, s.generation, waiver, outstanding, at)
    await case.act(A.RECORD_WAIVER, record)


async def _lapse(case: Case, waiver: Waiver, why: str) -> None:
    waiver.status = "LAPSED"
    case.note("waiver", f"settlement {waiver.seq} lapsed: {why}; the debt stays whole")
    case.visibility.publish()
    await _record_waiver(case, waiver)


async def _watch_settlement(case: Case, waiver: Waiver) -> None:
    """An approved settlement until its lump sum is paid (and the payments' records say they
    are this loan's) or its deadline passes."""
    s = case.s
    assert waiver.pay_by is not None
    remaining = waiver.pay_by - workflow.now()

    def paid() -> bool:
        return settlement_paid(waiver, s.paid_fen) and not s.payments_pending

    try:
        await workflow.wait_condition(
            lambda: paid() or waiver.status != "APPROVED" or s.stage in CLOSED_STAGES,
            timeout=max(remaining, timedelta(milliseconds=1)),
        )
    except TimeoutError:
        pass
    if waiver.status != "APPROVED" or s.stage in CLOSED_STAGES:
        return  # decided elsewhere, or the case closed (close_open lapses it)
    if paid():
        waiver.status = "SETTLED"
        _lower_debt(case, waiver, waiver.decided_by)
        await _record_waiver(case, waiver)
    else:
        await _lapse(case, waiver, f"{yuan(waiver.settle_fen)} yuan not paid by the deadline")


async def watch_waivers(case: Case) -> None:
    """Beside the main loop for the run's life: a pending request expires at its deadline,
    an approved settlement settles or lapses at its own. Nothing is scheduled (no timer, no
    command) while no request is pending and no settlement awaits its sum."""
    s = case.s
    while True:
        await workflow.wait_condition(
            lambda: pending_waiver(s) is not None or open_settlement(s) is not None
        )
        settling = open_settlement(s)
        if settling is not None:
            await _watch_settlement(case, settling)
            if s.stage in CLOSED_STAGES and open_settlement(s) is settling:
                return  # the case closed: close_open lapses it
            continue
        waiver = pending_waiver(s)
        assert waiver is not None
        remaining = waiver.deadline - workflow.now()
        try:
            await workflow.wait_condition(
                lambda w=waiver: w.status != "PENDING" or s.stage in CLOSED_STAGES,
                timeout=max(remaining, timedelta(milliseconds=1)),
            )
        except TimeoutError:
            pass
        if waiver.status == "PENDING" and s.stage not in CLOSED_STAGES:
            waiver.status, waiver.decided_at = "EXPIRED", workflow.now()
            case.note("waiver", f"waiver {waiver.seq} expired: no {waiver.level} decided in time")
            await _record_waiver(case, waiver)
        elif waiver.status == "PENDING":
            return  # the case closed: the run ends with the request unanswered
