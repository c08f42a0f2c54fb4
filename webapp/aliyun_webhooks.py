"""Alibaba Cloud SMS's HTTP push callbacks (HTTP批量推送): SmsReport (delivery reports) and
SmsUp (uplink replies, 上行短信). Both are JSON arrays, and Aliyun does not sign them: the
secret in their URL path (/aliyun/<ALIYUN_CALLBACK_TOKEN>/report, .../up) is checked with
hmac.compare_digest, 403 otherwise. Each item goes through the same handling as Twilio's
webhooks (webapp/sms_inbound.py): a reply stored, classified and told to its case once (by
its number and sequence_id), a report on its outbox row once (by biz_id and status)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from activities.sms_gateway import out_id_sid
from db.models import SmsOutbox
from domain.phones import PhoneError, normalize_phone
from webapp.sms_inbound import callback_items, case_signal, handle_receipt, handle_reply

log = logging.getLogger(__name__)
RECEIVED = {"code": 0, "msg": "接收成功"}  # Aliyun's expected answer; anything else: it retries


def aliyun_router(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    token: str,
) -> APIRouter:
    if len(token) < 16:
        raise ValueError("ALIYUN_CALLBACK_TOKEN: at least 16 characters (a random secret)")
    router = APIRouter(prefix="/aliyun")
    signal = case_signal(temporal)

    items = callback_items("Aliyun", token)

    @router.post("/{given}/up")
    async def uplink(given: str, request: Request) -> Response:
        """SmsUp: a borrower's reply. Once per number and sequence_id, however often Aliyun
        pushes it.
        No answer goes back in the response (Aliyun cannot carry one); an opt-out is recorded
        and Aliyun's own 退订 handling stops further texts from this signature."""
        for item in await items(request, given, ("phone_number", "sequence_id")):
            raw = str(item["phone_number"])
            try:
                phone = normalize_phone(raw)
            except PhoneError:
                phone = raw[:20]
            # sequence_id is not unique across numbers: the number and it name the reply.
            sid = f"aliyun-up:{phone}:{item['sequence_id']}"[:64]
            await handle_reply(sessions, signal, sid, phone, str(item.get("content", ""))[:1600])
        return JSONResponse(RECEIVED)

    @router.post("/{given}/report")
    async def report(given: str, request: Request) -> Response:
        """SmsReport: a delivery report, on the outbox row of its BizId (or, for a message a
        retry found by QuerySendDetails, of its OutId)."""
        for item in await items(request, given, ("biz_id",)):
            delivered = item.get("success") in (True, "true")
            status = "delivered" if delivered else "undelivered"
            error = "" if delivered else str(item.get("err_code") or "")[:16]
            sid = await run_in_threadpool(_sid_of, sessions, item)
            await handle_receipt(sessions, signal, sid, status, error)
        return JSONResponse(RECEIVED)

    return router


def _sid_of(sessions: sessionmaker[Session], item: dict) -> str:
    """The outbox's name for the message: its BizId, or `out_id_sid(OutId)` when the send activity
    found it after a lost answer (QuerySendDetails gives the OutId, not the BizId)."""
    biz_id, out_id = str(item["biz_id"])[:64], str(item.get("out_id") or "")
    if out_id:
        found = out_id_sid(out_id)
        with sessions() as session:
            if session.scalar(select(SmsOutbox.id).where(SmsOutbox.provider_sid == found)):
                return found
    return biz_id
