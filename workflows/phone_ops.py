"""Actions a collector's phone sends with an id made on the phone (issue 15, weak signal).

The id becomes the Update's id (domain/phone_actions.phone_update_id: the action and the
user's name in it). Temporal answers a repeated Update id with the first answer, but only
within one run: a phone that sends again after the case continued as new (the answer was
lost, the queue was flushed twice) would be applied twice. So the case keeps the ids it
applied, with the Update's name, the request's digest and the answer, in its state (carried
across continue-as-new), and a repeat of the same action is a no-op answered as the first
time; the same id on another action is refused by the validator (`checked`). Entries go
after the policy's `offline_max_age_hours` (plus the skew: a repeat that late is refused on
its recorded time anyway), at most APPLIED_KEPT of them.

State only, no commands: histories replay as before.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.models import AppliedOp, CaseState, UpdateAccepted
    from domain.names import PHONE_UPDATE_PREFIX
    from domain.phone_actions import pruned, request_digest

APPLIED_KEPT = 200
MESSAGE_KEPT = 200  # characters of each answer kept


def phone_op() -> str | None:
    """The current Update's id when a phone sent it with its own id."""
    info = workflow.current_update_info()
    if info is None or not info.id.startswith(PHONE_UPDATE_PREFIX):
        return None
    return info.id


def applied(s: CaseState, op_id: str) -> AppliedOp | None:
    """The applied phone action of this Update id, if the case remembers one."""
    for done in reversed(s.applied_ops):
        if done.op_id == op_id:
            return done
    return None


def same_action(done: AppliedOp, request: object) -> bool:
    """Whether the current Update is the phone action `done` sent again: the same Update
    with the same request (one kept before names and digests were is never taken for it)."""
    info = workflow.current_update_info()
    return (
        info is not None
        and bool(done.name)
        and done.name == info.name
        and done.digest == request_digest(request)
    )


def answer(s: CaseState, op_id: str) -> UpdateAccepted | None:
    """What a repeat of the phone action `op_id` (an Update id) is told, if it was applied."""
    done = applied(s, op_id)
    if done is None:
        return None
    return UpdateAccepted(
        s.stage, f"{done.message} (已处理过 already applied, sent again)", done.number
    )


def repeated(s: CaseState, request: object) -> UpdateAccepted | None:
    """The first answer when the current Update is a phone action applied already (the
    validator has refused the same id on anything else)."""
    op = phone_op()
    if op is None:
        return None
    done = applied(s, op)
    if done is None or not same_action(done, request):
        return None
    return answer(s, op)


def remember(s: CaseState, request: object, answer: UpdateAccepted) -> UpdateAccepted:
    """Keep a phone action's id, name, digest and answer once it is applied; `answer`
    passes through."""
    op = phone_op()
    info = workflow.current_update_info()
    if op is not None and info is not None and applied(s, op) is None:
        now = workflow.now()
        kept = AppliedOp(
            op, answer.message[:MESSAGE_KEPT], answer.number, info.name,
            request_digest(request), now,
        )  # fmt: skip
        s.applied_ops = pruned([*s.applied_ops, kept], now, s.policy, APPLIED_KEPT)
    return answer
