"""Outages: the database unreachable for a while, the Temporal server stopped and started
again. Cases wait, retry with backoff and go on; nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from temporalio.client import Client

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.models import StageChange, Visit
from db.seed import add_branches_and_collectors
from domain.models import VisitReport
from service.converter import DATA_CONVERTER
from service.dev_server import start_dev_server
from service.worker_factory import build_worker
from tests.harness import Harness, running_worker
from tests.web_support import WAITS_FOR_VISIT, case_waiting_for_visit, free_port
from workflows.collection import LoanCollectionWorkflow as WF


class TcpProxy:
    """PostgreSQL behind a switch: with `up` False every connection fails at once (existing
    ones cut, new ones closed on arrival), as a database restart or a network cut does.
    Threads, not the test's event loop: the code under test talks to it synchronously."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._up = True
        self.refused = 0
        self.links: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        if not value:
            for link in self.links:
                with contextlib.suppress(OSError):
                    link.shutdown(socket.SHUT_RDWR)
            self.links.clear()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self._up:
                self.refused += 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
async def pg_behind_proxy(pg_database: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    engine = make_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(pg_database)
    proxy = TcpProxy(5432)
    yield proxy, pg_database.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    proxy.close()


async def test_a_database_outage_pauses_the_case_and_nothing_is_half_written(
    dev_env, pg_behind_proxy, tmp_path: Path
) -> None:
    proxy, url = pg_behind_proxy
    # Short connection attempts: an activity fails fast and Temporal's backoff paces retries.
    engine = make_engine(url, connect_args={"connect_timeout": 3})
    sessions = session_factory(engine)
    with sessions.begin() as session:
        add_branches_and_collectors(session)
    try:
        async with running_worker(dev_env, sessions, tmp_path / "data") as h:
            case = await case_waiting_for_visit(h)
            proxy.up = False
            report = VisitReport("MET", [case.collector], datetime.now(UTC), "met", "QX01-C01")
            update = asyncio.create_task(case.handle.execute_update(WF.report_visit, report))
            await asyncio.sleep(6)
            # The visit's activity is retried with backoff (1 s, 2 s, 4 s ...), not hammered.
            assert 2 <= proxy.refused <= 12, proxy.refused
            assert not update.done()
            status = await h.status(case.handle)  # the case answers from Temporal meanwhile
            assert status.stage == "FIELD_VISIT"
            proxy.up = True
            accepted = await asyncio.wait_for(update, 60)
            assert accepted.message == "visit 1 recorded: MET"
            await h.at_stage(case.handle, "NEGOTIATION", timeout=30)
            await case.handle.cancel()
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Visit)) == 1
            seqs = session.scalars(select(StageChange.seq).order_by(StageChange.seq)).all()
            assert seqs == list(range(1, len(seqs) + 1))
    finally:
        engine.dispose()


async def test_a_restarted_server_resumes_every_case_where_it_was(
    sqlite_sessions, tmp_path: Path
) -> None:
    port, ui = free_port(), free_port()
    data = tmp_path / "temporal"
    server = start_dev_server(data, port, ui)
    assert server is not None
    tq = f"tq-{uuid.uuid4()}"
    try:
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=DATA_CONVERTER)
        h = Harness(None, client, tq, sqlite_sessions, tmp_path / "data", policy=WAITS_FOR_VISIT)  # type: ignore[arg-type]
        async with build_worker(client, tq, sqlite_sessions, tmp_path / "data"):
            waiting = [await case_waiting_for_visit(h) for _ in range(2)]
            # One more case waits on a timer: its first notice's reply window.
            _, on_timer = await h.start(WAITS_FOR_VISIT.with_overrides({"contact_wait_seconds": 8}))
            timer_before = await h.until(
                on_timer,
                lambda s: s.stage == "INITIAL_CONTACT" and s.next_action_at is not None,
                "the reply window's timer",
            )
            before = [await h.status(c.handle) for c in waiting]

            server.terminate()
            server.wait(timeout=30)
            # Sent while the server is down: the client retries until it is back.
            report = VisitReport(
                "MET", [waiting[0].collector], datetime.now(UTC), "met", waiting[0].collector
            )
            update = asyncio.create_task(waiting[0].handle.execute_update(WF.report_visit, report))
            await asyncio.sleep(2)
            assert not update.done()
            server = start_dev_server(data, port, ui)
            assert server is not None

            accepted = await asyncio.wait_for(update, 60)
            assert accepted.message == "visit 1 recorded: MET"
            await h.at_stage(waiting[0].handle, "NEGOTIATION", timeout=30)
            after = await h.status(waiting[1].handle)
            assert (after.stage, after.next_action_at) == (
                before[1].stage,
                before[1].next_action_at,
            )
            moved = await h.at_stage(on_timer, "FIELD_VISIT", timeout=30)  # the timer fired
            assert moved.stage_since >= timer_before.next_action_at
            assert moved.counters.sms_sent == 1
            for handle in [c.handle for c in waiting] + [on_timer]:
                await handle.cancel()
        with sqlite_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Visit)) == 1
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
