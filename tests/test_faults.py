"""Faults: a worker killed (SIGKILL) in the middle of sending an SMS and in the middle of
rendering an agreement; the case goes on; every message reaches the borrower once and no
row is written twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activities.twilio_gateway import TwilioGateway, TwilioSettings
from db.models import Agreement, ContactAttempt, SmsOutbox, StageChange
from domain.models import PlannedInstallment, PlanProposal
from service.worker_factory import build_worker
from tests.harness import Harness, eventually
from tests.test_twilio import ACCOUNT, CREATED, TwilioLike, open_gates
from tests.test_workflow_paths import DEBT, sign, visit
from tests.web_support import WAITS_FOR_VISIT
from workflows.collection import LoanCollectionWorkflow as WF

ROOT = Path(__file__).resolve().parent.parent
# Crashed attempts are retried elsewhere after these timeouts (the policy's, shortened).
POLICY = WAITS_FOR_VISIT.with_overrides(
    {"sms_attempt_timeout_s": 5, "render_attempt_timeout_s": 10}
)


@pytest.fixture
def twilio() -> Iterator[str]:
    TwilioLike.script, TwilioLike.seen, TwilioLike.created = [], [], []
    TwilioLike.slow_numbers = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), TwilioLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    open_gates()
    server.shutdown()


def twilio_settings(base: str) -> TwilioSettings:
    return TwilioSettings(
        account_sid=ACCOUNT, auth_token="f" * 32, from_number="+15005550006",
        status_callback_url="https://coop.example.cn/twilio/status", api_base=base,
    )  # fmt: skip


def start_worker(dev_env, db_url: str, data_dir: Path, tq: str, base: str, **env: str):  # type: ignore[no-untyped-def]
    environment = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": tq,
        "COLLECTION_DB_URL": db_url,
        "COLLECTION_DATA_DIR": str(data_dir),
        "WORKER_PDF_PROCESSES": "0",
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": "f" * 32,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_STATUS_CALLBACK_URL": "https://coop.example.cn/twilio/status",
        "TWILIO_API_BASE": base,
        **env,
    }
    log = (data_dir.parent / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault_worker"], cwd=ROOT, env=environment,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def kill(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def test_workers_killed_mid_sms_and_mid_render_lose_nothing_and_send_nothing_twice(
    dev_env, sqlite_sessions, tmp_path: Path, twilio: str
) -> None:
    db_url = str(sqlite_sessions.kw["bind"].url)
    data = tmp_path / "data"
    tq = f"tq-{uuid.uuid4()}"
    h = Harness(dev_env, dev_env.client, tq, sqlite_sessions, data, policy=POLICY)
    # Twilio takes the first notice but answers only after the worker is dead.
    dead = threading.Event()
    TwilioLike.script = [(*CREATED, dead)] + [CREATED] * 20
    first = start_worker(dev_env, db_url, data, tq, twilio)
    try:
        spec, handle = await h.start()
        await eventually(lambda: TwilioLike.created, "Twilio has the first notice", 30)
        kill(first)  # in the middle of send_sms: the outbox row is PENDING
        dead.set()  # Twilio's answer now goes to a dead worker
        with sqlite_sessions() as session:
            assert session.scalar(select(SmsOutbox.status)) == "PENDING"

        marker = tmp_path / "rendering"
        second = start_worker(
            dev_env, db_url, data, tq, twilio,
            FAULT_RENDER_MARKER=str(marker), FAULT_RENDER_DELAY="60",
        )  # fmt: skip
        # The retry (after the 5 s attempt timeout) finds the message at Twilio.
        await h.at_stage(handle, "FIELD_VISIT", timeout=60)
        await visit(h, handle, "MET", visited_at=datetime.now(UTC))
        await h.at_stage(handle, "NEGOTIATION")
        now = await h.now()
        amounts = [DEBT // 2, DEBT - DEBT // 2]
        plan = [PlannedInstallment(now + h.day * 10 * (k + 1), a) for k, a in enumerate(amounts)]
        await handle.execute_update(WF.propose_plan, PlanProposal(plan, "QX01-C01"))
        await eventually(marker.exists, "the render has begun", 30)
        kill(second)  # in the middle of the render
    finally:
        dead.set()
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                kill(proc)

    # A healthy worker takes over and finishes the case.
    # The history so far, kept beside the test's other files for a post-mortem.
    (tmp_path / "fault-history.json").write_text((await handle.fetch_history()).to_json())
    async with build_worker(
        dev_env.client, tq, sqlite_sessions, data, gateway=TwilioGateway(twilio_settings(twilio))
    ):
        status = await h.until(handle, lambda s: s.agreement is not None, "agreement", 60)
        await sign(h, handle)
        await h.at_stage(handle, "FOLLOW_UP")
        await h.pay(handle, DEBT, reference="FULL-1")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome == "PAID_IN_FULL"
    assert status.agreement is not None and status.agreement.version == 1

    with sqlite_sessions() as session:
        rows = session.scalars(select(SmsOutbox).order_by(SmsOutbox.id)).all()
        sent = [r for r in rows if r.status == "SENT"]
        assert sent and all(r.provider_sid for r in sent)
        # Each message reached Twilio once: one POST per sent row, no text twice.
        posted = [m["body"] for m in TwilioLike.created]
        assert len(posted) == len(sent) and len(set(posted)) == len(posted)
        assert {r.provider_sid for r in sent} == {m["sid"] for m in TwilioLike.created}
        assert session.scalar(select(func.count()).select_from(Agreement)) == 1
        contacts = session.scalars(select(ContactAttempt.key)).all()
        assert len(contacts) == len(set(contacts))
        seqs = session.scalars(select(StageChange.seq)).all()
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    pdfs = list((data / "agreements" / spec.loan_no).glob("*.pdf"))
    assert len(pdfs) == 1
