"""Actions a collector's phone sends with an id made on the phone (issue 15, weak signal).

The id is the Update's id (PHONE_UPDATE_PREFIX + id, service/case_updates.py). Temporal
answers a repeated Update id with the first answer, but only within one run: a phone that
sends again after the case continued as new (the answer was lost, the queue was flushed
twice) would be applied twice. So the case keeps the ids it applied, with their answers, in
its state (the newest APPLIED_KEPT, carried across continue-as-new), and a repeat is a
no-op answered as the first time. An action older than the policy's `offline_max_age_hours`
is refused on its time anyway, so a repeat never outlives the list on a real case.

State only, no commands: histories replay as before.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import AppliedOp, CaseState, UpdateAccepted
    from domain.names import PHONE_UPDATE_PREFIX

APPLIED_KEPT = 200
MESSAGE_KEPT = 200  # characters of each answer kept


def phone_op() -> str | None:
    """The current Update's id when a phone sent it with its own id."""
    info = workflow.current_update_info()
    if info is None or not info.id.startswith(PHONE_UPDATE_PREFIX):
        return None
    return info.id


def answer(s: CaseState, op_id: str) -> UpdateAccepted | None:
    """What a repeat of the phone action `op_id` (an Update id) is told, if it was applied."""
    for done in reversed(s.applied_ops):
        if done.op_id == op_id:
            return UpdateAccepted(
                s.stage, f"{done.message} (已处理过 already applied, sent again)", done.number
            )
    return None


def repeated(s: CaseState) -> UpdateAccepted | None:
    """The first answer when the current Update is a phone action applied already."""
    op = phone_op()
    return None if op is None else answer(s, op)


def remember(s: CaseState, answer: UpdateAccepted) -> UpdateAccepted:
    """Keep a phone action's id and answer once it is applied; `answer` passes through."""
    op = phone_op()
    if op is not None and not any(done.op_id == op for done in s.applied_ops):
        kept = AppliedOp(op, answer.message[:MESSAGE_KEPT], answer.number)
        s.applied_ops = [*s.applied_ops, kept][-APPLIED_KEPT:]
    return answer
