"""Borrower privacy: encrypted payloads on the Temporal server (with key rotation), the codec
endpoint for the web UI, and logs that never show a full phone or ID number."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from domain.models import CloseRequest
from service.codec import CodecKeyError, EncryptionCodec, Keys, data_converter
from service.log_masking import MaskingFormatter, mask_text
from service.users import Role
from service.worker_factory import build_worker
from tests.harness import Harness
from tests.web_support import PASSWORD, add_user
from webapp.app import create_app
from webapp.twilio_webhooks import WebhookConfig
from workflows.collection import LoanCollectionWorkflow as WF

K1, K2 = Keys.generate("k1"), Keys.generate("k2")


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_payloads_are_sealed_and_old_keys_still_open_them_after_rotation() -> None:
    old = EncryptionCodec(Keys.parse(K1))
    [sealed] = await old.encode([payload('{"loan_no": "QX-0001", "notes": "王建国"}')])
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata["encryption-key-id"] == b"k1"
    assert "王建国".encode() not in sealed.data and b"QX-0001" not in sealed.data
    # Rotation: k2 first (it encrypts from now on), k1 kept to read what it wrote.
    rotated = EncryptionCodec(Keys.parse(f"{K2},{K1}"))
    [opened] = await rotated.decode([sealed])
    assert opened == payload('{"loan_no": "QX-0001", "notes": "王建国"}')
    [new] = await rotated.encode([payload("{}")])
    assert new.metadata["encryption-key-id"] == b"k2"
    # Without the old key, or with a tampered payload, decoding fails and says why.
    with pytest.raises(CodecKeyError, match="key 'k1', which is not in COLLECTION_CODEC_KEYS"):
        await EncryptionCodec(Keys.parse(K2)).decode([sealed])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + b"\0")
    with pytest.raises(CodecKeyError, match="fails authentication"):
        await rotated.decode([tampered])
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"k2"}, data=sealed.data)
    with pytest.raises(CodecKeyError, match="fails authentication"):
        await rotated.decode([relabelled])
    # Payloads from before encryption was switched on still read.
    assert await rotated.decode([payload("{}")]) == [payload("{}")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key"),
        ("k1", "needs id:base64"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"{K1},{K1}", "listed twice"),
    ],
)
def test_bad_key_configuration_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(CodecKeyError, match=message):
        Keys.parse(text)


async def test_the_temporal_server_holds_only_ciphertext(env, sqlite_sessions, tmp_path: Path):
    sealed_client = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(K1),
    )
    tq = f"tq-{uuid.uuid4()}"
    h = Harness(env, sealed_client, tq, sqlite_sessions, tmp_path / "data")
    async with build_worker(sealed_client, tq, sqlite_sessions, tmp_path / "data"):
        spec, handle = await h.start()
        status = await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
        assert status.loan_no == spec.loan_no  # the codec's client reads everything
        await handle.execute_update(
            WF.close_case,
            CloseRequest("CANCELLED", f"test: {spec.name} paid, ref SECRET-MARKER", "QX01-C01"),
        )
        await handle.result()
    # What the server stores: every payload sealed under k1, nothing readable in it.
    history = await env.client.get_workflow_handle(handle.id).fetch_history()
    raw = history.to_json()
    assert "SECRET-MARKER" not in raw  # it was in the close reason, an update's argument
    payloads = [
        p
        for e in history.events
        for p in (
            list(e.workflow_execution_started_event_attributes.input.payloads)
            + list(e.activity_task_scheduled_event_attributes.input.payloads)
            + list(
                e.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads
            )
            + list(e.workflow_execution_completed_event_attributes.result.payloads)
        )
    ]
    assert len(payloads) > 5
    assert all(p.metadata["encoding"] == b"binary/encrypted" for p in payloads)
    assert all(spec.loan_no.encode() not in p.data for p in payloads)
    assert not any(spec.name.encode() in p.data for p in payloads)


async def test_the_codec_endpoint_decodes_for_supervisors_only(env, sqlite_sessions, tmp_path):
    codec = EncryptionCodec(Keys.parse(K1))
    h = Harness(env, env.client, "unused", sqlite_sessions, tmp_path)

    async def temporal():  # type: ignore[no-untyped-def]
        return env.client

    app = create_app(sqlite_sessions, temporal, WebhookConfig("0" * 32), codec=codec)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "col", Role.COLLECTOR, collector_id="QX01-C01")
    [sealed] = await codec.encode([payload('"王建国"')])
    body = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }
    ui = {"origin": "http://localhost:8233", "x-namespace": "default"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        assert (await http.post("/codec/decode", json=body, headers=ui)).status_code == 401

        async def login(user: str) -> dict[str, str]:
            r = await http.post("/login", json={"username": user, "password": PASSWORD})
            return {**ui, "authorization": f"Bearer {r.json()['token']}"}

        assert (
            await http.post("/codec/decode", json=body, headers=await login("col"))
        ).status_code == 404
        sup = await login("sup")
        r = await http.post("/codec/decode", json=body, headers=sup)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:8233"
        [out] = r.json()["payloads"]
        assert base64.b64decode(out["data"]).decode() == '"王建国"'
        bad = await http.post("/codec/decode", json={"payloads": "nope"}, headers=sup)
        assert bad.status_code == 400 and bad.json()["error"].startswith("payloads:")
        # A browser's preflight from the UI's origin is allowed; from elsewhere it is not.
        pre = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        }
        ok = await http.options("/codec/decode", headers={**pre, "origin": "http://localhost:8233"})
        assert ok.status_code == 200
        evil = await http.options("/codec/decode", headers={**pre, "origin": "http://evil.example"})
        assert evil.status_code == 400


def test_logs_mask_phones_and_id_numbers_wherever_they_appear() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.privacy")
    log.addHandler(handler)
    try:
        log.warning("sms to %s for %s", "+8613912345678", "52240119800101123X")
        try:
            raise ValueError("bad phone 139 1234 5678 in row 3")
        except ValueError:
            log.exception("feed row failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "+86139****5678" in out and "**************123X" in out
    assert "139****5678" in out  # inside the traceback too
    for full in ("13912345678", "52240119800101123X", "139 1234 5678"):
        assert full not in out
    assert (
        mask_text("loan QX-0001, 12,000.00 yuan, 2026-11-29")
        == "loan QX-0001, 12,000.00 yuan, 2026-11-29"
    )
