"""The codec endpoint for Temporal's web UI: it shows encrypted payloads decrypted to a
signed-in supervisor, and to nobody else.

In the UI (or `temporal server start-dev --ui-codec-endpoint`), set the codec endpoint to
`https://<this app>/codec` and turn on "include cross-origin credentials": the browser then
sends the supervisor's session cookie. Tools may send `Authorization: Bearer <token>`.
The request and answer bodies are Temporal's JSON form of `Payloads`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payloads

from service import audit
from service.codec import CodecKeyError, EncryptionCodec
from service.users import Role
from webapp.auth import require
from webapp.rendering import as_json


def codec_router(sessions: sessionmaker[Session], codec: EncryptionCodec | None) -> APIRouter:
    router = APIRouter()

    async def apply(request: Request, direction: str) -> Response:
        who = require(request, sessions, Role.SUPERVISOR)
        if codec is None:
            return as_json({"error": "payload encryption is not configured"}, 404)
        try:
            payloads = ParseDict(await request.json(), Payloads()).payloads
        except (ValueError, ParseError) as e:
            return as_json({"error": f"payloads: not Temporal's JSON form of Payloads ({e})"}, 400)
        try:
            done = await (
                codec.decode(payloads) if direction == "decode" else codec.encode(payloads)
            )
        except CodecKeyError as e:
            return as_json({"error": str(e)}, 400)
        if direction == "decode":
            audit.record(
                sessions, who.username, who.role, "codec_decode", "DONE",
                f"{len(done)} payloads, namespace {request.headers.get('x-namespace', '-')}",
            )  # fmt: skip
        return as_json(MessageToDict(Payloads(payloads=done)))

    @router.post("/codec/decode")
    async def decode(request: Request) -> Response:
        return await apply(request, "decode")

    @router.post("/codec/encode")
    async def encode(request: Request) -> Response:
        return await apply(request, "encode")

    return router
