"""Twilio's webhooks: inbound SMS and delivery status, each verified (Twilio's signature) and
processed once by the provider-independent handling in webapp/sms_inbound.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from activities.texts import environment, render_sms
from domain.phones import PhoneError, normalize_phone
from webapp.sms_inbound import case_signal, handle_receipt, handle_reply

log = logging.getLogger(__name__)


@dataclass
class WebhookConfig:
    auth_token: str
    # The public URL Twilio calls (behind a proxy the app sees another): signatures cover it.
    public_base_url: str | None = None
    language: str = "zh"
    # Aliyun's callbacks (SmsUp, SmsReport) are not signed: this secret in their URL path
    # (/aliyun/<token>/...) is what tells them from forgeries. None: no Aliyun routes.
    aliyun_token: str | None = None
    tencent_token: str | None = None  # likewise for Tencent's (/tencent/<token>/...)


def twiml(text: str | None) -> Response:
    reply = MessagingResponse()
    if text:
        reply.message(text)
    return Response(str(reply), media_type="application/xml")


def twilio_router(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    config: WebhookConfig,
) -> APIRouter:
    router = APIRouter(prefix="/twilio")
    validator = RequestValidator(config.auth_token)
    texts = environment(autoescape=False)
    signal = case_signal(temporal)

    async def verified(request: Request) -> dict[str, str]:
        form = await request.form()
        params = {k: str(v) for k, v in form.items()}
        url = str(request.url)
        if config.public_base_url:
            url = config.public_base_url.rstrip("/") + request.url.path
            if request.url.query:
                url += "?" + request.url.query
        if not validator.validate(url, params, request.headers.get("X-Twilio-Signature", "")):
            log.warning("refused a webhook with a bad Twilio signature on %s", request.url.path)
            raise HTTPException(403, "invalid Twilio signature")
        return params

    @router.post("/sms")
    async def inbound_sms(request: Request) -> Response:
        p = await verified(request)
        sid = p.get("MessageSid") or p.get("SmsSid") or ""
        if not sid:
            raise HTTPException(400, "MessageSid: missing")
        body = p.get("Body", "")[:1600]
        try:
            phone = normalize_phone(p.get("From", ""))
        except PhoneError:
            phone = p.get("From", "")[:20]
        reply = await handle_reply(sessions, signal, sid, phone, body)
        if reply.answer is None:
            return twiml(None)
        return twiml(
            render_sms(texts, config.language, reply.answer, cooperative=reply.cooperative)
        )

    @router.post("/status")
    async def delivery_status(request: Request) -> Response:
        p = await verified(request)
        sid, status = p.get("MessageSid", ""), p.get("MessageStatus", "")
        if not sid or not status:
            raise HTTPException(400, "MessageSid and MessageStatus: required")
        await handle_receipt(sessions, signal, sid, status, p.get("ErrorCode", ""))
        return Response(status_code=204)

    return router
