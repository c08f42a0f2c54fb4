"""Outages: the database unreachable for a while, the Temporal server stopped and started
again. Cases wait, retry with backoff and go on; nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select, text
from temporalio.client import Client
from temporalio.service import RetryConfig

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.models import Case, Loan, SmsOutbox, StageChange, Visit
from db.seed import add_branches_and_collectors
from domain.models import VisitReport
from domain.names import Activities as A
from service.converter import DATA_CONVERTER
from service.dev_server import start_dev_server
from service.worker_factory import build_worker
from tests.harness import Harness, running_worker
from tests.web_support import WAITS_FOR_VISIT, case_waiting_for_visit, free_port
from workflows.collection import LoanCollectionWorkflow as WF


class TcpProxy:
    """A server behind a switch: with `up` False every connection fails at once (existing ones
    cut, new ones closed on arrival), as a database restart or a network cut does.

    Its own port is bound once (port 0) and kept for the whole test, so clients always find
    it; `target` may move (a server restarted on another port). Threads, not the test's event
    loop: the code under test talks to it synchronously.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._up = True
        self.refused = 0  # connections closed on arrival while down
        self.unreachable = 0  # connections while the target did not answer
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
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self.unreachable += 1
                client.close()
                continue
            upstream.settimeout(None)
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


async def retry_waits(handle, activity: str, failures: int, timeout: float = 90) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """The waits the server set before the retries of the case's pending `activity` (from a
    failure to the next attempt's schedule, as describe reports them while it waits), by
    failure number, until it has failed `failures` times. Read from the server, not timed."""
    waits: dict[int, timedelta] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while failures not in waits:
        desc = await handle.describe()
        for info in desc.raw_description.pending_activities:
            if info.activity_type.name == activity and info.HasField("next_attempt_schedule_time"):
                waits.setdefault(
                    info.attempt - 1,
                    info.next_attempt_schedule_time.ToDatetime()
                    - info.last_attempt_complete_time.ToDatetime(),
                )
        assert asyncio.get_running_loop().time() < deadline, f"{activity} retries: {waits}"
        await asyncio.sleep(0.05)
    return waits


@pytest.fixture
async def pg_behind_proxy(pg_database: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    engine = make_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(pg_database)
    server = make_url(pg_database)  # the server COLLECTION_TEST_PG names, wherever it is
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    yield proxy, server.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
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
            report = VisitReport("MET", case.team, datetime.now(UTC), "met", "QX01-C01")
            update = asyncio.create_task(case.handle.execute_update(WF.report_visit, report))
            # The visit's activity is retried with backoff, not hammered: the server itself
            # waited 1 s, 2 s, then 4 s before the retries (read from the server, not timed
            # here), and each attempt knocked at the database a few times, not in a loop.
            waits = await retry_waits(case.handle, A.RECORD_VISIT, failures=3)
            assert {2, 3} <= waits.keys(), waits  # the 1 s wait may pass between two looks
            assert {n: round(w.total_seconds(), 1) for n, w in waits.items()} == {
                n: 2.0 ** (n - 1) for n in waits
            }, waits
            assert 3 <= proxy.refused <= 3 * (3 + 1), proxy.refused  # + a 4th attempt begun
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


def dev_server_on(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The dev server on its file, and its port. It cannot be given port 0, so its ports are
    chosen free; one may be taken before the server binds it: then fresh ones are tried."""
    for _ in range(5):
        port, ui = free_port(), free_port()
        try:
            server = start_dev_server(data, port, ui)
        except RuntimeError:  # it exited: a port was taken in the meantime
            continue
        if server is not None:  # None: something else answers on that port
            return server, port
    raise AssertionError(f"no dev server on {data} after 5 pairs of ports")


async def connected(port: int) -> Client:
    """A client that keeps retrying its calls; connecting waits for a dev server that has
    opened its port but whose frontend is not healthy yet (a busy machine)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            return await Client.connect(
                f"127.0.0.1:{port}",
                data_converter=DATA_CONVERTER,
                retry_config=RetryConfig(max_elapsed_time_millis=120_000, max_retries=10_000),
            )
        except RuntimeError as e:
            if "not healthy" not in str(e) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_a_restarted_server_resumes_every_case_where_it_was(
    sqlite_sessions, tmp_path: Path
) -> None:
    data = tmp_path / "temporal"
    server, port = dev_server_on(data)
    # Clients reach the server through a port held for the whole test: the restarted server
    # may listen elsewhere (its old port may be taken meanwhile), as behind a load balancer.
    front = TcpProxy("127.0.0.1", port)
    tq = f"tq-{uuid.uuid4()}"
    try:
        # The SDK's default gives up on a call after 10 s of retries; a server restart on a
        # busy machine can take longer. The property here is "applied once when it is back",
        # so this client keeps retrying for as long as the test allows.
        client = await connected(front.port)
        h = Harness(None, client, tq, sqlite_sessions, tmp_path / "data", policy=WAITS_FOR_VISIT)  # type: ignore[arg-type]
        async with build_worker(client, tq, sqlite_sessions, tmp_path / "data"):
            waiting = [await case_waiting_for_visit(h) for _ in range(2)]
            # One more case waits on a timer: its first notice's reply window.
            timed, on_timer = await h.start(
                WAITS_FOR_VISIT.with_overrides({"contact_wait_seconds": 8})
            )
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
                "MET", waiting[0].team, datetime.now(UTC), "met", waiting[0].collector
            )
            update = asyncio.create_task(waiting[0].handle.execute_update(WF.report_visit, report))
            await asyncio.sleep(2)
            assert not update.done()
            server, port = dev_server_on(data)
            front.target = ("127.0.0.1", port)

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
            # Its first notice went out once, not again after the restart. (Not the counter:
            # the visit notice follows FIELD_VISIT at once and may already be counted.)
            with sqlite_sessions() as session:
                purposes = session.scalars(
                    select(SmsOutbox.purpose)
                    .join(Case, Case.id == SmsOutbox.case_id)
                    .join(Loan, Loan.id == Case.loan_id)
                    .where(Loan.loan_no == timed.loan_no)
                ).all()
            assert purposes.count("first_notice") == 1, purposes
            for handle in [c.handle for c in waiting] + [on_timer]:
                await handle.cancel()
        with sqlite_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Visit)) == 1
    finally:
        front.close()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
