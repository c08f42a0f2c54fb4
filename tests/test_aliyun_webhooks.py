"""Aliyun's callbacks reaching real cases: a delivery report (SmsReport) marks the outbox row
of a message the real SDK sent through the fake Aliyun, an uplink reply (SmsUp) 退订 opts the
case out; each once however often Aliyun pushes it; a wrong token changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Borrower, InboundMessage, SmsOutbox, Task
from tests.aliyun_fake import SIGN, aliyun_gateway, aliyun_like
from tests.harness import Harness, eventually, running_worker
from webapp.app import create_app
from webapp.twilio_webhooks import WebhookConfig

TOKEN = "aliyun-callback-secret-0123456789"


@pytest.fixture
async def web(
    env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    with aliyun_like() as endpoint:
        gateway = aliyun_gateway(endpoint)
        async with running_worker(env, sqlite_sessions, tmp_path / "data", gateway=gateway) as h:

            async def temporal():  # type: ignore[no-untyped-def]
                return h.client

            config = WebhookConfig("t" * 32, aliyun_token=TOKEN)
            app = create_app(sqlite_sessions, temporal, config)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield h, c


def count(h: Harness, model: type, *where: object) -> int:
    with h.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def up(phone: str, content: str, sequence_id: int) -> list[dict]:
    return [{"phone_number": phone, "send_time": "2026-01-01 09:00:00", "content": content,
             "sign_name": SIGN, "dest_code": "1234", "sequence_id": sequence_id}]  # fmt: skip


async def test_a_delivery_report_marks_the_outbox_row_and_reaches_the_case_once(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    with h.sessions() as session:
        row = session.scalar(select(SmsOutbox))
        biz_id, key = row.provider_sid, row.key
        assert row.body.startswith(f"【{SIGN}】")  # sent as the registered template
    report = [{"phone_number": spec.phone[3:], "send_time": "2026-01-01 09:00:00",
               "report_time": "2026-01-01 09:00:05", "success": False, "err_code": "MK:0001",
               "err_msg": "失败", "sms_size": "2", "biz_id": biz_id, "out_id": key}]  # fmt: skip
    for _ in range(2):  # Aliyun pushes it again: one effect
        answer = await http.post(f"/aliyun/{TOKEN}/report", json=report)
        assert answer.status_code == 200 and answer.json()["code"] == 0
    status = await h.until(handle, lambda s: s.counters.sms_failed == 1, "failure heard")
    assert any("not delivered" in e.detail for e in status.history)
    with h.sessions() as session:
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.provider_sid == biz_id))
        assert (row.delivery_status, row.delivery_error) == ("undelivered", "MK:0001")
    ok = [{**report[0], "biz_id": biz_id, "success": True, "err_code": "DELIVERED"}]
    assert (await http.post(f"/aliyun/{TOKEN}/report", json=ok)).status_code == 200
    await h.pay(handle, 1_000_000)
    await handle.result()
    status = await h.status(handle)
    assert status.counters.sms_failed == 1  # the replayed report was not a second failure


async def test_an_uplink_opt_out_opts_the_case_out_once(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    national = spec.phone[3:]  # Aliyun gives the number without +86
    for _ in range(2):
        answer = await http.post(f"/aliyun/{TOKEN}/up", json=up(national, "退订", 9001))
        assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "接收成功"}
    await h.until(handle, lambda s: s.opted_out, "case knows the borrower opted out")
    assert count(h, InboundMessage) == 1  # the pushed-again sequence_id acted once
    with h.sessions() as session:
        assert session.scalar(select(Borrower.sms_opted_out)) is True
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_replies_from_two_numbers_with_the_same_sequence_id_are_both_kept(web) -> None:
    h, http = web
    for phone in ("13912345678", "13800001111"):
        answer = await http.post(f"/aliyun/{TOKEN}/up", json=up(phone, "你好", 9100))
        assert answer.status_code == 200
    assert count(h, InboundMessage) == 2


async def test_a_claimed_payment_by_uplink_becomes_a_task(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    answer = await http.post(f"/aliyun/{TOKEN}/up", json=up(spec.phone[3:], "已还", 9002))
    assert answer.status_code == 200
    await eventually(
        lambda: count(h, Task, Task.kind == "CHECK_CLAIMED_PAYMENT"), "task to check the claim"
    )
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_callbacks_without_the_token_are_refused_and_change_nothing(web) -> None:
    h, http = web
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    forged = await http.post("/aliyun/not-the-token-000000/up", json=up(spec.phone, "退订", 1))
    assert forged.status_code == 403
    bad = await http.post(f"/aliyun/{TOKEN}/up", json=[{"content": "退订"}])
    assert bad.status_code == 400 and "phone_number" in bad.json()["error"]
    assert count(h, InboundMessage) == 0
    assert not (await h.status(handle)).opted_out
    await h.pay(handle, 1_000_000)
    await handle.result()


def test_the_callback_token_never_reaches_a_log_line() -> None:
    from service.log_masking import mask_text

    line = f'127.0.0.1:5 - "POST /aliyun/{TOKEN}/up HTTP/1.1" 200 from 13912345678'
    assert mask_text(line) == '127.0.0.1:5 - "POST /aliyun/***/up HTTP/1.1" 200 from 139****5678'
