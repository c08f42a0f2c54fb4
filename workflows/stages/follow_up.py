"""FOLLOW_UP (后续跟进): for the first unpaid installment, a reminder before its due date,
periodic revisits (定期回访), and after the grace period a broken promise: a revisit and
renegotiation while renegotiations remain, else a dead end. Each installment paid ends a
cycle, where a long run continues as new."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.case import Case
from workflows.contact import Params, send_sms
from workflows.stages import dead_end

with workflow.unsafe.imports_passed_through():
    from domain.installments import first_uncovered, is_covered, remaining
    from domain.models import AssignRequest, Installment
    from domain.promises import open_promise
    from domain.stages import Stage, TaskKind
    from domain.timerules import local_date


async def run(case: Case) -> None:
    s, p = case.s, case.s.policy
    assert s.plan is not None
    due = first_uncovered(s.plan, s.paid_fen)
    covered_upto = due.seq - 1 if due is not None else len(s.plan.installments)
    if covered_upto > s.last_covered_seq:
        # A cycle boundary: the run loop continues as new here when the run is long.
        s.last_covered_seq = covered_upto
        case.note("payment", f"installments 1–{covered_upto} of plan {s.plan.number} paid")
        s.cycle_done = True
        return
    if due is None and s.payments_pending:
        # Paid in full, the last payment's record still being written: close once it is.
        await workflow.wait_condition(lambda: not s.payments_pending)
        return
    if due is None:
        # Every installment is covered yet debt remains: the plan no longer fits the debt.
        await case.enter(Stage.NEGOTIATION, "plan paid but debt remains: new plan needed")
        return
    remind_at = due.due_at - timedelta(seconds=p.reminder_lead_seconds)
    deadline = due.due_at + timedelta(seconds=p.grace_seconds)

    def covered() -> bool:
        assert s.plan is not None
        return is_covered(s.plan, s.paid_fen, due.seq)

    while not covered():
        now = workflow.now()
        if due.seq not in s.reminded_seqs and now >= remind_at:
            s.reminded_seqs.append(due.seq)
            if now < due.due_at:
                due_date = local_date(due.due_at, p).isoformat()
                # collection-v6: the send writes the installment's wait to the case row.
                owed = _owed(case, due, due_date=due_date)
                await send_sms(case, "installment_reminder", owed, then=lambda: expected(case))
            continue
        if s.next_revisit_at is not None and now >= s.next_revisit_at:
            s.next_revisit_at = now + timedelta(seconds=p.revisit_interval_seconds)
            if (s.remote or s.hostile or s.hostile_team) and case.versions.v4():
                # A revisit is a visit attempt: a remote or hostile case's team is checked
                # again, as in FIELD_VISIT, so a training that expired meanwhile is replaced.
                team = case.team_size()
                await case.assign(AssignRequest(s.loan_no, s.branch, team, keep=list(s.collectors)))
            await case.task(TaskKind.REVISIT, "periodic revisit (定期回访)", s.next_revisit_at)
            continue
        if now >= deadline:
            await _broken_promise(case, due)
            return
        wake = [deadline]
        if due.seq not in s.reminded_seqs:
            wake.append(remind_at)
        if s.next_revisit_at is not None:
            wake.append(s.next_revisit_at)
        await case.wait(covered, min(wake), f"installment {due.seq} due")


def expected(case: Case) -> tuple[str, datetime] | None:
    """collection-v6: the wait `run` starts next, as it would compute it now (the case row
    takes its next action from the activity before it: a payment's record, the revisit's
    task, the stage change); None when something comes first (a reminder or revisit due,
    a broken promise, an open promise's own wait, the plan paid)."""
    s, p = case.s, case.s.policy
    if s.plan is None or (s.promises and open_promise(s) is not None):
        return None
    due = first_uncovered(s.plan, s.paid_fen)
    if due is None:
        return None
    now = workflow.now()
    remind_at = due.due_at - timedelta(seconds=p.reminder_lead_seconds)
    deadline = due.due_at + timedelta(seconds=p.grace_seconds)
    reminded = due.seq in s.reminded_seqs
    if (not reminded and now >= remind_at) or now >= deadline:
        return None
    if s.next_revisit_at is not None and now >= s.next_revisit_at:
        return None
    wake = [deadline]
    if not reminded:
        wake.append(remind_at)
    if s.next_revisit_at is not None:
        wake.append(s.next_revisit_at)
    return f"installment {due.seq} due", min(wake)


def _owed(case: Case, inst: Installment, **extra: str) -> Callable[[], Params | None]:
    """An installment's text: what remains of it (collection-v4; released code quoted the
    whole installment), or None once it is paid."""
    s = case.s

    def text() -> Params | None:
        assert s.plan is not None
        if not case.versions.v4():
            return {"amount_fen": str(inst.amount_fen), **extra}
        left = remaining(s.plan, s.paid_fen, inst.seq)
        return {"amount_fen": str(left), **extra} if left > 0 else None

    return text


async def _broken_promise(case: Case, missed: Installment) -> None:
    s, p = case.s, case.s.policy
    s.counters.broken_promises += 1
    await send_sms(case, "missed_installment", _owed(case, missed))
    assert s.plan is not None
    if case.versions.v4() and is_covered(s.plan, s.paid_fen, missed.seq):
        # Paid while the message waited for the morning: no broken promise after all.
        s.counters.broken_promises -= 1
        case.note("payment", f"installment {missed.seq} paid late, before any visit")
        return
    why = f"installment {missed.seq} not paid after {p.grace_seconds // 86400} grace days"
    if s.counters.renegotiations < p.max_renegotiations:
        s.counters.renegotiations += 1
        await case.enter(
            Stage.FIELD_VISIT,
            f"broken promise: {why}; revisit and renegotiation "
            f"{s.counters.renegotiations} of {p.max_renegotiations}",
        )
    else:
        await dead_end.enter(case, f"broken promise: {why}; renegotiations exhausted")
