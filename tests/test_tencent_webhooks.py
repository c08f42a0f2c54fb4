"""Tencent's callbacks reaching real cases: a status report marks the outbox row of a message
the real SDK sent through the fake Tencent and a failure reaches the case, a reply 退订 opts
the case out; each once however often Tencent pushes it; a wrong token changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import InboundMessage, SmsOutbox
from tests.harness import Harness, running_worker
from tests.tencent_fake import SIGN, tencent_gateway, tencent_like
from webapp.app import create_app
from webapp.twilio_webhooks import WebhookConfig

TOKEN = "tencent-callback-secret-0123456789"


@pytest.fixture
async def web(
    env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    with tencent_like() as endpoint:
        gateway = tencent_gateway(endpoint)
        async with running_worker(env, sqlite_sessions, tmp_path / "data", gateway=gateway) as h:

            async def temporal():  # type: ignore[no-untyped-def]
                return h.client

            app = create_app(
                sqlite_sessions, temporal, WebhookConfig("t" * 32, tencent_token=TOKEN)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield h, c


def count(h: Harness, model: type) -> int:
    with h.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_a_status_report_and_an_opt_out_reply_each_act_once(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    with h.sessions() as session:
        row = session.scalar(select(SmsOutbox))
        serial = row.provider_sid
        assert row.body.startswith(f"【{SIGN}】")
    failed = [{"user_receive_time": "2026-01-01 09:00:05", "nationcode": "86",
               "mobile": spec.phone[3:], "report_status": "FAIL", "errmsg": "MK:0005",
               "description": "失败", "sid": serial}]  # fmt: skip
    for _ in range(2):
        answer = await http.post(f"/tencent/{TOKEN}/status", json=failed)
        assert answer.status_code == 200 and answer.json()["result"] == 0
    await h.until(handle, lambda s: s.counters.sms_failed == 1, "failure heard")
    with h.sessions() as session:
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.provider_sid == serial))
        assert (row.delivery_status, row.delivery_error) == ("undelivered", "MK:0005")
    reply = {"extend": "", "mobile": spec.phone[3:], "nationcode": "86", "sign": SIGN,
             "text": "退订", "time": int(time.time())}  # fmt: skip
    for _ in range(2):
        assert (await http.post(f"/tencent/{TOKEN}/reply", json=reply)).status_code == 200
    await h.until(handle, lambda s: s.opted_out, "case knows the borrower opted out")
    assert count(h, InboundMessage) == 1
    forged = await http.post("/tencent/wrong-token-0000000000/reply", json={**reply, "time": 1})
    assert forged.status_code == 403 and count(h, InboundMessage) == 1
    await h.pay(handle, 1_000_000)
    await handle.result()
    assert (await h.status(handle)).counters.sms_failed == 1
