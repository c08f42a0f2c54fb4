"""Tencent Cloud SMS's callbacks: delivery status (短信下发状态回调, a JSON array) and replies
(短信回复回调, one JSON object). Tencent does not sign them: the secret in their URL path
(/tencent/<TENCENT_CALLBACK_TOKEN>/status, .../reply) is checked in constant time, 403
otherwise. Both go through webapp/sms_inbound.py like Twilio's and Aliyun's: a reply once
(Tencent gives it no id: its number, time, text and extension code name it), a status once
per message (`sid`, the SerialNo SendSms answered) and status."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from domain.phones import PhoneError, normalize_phone
from webapp.sms_inbound import callback_items, case_signal, handle_receipt, handle_reply

log = logging.getLogger(__name__)
RECEIVED = {"result": 0, "errmsg": "OK"}  # Tencent's expected answer


def tencent_router(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    token: str,
) -> APIRouter:
    if len(token) < 16:
        raise ValueError("TENCENT_CALLBACK_TOKEN: at least 16 characters (a random secret)")
    router = APIRouter(prefix="/tencent")
    signal = case_signal(temporal)

    items = callback_items("Tencent", token)

    def phone_of(item: dict) -> str:
        raw = f"+{item.get('nationcode') or '86'}{item['mobile']}"
        try:
            return normalize_phone(raw)
        except PhoneError:
            return raw[:20]

    @router.post("/{given}/reply")
    async def reply(given: str, request: Request) -> Response:
        for item in await items(request, given, ("mobile", "time")):
            text = str(item.get("text", ""))[:1600]
            identity = f"{item.get('nationcode')}|{item['mobile']}|{item['time']}|{text}|"
            identity += str(item.get("extend", ""))
            sid = "tencent-up:" + hashlib.sha256(identity.encode()).hexdigest()[:40]
            await handle_reply(sessions, signal, sid, phone_of(item), text)
        return JSONResponse(RECEIVED)

    @router.post("/{given}/status")
    async def status(given: str, request: Request) -> Response:
        for item in await items(request, given, ("sid", "report_status")):
            delivered = str(item["report_status"]).upper() == "SUCCESS"
            error = "" if delivered else str(item.get("errmsg") or "")[:16]
            await handle_receipt(
                sessions, signal, str(item["sid"])[:64],
                "delivered" if delivered else "undelivered", error,
            )  # fmt: skip
        return JSONResponse(RECEIVED)

    return router
