"""Updates that record contact under the rule set: a call attempt, the borrower's consent,
a message to a third party. The validators (domain/human_input.py) refuse what the rule set
forbids; the activities check it again against the records of every case."""

from __future__ import annotations

from temporalio import workflow

from workflows import phone_ops
from workflows.case import Case
from workflows.contact import send_sms

with workflow.unsafe.imports_passed_through():
    from domain.models import (
        CallEntry,
        CallRecord,
        CallRecorded,
        CallReport,
        ConsentChange,
        ConsentRecord,
        ThirdPartyEntry,
        ThirdPartyMessage,
        UpdateAccepted,
    )
    from domain.names import Activities as A
    from domain.rulebook import failures_after_call, remember
    from domain.stages import CallOutcome


async def record_call(case: Case, report: CallReport) -> UpdateAccepted:
    """Recorded first (the activity refuses a call over the cap of the number, over all
    the borrower's loans, or at night without consent on record), then counted."""
    s = case.s
    if (done := phone_ops.repeated(s, report)) is not None:
        return done  # sent again by a phone after the case continued as new
    s.calls_made += 1
    recorded: CallRecorded = await case.act(
        A.RECORD_CALL,
        CallRecord(
            s.loan_no, case.key("call", s.calls_made), report, s.policy, case.contact_lost()
        ),
        CallRecorded,
    )
    outcome = CallOutcome(report.outcome)
    s.calls = remember(s.calls, report.called_at) + [
        CallEntry(report.called_at, report.party, outcome.value)
    ]
    if report.party == "borrower":
        s.failures_in_row = failures_after_call(s.failures_in_row, outcome)
        if outcome == CallOutcome.NUMBER_INVALID:
            s.has_phone = False
    case.note(
        "call",
        f"call to {report.party} ({recorded.number_masked}): {outcome}",
        report.reported_by or report.collector_id,
    )
    answer = UpdateAccepted(
        s.stage,
        f"call recorded: {outcome}; {recorded.unanswered_today} unanswered today "
        f"(at most {s.policy.max_unanswered_calls_per_day})",
        recorded.unanswered_today,
    )
    return phone_ops.remember(s, report, answer)


async def record_consent(case: Case, change: ConsentChange) -> UpdateAccepted:
    s = case.s
    s.consents = [c for c in s.consents if c.kind != change.kind] + [change]
    s.consents_made += 1
    await case.act(
        A.RECORD_CONSENT, ConsentRecord(s.loan_no, case.key("consent", s.consents_made), change)
    )
    verb = "given" if change.given else "withdrawn"
    case.note("consent", f"{change.kind} {verb} ({change.how})", change.by)
    return UpdateAccepted(s.stage, f"consent {verb}: {change.kind}")


async def contact_third_party(case: Case, message: ThirdPartyMessage) -> UpdateAccepted:
    """An SMS to a loan contact asking them to pass a message on: it names no debt."""
    s = case.s
    entry = ThirdPartyEntry(workflow.now(), message.contact_id, message.related)
    s.third_party = remember(s.third_party, entry.at) + [entry]
    result = await send_sms(
        case,
        "third_party_request",
        dict,  # no parameter: the text names neither the debtor nor the debt
        may_wait=False,  # the caller hears now; outside the hours it is not sent at all
        party=f"contact:{message.contact_id}",
    )
    return UpdateAccepted(s.stage, f"message to contact {message.contact_id}: {result.status}")
