"""SMS to the borrower under the contact rules: opt-out and a missing number block, quiet
hours and the daily/weekly caps wait (or drop, by policy), and the send activity checks the
same rules again with its own clock before the gateway sees the message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.case_rules import remember_send, sms_block_reason
    from domain.complaints import NOT_COLLECTION, pausing
    from domain.models import SmsRequest, SmsResult
    from domain.names import Activities as A
    from domain.sms_text import OPTED_OUT_CODE
    from domain.timerules import next_contact_time


Params = dict[str, str]
NOT_NEEDED = "no longer needed (paid meanwhile)"


async def send_sms(
    case: Case,
    purpose: str,
    text: Callable[[], Params | None],
    may_wait: bool = True,
    party: str = "borrower",
    interruptible: bool = True,
    then: Callable[[], tuple[str, datetime] | None] | None = None,
) -> SmsResult:
    """Send one SMS under the rules: quiet hours and caps wait, opt-out blocks.

    `text()` gives the template's parameters as they are now, or None when the message is
    no longer needed (the installment it reminds of was paid). With collection-v4 it is asked
    again after every wait; released code asked once. A message that may not wait (the
    thanks at closing) is dropped, not sent at night. A message to a third party (`party`
    "contact:<id>") keeps the quiet hours but not the debtor's opt-out, number or caps. A
    watcher's message (`interruptible=False`) waits for the contact window whatever the case
    does meanwhile (closing, a hold, a promise).

    `then()` (collection-v6): the wait that follows the message, as it would be computed
    when the request goes (None: not known); the send activity writes it to the case row
    once the message is done (not when deferred), like the activity before any other wait.
    """
    debtor = party == "borrower"
    s, p = case.s, case.s.policy
    s.sms_seq += 1
    key = case.key(purpose, s.sms_seq)
    fresh = case.versions.v4()
    params = text()
    last, asked = params, False
    while True:
        now = workflow.now()
        if fresh:
            params = text()
        if params is None:
            if asked and last is not None:  # the outbox row the provider never saw is closed
                closing = SmsRequest(key, s.loan_no, purpose, last, now, NOT_NEEDED, p)
                await case.act(A.SEND_SMS, closing, SmsResult)
            return _not_needed(case, key, purpose)
        last = params
        blocked = (
            sms_block_reason(s.opted_out, s.has_phone, now, s.sms_sent_at, p) if debtor else ""
        )
        if not blocked and fresh and purpose not in NOT_COLLECTION:
            if paused := pausing(s.complaints, p):  # collection-v4 (issue 15)
                blocked = f"collection contact paused: complaint {paused.number} is open"
        if not blocked:
            at = next_contact_time(now, s.sms_sent_at if debtor else [], p)
            if at > now and not may_wait:
                blocked = "not sent: outside contact hours or over the cap"
            elif at > now:
                await case.wait(
                    _no_longer_needed(text, fresh), at, f"send {purpose} SMS", interruptible
                )
                continue
        request = SmsRequest(key, s.loan_no, purpose, params, now, blocked, p)
        if not debtor:
            request.party, request.contact_lost = party, case.contact_lost()
        row = None
        if then is not None and case.versions.v6():
            following = then()
            if following is not None:
                row = case.row_next_action(following)
                request.next_action, request.next_action_at = row[0], row[1]
                request.next_action_stamp = row[2]
        result: SmsResult = await case.act(A.SEND_SMS, request, SmsResult)
        asked = True
        if row is not None and result.status != "DEFERRED":
            case.row_written(*row)
        if result.status == "DEFERRED" and not may_wait:
            break
        if result.status == "DEFERRED" and result.not_before is not None:
            until = result.not_before
            await case.wait(
                _no_longer_needed(text, fresh), until, f"send {purpose} SMS", interruptible
            )
            continue
        break
    _count(case, purpose, result, now, debtor)
    return result


def _no_longer_needed(text: Callable[[], Params | None], fresh: bool) -> Callable[[], bool]:
    """The wait for the contact window ends early when the message is no longer needed."""
    if not fresh:
        return lambda: False
    return lambda: text() is None


def _not_needed(case: Case, key: str, purpose: str) -> SmsResult:
    case.s.counters.sms_blocked += 1
    case.note("sms", f"{purpose} not sent: {NOT_NEEDED}")
    return SmsResult(key, "BLOCKED", NOT_NEEDED)


def _count(case: Case, purpose: str, result: SmsResult, now: datetime, debtor: bool) -> None:
    s = case.s
    if not debtor:  # a third party's message: noted, not the debtor's caps or number
        case.note("sms", f"{purpose} {result.status.lower()} {result.reason}".strip())
        return
    if result.delivery_failure is not None and case.versions.v4():
        case.delivery_failed(result.delivery_failure)  # a receipt that overtook the send
    if result.status in ("SENT", "RECORDED"):
        s.sms_sent_at = remember_send(s.sms_sent_at, result.sent_at or now)
        s.counters.sms_sent += 1
        case.note("sms", f"{purpose} {result.status.lower()}")
    elif result.status == "FAILED":
        s.counters.sms_failed += 1
        if result.error_code == OPTED_OUT_CODE:
            s.opted_out = True
        elif result.number_unusable:
            s.has_phone = False
        case.note("sms", f"{purpose} failed: {result.reason}")
    else:
        s.counters.sms_blocked += 1
        if "opted out" in result.reason:
            s.opted_out = True
        case.note("sms", f"{purpose} not sent: {result.reason}")
