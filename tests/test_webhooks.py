"""Twilio's webhooks, signed with Twilio's RequestValidator, reaching real cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from db.models import Borrower, InboundMessage, SmsOutbox, Task
from domain.replies import interpret
from domain.stages import ReplyIntent
from tests.harness import Harness, eventually, running_worker
from tests.test_activities import CountingGateway
from webapp.app import create_app
from webapp.twilio_webhooks import WebhookConfig

TOKEN = "12345678901234567890123456789012"
PHONE = "+8613912345678"  # the harness's borrower


@pytest.mark.parametrize(
    ("body", "intent"),
    [
        ("退订", ReplyIntent.OPT_OUT),
        ("TD", ReplyIntent.OPT_OUT),
        ("td", ReplyIntent.OPT_OUT),
        ("ＴＤ", ReplyIntent.OPT_OUT),
        ("STOP", ReplyIntent.OPT_OUT),
        ("unsubscribe", ReplyIntent.OPT_OUT),
        ("1", ReplyIntent.ACKNOWLEDGED),
        ("确认", ReplyIntent.ACKNOWLEDGED),
        ("好", ReplyIntent.ACKNOWLEDGED),
        ("已还", ReplyIntent.CLAIMS_PAID),
        ("我已经还了。", ReplyIntent.CLAIMS_PAID),
        ("下周再说", ReplyIntent.OTHER),
        ("TD我不想收", ReplyIntent.OTHER),
    ],
)
def test_reply_keywords(body: str, intent: ReplyIntent) -> None:
    assert interpret(body) == intent


@pytest.fixture
async def web(
    env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    async with running_worker(
        env, sqlite_sessions, tmp_path / "data", gateway=CountingGateway()
    ) as h:

        async def temporal():  # type: ignore[no-untyped-def]
            return h.client

        app = create_app(sqlite_sessions, temporal, WebhookConfig(TOKEN))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


_sid = 0


async def post(http: httpx.AsyncClient, path: str, params: dict[str, str], token: str = TOKEN):
    signature = RequestValidator(token).compute_signature(f"http://testserver{path}", params)
    return await http.post(path, data=params, headers={"X-Twilio-Signature": signature})


async def sms_in(http: httpx.AsyncClient, body: str, sid: str | None = None, phone: str = PHONE):
    global _sid
    _sid += 1
    params = {
        "MessageSid": sid or f"SM{_sid:032d}",
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "AccountSid": "AC" + "0" * 32,
    }
    return await post(http, "/twilio/sms", params)


def count(h: Harness, model: type, *where: object) -> int:
    with h.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.mark.parametrize("hour", [1, 9, 21])  # any time of the server's day
async def test_opt_out_reaches_the_case_is_confirmed_once_and_stops_sms(web, hour) -> None:
    h, http = web
    await h.env.sleep(timedelta(hours=hour))
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    first = await sms_in(http, "退订", sid="SM-OPTOUT-1")
    assert first.status_code == 200 and "已退订" in first.text and "<Response>" in first.text
    await h.until(handle, lambda s: s.opted_out, "case knows the borrower opted out")
    again = await sms_in(http, "TD")
    assert again.status_code == 200 and "<Message>" not in again.text  # confirmed once
    replayed = await sms_in(http, "退订", sid="SM-OPTOUT-1")
    assert replayed.status_code == 200 and "<Message>" not in replayed.text
    assert count(h, InboundMessage) == 2  # the replayed MessageSid was processed once
    with h.sessions() as session:
        assert session.scalar(select(Borrower.sms_opted_out)) is True
    await h.advance(3.2)
    await h.at_stage(handle, "FIELD_VISIT")

    def visit_notice() -> SmsOutbox | None:
        with h.sessions() as session:
            return session.scalar(select(SmsOutbox).where(SmsOutbox.purpose == "visit_notice"))

    row = await eventually(visit_notice, "visit notice recorded")
    assert row.status == "BLOCKED" and "opted out" in row.reason  # nothing sent after opt-out
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_replies_become_tasks_and_notes_for_the_collector(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    for body in ("已经还了", "1", "你们什么时候来？"):
        response = await sms_in(http, body)
        assert response.status_code == 200 and "<Message>" not in response.text
    await eventually(lambda: count(h, Task, Task.kind == "READ_REPLY"), "note for the collector")
    assert count(h, Task, Task.kind == "CHECK_CLAIMED_PAYMENT") == 1
    status = await h.status(handle)
    assert status.paid_fen == 0  # "I paid" is a task to check, not a payment
    assert any("ACKNOWLEDGED" in e.detail for e in status.history)
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_a_number_two_borrowers_share_opts_both_out_and_other_replies_go_to_the_branch(
    web,
) -> None:
    """Spouses with one phone: 退订 opts both out; another reply is neither's for sure, so a
    READ_REPLY task on each one's case for the branch, and no polite 'no case' answer."""
    h, http = web
    _, husband = await h.start(id_number="522401198001015555")
    _, wife = await h.start(id_number="522401198202025566")  # the same phone
    for handle in (husband, wife):
        await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    other = await sms_in(http, "你们什么时候来？")
    assert other.status_code == 200 and "<Message>" not in other.text
    with h.sessions() as session:
        tasks = session.scalars(select(Task).where(Task.kind == "READ_REPLY")).all()
        assert len({t.case_id for t in tasks}) == 2 and "139****5678" in tasks[0].detail
    opt_out = await sms_in(http, "退订")
    assert opt_out.status_code == 200 and "已退订" in opt_out.text
    with h.sessions() as session:
        assert session.scalars(select(Borrower.sms_opted_out)).all() == [True, True]
    for handle in (husband, wife):
        await h.until(handle, lambda s: s.opted_out, "each case knows")
        await h.pay(handle, 1_000_000)
        await handle.result()


async def test_forged_or_unsigned_webhooks_are_refused(web) -> None:
    """Forged requests aimed at a real borrower with an open case: an opt-out from their
    number and a delivery failure for their message. Refused, and nothing they ask for is
    done; the same requests signed with the right token do it (the checks can see it)."""
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    with h.sessions() as session:
        sid = session.scalar(select(SmsOutbox.provider_sid))
    opt_out = {"MessageSid": "SM-FORGED-1", "From": spec.phone, "To": "+15005550006",
               "Body": "退订", "AccountSid": "AC" + "0" * 32}  # fmt: skip
    failed = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    forged = await post(http, "/twilio/sms", opt_out, token="x" * 32)
    unsigned = await http.post("/twilio/sms", data=opt_out)
    receipt = await post(http, "/twilio/status", failed, token="y" * 32)
    assert (forged.status_code, unsigned.status_code, receipt.status_code) == (403, 403, 403)

    def effects() -> tuple:  # type: ignore[type-arg]
        with h.sessions() as session:
            return (
                count(h, InboundMessage),
                session.scalar(select(Borrower.sms_opted_out).where(Borrower.phone == spec.phone)),
                session.scalar(
                    select(SmsOutbox.delivery_status).where(SmsOutbox.provider_sid == sid)
                ),
            )

    assert effects() == (0, False, None)
    status = await h.status(handle)
    assert not status.opted_out and status.counters.sms_failed == 0
    assert status.stage == "INITIAL_CONTACT"
    # Signed, the very same requests are honoured: what the checks above look at does move.
    assert (await post(http, "/twilio/sms", opt_out)).status_code == 200
    assert (await post(http, "/twilio/status", failed)).status_code == 204
    await h.until(handle, lambda s: s.opted_out and s.counters.sms_failed == 1, "both heard")
    assert effects() == (1, True, "undelivered")
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_a_reply_with_no_open_case_is_stored_and_answered_politely(web) -> None:
    h, http = web
    response = await sms_in(http, "你好", phone="139-8888-7777")
    assert response.status_code == 200 and "感谢您的回复" in response.text
    with h.sessions() as session:
        row = session.scalar(select(InboundMessage))
        assert row.from_number == "+8613988887777" and row.case_id is None


async def test_delivery_receipts_update_the_outbox_and_failures_reach_the_case(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    with h.sessions() as session:
        sid = session.scalar(select(SmsOutbox.provider_sid))
    ok = await post(http, "/twilio/status", {"MessageSid": sid, "MessageStatus": "sent"})
    assert ok.status_code == 204
    failed = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert (await post(http, "/twilio/status", failed)).status_code == 204
    assert (await post(http, "/twilio/status", failed)).status_code == 204  # retried callback
    status = await h.at_stage(handle, "FIELD_VISIT")  # no three-day wait for a dead number
    assert status.counters.sms_failed == 1
    assert any("not delivered" in e.detail for e in status.history)
    with h.sessions() as session:
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.provider_sid == sid))
        assert (row.delivery_status, row.delivery_error) == ("undelivered", "30005")
    await h.pay(handle, 1_000_000)
    await handle.result()
