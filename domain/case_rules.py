"""Decisions about a case that need no Temporal: when it closes, where a dead end leads,
what a visit report means, how an overdue visit report escalates, when an SMS is blocked.

The workflow calls these with its state and `workflow.now()`; the unit tests call them with
plain values (tests/test_case_rules.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from domain.models import CloseRequest
from domain.money import yuan
from domain.policy import Policy
from domain.stages import Stage, VisitOutcome
from domain.timerules import cap_release

# Sends remembered for the caps: the weekly cap looks back seven local days, plus one for
# the time-zone edge of "local day".
SENT_MEMORY = timedelta(days=8)


def outstanding(debt_fen: int | None, paid_fen: int) -> int | None:
    """What the borrower still owes (negative when overpaid); None before the investigation."""
    return None if debt_fen is None else debt_fen - paid_fen


def closing_decision(
    debt_fen: int | None, paid_fen: int, close_request: CloseRequest | None
) -> tuple[Stage, str, str] | None:
    """(closed stage, reason, actor) when the case must close now, else None.

    Paid in full wins over a pending close request: the money is the stronger fact.
    """
    if debt_fen is not None and paid_fen >= debt_fen:
        return Stage.PAID_IN_FULL, f"paid in full ({yuan(paid_fen)} yuan)", "system"
    if close_request is not None:
        return Stage(close_request.outcome), close_request.reason, close_request.by
    return None


def dead_end_stage(outstanding_fen: int, policy: Policy) -> Stage:
    """A case that cannot be collected: written off below the policy's amount, else legal."""
    if outstanding_fen < policy.write_off_below_fen:
        return Stage.WRITTEN_OFF
    return Stage.LEGAL_ESCALATION


class VisitStep(StrEnum):
    """What a visit report's outcome leads to."""

    NEGOTIATE = "NEGOTIATE"  # the borrower was met: agree a plan
    UNREACHED = "UNREACHED"  # not home or moved: counts towards the unreached limit
    REFUSED = "REFUSED"  # refused or hostile: counts towards the refusal limit


def visit_step(outcome: VisitOutcome) -> VisitStep:
    if outcome in (VisitOutcome.MET, VisitOutcome.PROMISED_TO_PAY):
        return VisitStep.NEGOTIATE
    if outcome in (VisitOutcome.NOT_HOME, VisitOutcome.MOVED):
        return VisitStep.UNREACHED
    return VisitStep.REFUSED


# A visit report overdue climbs this ladder: remind the collectors, then escalate to the
# branch supervisor, then count the attempt as unreached. A revisit's wait simply ends.
OVERDUE_REPORT_LADDER = {
    "WAIT_REVISIT": "",
    "AWAIT_REPORT": "REMINDED",
    "REMINDED": "ESCALATED",
    "ESCALATED": "UNREACHED",
}


def next_overdue_phase(phase: str) -> str:
    """The field-visit phase after `phase`'s deadline passed with no report."""
    return OVERDUE_REPORT_LADDER.get(phase, "UNREACHED")


def sms_block_reason(
    opted_out: bool, has_phone: bool, now: datetime, sent_at: Sequence[datetime], policy: Policy
) -> str:
    """Why no SMS may go to the borrower now ('' when one may, perhaps later)."""
    if opted_out:
        return "borrower opted out of SMS"
    if not has_phone:
        return "no mobile number on file"
    if policy.sms_over_cap == "DROP" and cap_release(now, sent_at, policy) > now:
        return "contact cap reached"
    return ""


def remember_send(sent_at: Sequence[datetime], at: datetime) -> list[datetime]:
    """The sends the caps still need to know about, with `at` added."""
    return [t for t in sent_at if at - t < SENT_MEMORY] + [at]


# Temporal's task priority keys (1 goes first; five levels, unset is the middle, 3).
# collection-v6: an activity a person waits on (scheduled by an Update handler: the visit
# report's record, the signature's, the call's...) or a collector's safety alert goes before
# every other task of its queue, the back office's (unset: 3) and the SMS bands below.
INTERACTIVE_PRIORITY = 1
# The SMS task queue's order when a wave waits for the provider's rate: the most overdue
# borrowers first, in bands of days past due, all after the interactive key.
SMS_PRIORITY_BANDS = ((90, 2), (60, 3), (30, 4))
SMS_PRIORITY_DEFAULT = 5  # under 30 days past due, or not known yet


def sms_priority(dpd: int | None) -> int:
    """The send's priority key: ≥ 90 days past due → 2, ≥ 60 → 3, ≥ 30 → 4, else 5."""
    if dpd is not None:
        for at_least, key in SMS_PRIORITY_BANDS:
            if dpd >= at_least:
                return key
    return SMS_PRIORITY_DEFAULT
