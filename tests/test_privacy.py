"""Borrower privacy: encrypted payloads on the Temporal server (with key rotation), the codec
endpoint for the web UI, and logs that never show a full phone or ID number."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client, WorkflowHandle

from domain.models import CloseRequest, VisitReport
from service.codec import CodecKeyError, EncryptionCodec, Keys, data_converter
from service.log_masking import MaskingFormatter, mask_text
from service.users import Role
from service.worker_factory import build_worker
from tests.harness import Harness
from tests.web_support import PASSWORD, WAITS_FOR_VISIT, add_user
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


# What must never reach the Temporal server in the clear: the borrower's name, phone and ID
# number, and what the collector and the supervisor wrote.
NAME, PHONE, ID_NUMBER = "钱秘密", "+8613955501234", "52240119700101777X"
NOTES = "NOTES-MARKER 狗在院子里"
CLOSE_REASON = f"CLOSE-MARKER {NAME} paid at the branch"
SECRETS = [NAME, PHONE, PHONE.removeprefix("+86"), ID_NUMBER, NOTES, CLOSE_REASON]
ENCRYPTED = b"binary/encrypted"


def payloads_in(node: object, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every payload in an exported history (proto JSON), wherever it sits: anything with
    `metadata` whose values are base64 strings. Found by shape, not by a list of event
    kinds, so a payload in an event kind nobody thought of is checked too."""
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values()):
            yield path, node
            return
        for key, value in node.items():
            yield from payloads_in(value, f"{path}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from payloads_in(value, f"{path}[{n}]")


def assert_only_ciphertext(history_json: str, secrets: list[str]) -> dict[str, int]:
    """None of `secrets` is in any payload's bytes (base64-decoded) nor anywhere else in the
    history, and every payload of every event is sealed by the codec. Two exceptions, both
    written in the clear by design and checked for secrets all the same: search attributes
    (visibility indexes them) and the SDK's patch markers (a patch's name). Returns how many
    sealed payloads each event type carried."""
    events = json.loads(history_json)["events"]
    assert not [s for s in secrets if s in history_json], "a secret in the history's text"
    found = [
        (f"event {n + 1} {event['eventType']}{path}", event["eventType"], path, p)
        for n, event in enumerate(events)
        for path, p in payloads_in(event)
    ]
    decoded = []
    for where, kind, path, p in found:
        data = base64.b64decode(p.get("data", ""))
        metadata = {k: base64.b64decode(v) for k, v in p["metadata"].items()}
        leaked = [s for s in secrets if s.encode() in data + b"".join(metadata.values())]
        assert not leaked, f"{where}: {leaked} in the clear"
        decoded.append((where, kind, path, metadata, data))
    kinds: dict[str, int] = {}
    for where, kind, path, metadata, data in decoded:
        if ".searchAttributes." in path:
            continue
        if kind == "EVENT_TYPE_MARKER_RECORDED" and ".details.patch-data." in path:
            assert json.loads(data).keys() == {"id", "deprecated"}, f"{where}: {data!r}"
            continue
        assert metadata.get("encoding") == ENCRYPTED, f"{where}: {metadata} not encrypted"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def case_with_every_kind_of_payload(h: Harness) -> WorkflowHandle:
    """A case whose history holds a workflow input, activity inputs and results, a signal,
    Updates' requests and outcomes, and a result, each carrying something personal."""
    spec, handle = await h.start(WAITS_FOR_VISIT, name=NAME, phone=PHONE, id_number=ID_NUMBER)
    status = await h.at_stage(handle, "FIELD_VISIT")
    visited_at = await h.now()  # after the case opened, not after the server's now
    await handle.execute_update(
        WF.report_visit, VisitReport("NOT_HOME", status.collectors, visited_at, NOTES)
    )
    await h.pay(handle, 100, reference=f"PAY-{uuid.uuid4().hex[:8]}")
    status = await h.until(handle, lambda s: s.paid_fen == 100, "payment counted")
    assert status.loan_no == spec.loan_no  # the codec's client reads everything
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", CLOSE_REASON, "QX01-C01"))
    await handle.result()
    return handle


async def test_the_temporal_server_holds_only_ciphertext(env, sqlite_sessions, tmp_path: Path):
    sealed_client = Client(
        env.client.service_client,
        namespace=env.client.namespace,
        data_converter=data_converter(K1),
    )
    tq = f"tq-{uuid.uuid4()}"
    h = Harness(env, sealed_client, tq, sqlite_sessions, tmp_path / "data")
    async with build_worker(sealed_client, tq, sqlite_sessions, tmp_path / "data"):
        handle = await case_with_every_kind_of_payload(h)
        # A Query's answer passes through the server too (it is in no history).
        answer = await env.client.workflow_service.query_workflow(
            QueryWorkflowRequest(
                namespace=env.client.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
                query=WorkflowQuery(query_type="status"),
            )
        )
    [status] = answer.query_result.payloads
    assert status.metadata["encoding"] == ENCRYPTED
    assert not [s for s in SECRETS if s.encode() in status.data]

    # What the server stores, read without the key, as anyone with access to it would.
    history = await env.client.get_workflow_handle(handle.id).fetch_history()
    kinds = assert_only_ciphertext(history.to_json(), SECRETS)
    # Each kind of payload was there to be checked.
    assert {
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    } <= kinds.keys(), kinds


async def test_the_ciphertext_check_catches_a_history_in_the_clear(
    env, sqlite_sessions, tmp_path: Path
):
    """The same case without the codec: the check above must fail on it, for the notes in
    the visit report, and for payloads that are not encrypted."""
    tq = f"tq-{uuid.uuid4()}"
    h = Harness(env, env.client, tq, sqlite_sessions, tmp_path / "data")
    async with build_worker(env.client, tq, sqlite_sessions, tmp_path / "data"):
        handle = await case_with_every_kind_of_payload(h)
    raw = (await env.client.get_workflow_handle(handle.id).fetch_history()).to_json()
    assert NOTES not in raw  # base64 in the export: only decoding finds it
    with pytest.raises(AssertionError, match="NOTES-MARKER.* in the clear"):
        assert_only_ciphertext(raw, SECRETS)
    with pytest.raises(AssertionError, match="not encrypted"):
        assert_only_ciphertext(raw, [])


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
    # Amounts and dates are left as they are (the loan number named is masked).
    assert (
        mask_text("loan QX-0001, 12,000.00 yuan, 2026-11-29")
        == "loan ****001, 12,000.00 yuan, 2026-11-29"
    )


def test_logs_mask_loan_numbers_in_keys_workflow_ids_and_case_paths() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.privacy.loans")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        # A case's SMS key as an activity logs it, the SDK's line about an activity of the
        # case, an access line of its page, and a traceback quoting the key.
        log.info("SMS %s deferred", "QX-20260001:1a2b3c4d:first_notice:2")
        log.warning("failed ({'workflow_id': 'collection-QX-20260002', 'attempt': 3})")
        log.info('"GET /cases/QX-20260003/record.pdf HTTP/1.1" 200')
        try:
            raise RuntimeError("outbox row QX-20260004:reminder:7 is locked")
        except RuntimeError:
            log.exception("could not send")
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    out = stream.getvalue()
    for n in range(1, 5):
        assert f"QX-2026000{n}" not in out
    assert "*******0001:1a2b3c4d:first_notice:2" in out  # which message: still readable
    assert "collection-*******0002" in out and "/cases/*******0003/record.pdf" in out
    assert "*******0004:reminder:7" in out
    # Not masked: the patch names, a clock, a server address, other keys.
    for text in (
        "collection-v5 and collection-v4-overdue-since",
        "at 12:30:45 on localhost:7233",
        "training-reminder:2026-11-30:u5",
        "INFO:root:3 cases",
        "user admin:reset:1",
        "case 3 of 5, loan number missing",
    ):
        assert mask_text(text) == text


def test_logs_mask_task_keys_prefixed_keys_and_loans_named_in_errors() -> None:
    """A task's key (its kind in capitals), the contact record's "sms:<key>", and an
    activity's error quoting "loan <loan_no>" (the SDK logs the failure with its message)."""
    assert mask_text("task QX-20260005:1a2b3c4d:PHONE_CALL:3 exists") == (
        "task *******0005:1a2b3c4d:PHONE_CALL:3 exists"
    )
    assert mask_text("key sms:QX-20260006:first_notice:1") == "key sms:*******0006:first_notice:1"
    assert mask_text("loan QX-20260007 is not in the database") == (
        "loan *******0007 is not in the database"
    )
    assert mask_text("could not tell case QX-20260008 of the opt-out") == (
        "could not tell case *******0008 of the opt-out"
    )


def test_sms_log_lines_carry_the_key_masked_even_without_the_masking_formatter() -> None:
    from domain.privacy import mask_key, mask_loan_no

    assert (
        mask_key("T1A2B3C4D001:abcd1234:paid_in_full:3") == "********D001:abcd1234:paid_in_full:3"
    )
    assert mask_key("T1A2B3C4:sms:1") == "****B3C4:sms:1"  # a released case's key
    assert mask_loan_no("AB12") == "**12"  # a short number is never shown whole
