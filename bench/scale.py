"""Section 8, scale (issue 17, `scale_100k`): N open cases (100,000 by default) on one
server that keeps its history in a SQLite file (`temporal server start-dev --db-filename`).

1. bare loop  a bare start_workflow loop of min(N, --scale-bare) trivial workflows (no
              worker: they stay open), first, on the fresh server;
2. intake     the N loans through the intake command's code (validate, upsert, start), same
              server, same concurrency, no worker running: the intake ratio is its starts/s
              to the bare loop's;
3. park       the workers (`python worker.py`, WORKER_MAX_CACHED_WORKFLOWS = --scale-cache)
              run every case to its park: the first notice recorded (SMS recorded, not sent),
              the collector's phone task written, the case in INITIAL_CONTACT waiting for the
              borrower's answer (SCALE_POLICY: a fast policy whose waits last 30 days, so no
              timer fires during the run); the server's database size per case is read here
              (the growth of the file over the intake and the park, over N);
4. reads      with the N cases open and parked: the visibility list by stage, the counts, the
              dashboard (HTML and JSON), as the intake section reads (bench/reads.py);
5. wake       every worker stopped; the next day's export (the same loans, 1 yuan more
              interest each) through the intake's code, as the daily run does: it attaches to
              the running cases and signals each `debt_updated`; then the workers start cold
              (empty cache) and every case must replay its history to take the update. Woken
              = the case's record_debt activity wrote its DEBT_UPDATED audit entry (by the
              export's user): wake_all_s is the time from the workers' start to the last one.

Worker RSS is sampled every second from the park to the end of the wake (the highest of one
worker process); it is bounded by the cache, not by N.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import (
    CONCURRENCY,
    bounded,
    cpu_s,
    cpu_split,
    database,
    dev_server,
    export_file,
    quiet,
    rss_kb,
    server_pid,
    worker_processes,
)
from bench.lifecycle import worker_env
from bench.reads import bench_reads
from bench.trivial import TrivialInput, TrivialWorkflow
from domain.policy import DAY, fast_policy

PARK_STAGE = "INITIAL_CONTACT"
WAKE_BY = "bench-daily"  # the next day's export's user: its DEBT_UPDATED audit entries
# A fast policy (contact at any hour, no SMS caps in the way) whose waits last 30 days: every
# case parks after its first notice and stays parked while the benchmark runs.
SCALE_POLICY = fast_policy(
    contact_wait_seconds=30 * DAY,
    visit_deadline_seconds=30 * DAY,
    negotiation_deadline_seconds=30 * DAY,
    signature_deadline_seconds=30 * DAY,
)


def db_bytes(db_file: Path) -> int:
    """The server's SQLite database on disk: the file and its write-ahead log, if any."""
    return sum(p.stat().st_size for p in (db_file, Path(f"{db_file}-wal")) if p.exists())


def has_visibility(db_file: Path) -> bool:
    """Whether the server keeps visibility (the lists' rows) in the same file."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return "executions_visibility" in names


class RssPeak:
    """The highest RSS of any one worker process, sampled every second while running."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self.procs: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            for p in self.procs:
                try:
                    self.peak_kb = max(self.peak_kb, rss_kb(p.pid))
                except OSError:
                    pass  # stopping
            await asyncio.sleep(1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def count_where(sessions: Any, *where: Any, model: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def until_count(sessions: Any, n: int, *where: Any, model: Any, every: float = 1) -> None:
    while await asyncio.to_thread(count_where, sessions, *where, model=model) < n:
        await asyncio.sleep(every)


async def bench_scale(n: int, cache: int, workers: int, bare_sample: int) -> dict[str, float]:
    from db.models import AuditEvent, Task
    from feeds.loans import intake

    tmp_server = Path(tempfile.mkdtemp(prefix="bench-scale-server-"))
    db_file = tmp_server / "temporal.db"
    env = await dev_server(db_file)
    rss = RssPeak()
    try:
        with database("sqlite") as (url, sessions, tmp):
            client = env.client
            today = datetime.now(UTC).date()
            path = export_file(tmp / "export.csv", n, today)

            # 1. The bare loop, on a sample.
            bare_n = min(n, bare_sample)
            print(f"  bare start_workflow loop: {bare_n:,} trivial workflows", flush=True)
            t0 = time.perf_counter()
            await bounded(
                range(bare_n),
                lambda i: client.start_workflow(
                    TrivialWorkflow.run, TrivialInput(0, 0), id=f"bare-{i}", task_queue="bench-bare"
                ),
            )
            bare_s = time.perf_counter() - t0
            size0 = db_bytes(db_file)

            # 2. The intake, no worker running.
            tq = f"bench-scale-{uuid.uuid4().hex[:6]}"
            print(f"  intake: {n:,} loans", flush=True)
            server = server_pid()
            cpu0 = cpu_s(server) + time.process_time()
            t0 = time.perf_counter()
            report = await intake(
                path, sessions, client, tq, SCALE_POLICY, today, concurrency=CONCURRENCY
            )
            intake_s = time.perf_counter() - t0
            intake_cpu = cpu_s(server) + time.process_time() - cpu0
            assert not report.errors and report.started == n, (report.errors[:3], report.started)

            # 3. The park.
            address = client.service_client.config.target_host
            wenv = worker_env(address, tq, url, tmp / "data")
            wenv["WORKER_MAX_CACHED_WORKFLOWS"] = str(cache)
            command = [sys.executable, "worker.py"]
            print(f"  park: {n:,} cases, {workers} worker(s), cache {cache:,}", flush=True)
            t0 = time.perf_counter()
            async with worker_processes(workers, command, wenv) as procs:
                rss.procs = procs
                rss.start()
                idle_kb = max(rss_kb(p.pid) for p in procs)
                park_cpu0 = cpu_split({"worker": procs})
                # Parked: the phone task the notice is followed by is the case's last write.
                await until_count(sessions, n, Task.kind == "PHONE_CALL", model=Task, every=2)
                park_s = time.perf_counter() - t0
                await quiet({"worker": procs})
                park_cpu = cpu_split({"worker": procs})
                park_cpu = {k: park_cpu[k] - park_cpu0[k] for k in park_cpu}
                parked_kb = [rss_kb(p.pid) for p in procs]
                size1 = db_bytes(db_file)

                # 4. The reads, every case open and parked.
                print("  reads", flush=True)
                reads = await bench_reads(client, sessions, n, PARK_STAGE, projection=False)
            rss.stop()

            # 5. The wake: the next day's export told to the cases while no worker runs.
            path2 = export_file(tmp / "export-next-day.csv", n, today, accrued_yuan=1)
            print(f"  wake: the next day's export told to {n:,} cases, workers down", flush=True)
            cpu0 = cpu_s(server) + time.process_time()
            t0 = time.perf_counter()
            report2 = await intake(
                path2,
                sessions,
                client,
                tq,
                SCALE_POLICY,
                today,
                started_by=WAKE_BY,
                concurrency=CONCURRENCY,
            )
            tell_s = time.perf_counter() - t0
            tell_cpu = cpu_s(server) + time.process_time() - cpu0
            assert report2.attached == n and len(report2.debts) == n, (
                report2.attached,
                len(report2.debts),
                report2.errors[:3],
            )
            woken = (AuditEvent.action == "DEBT_UPDATED", AuditEvent.username == WAKE_BY)
            print("  wake: workers start cold", flush=True)
            t0 = time.perf_counter()
            async with worker_processes(workers, command, wenv) as procs:
                rss.procs = procs
                rss.start()
                wake_cpu0 = cpu_s(server)  # the workers' CPU from their start
                await until_count(sessions, n, *woken, model=AuditEvent, every=1)
                wake_s = time.perf_counter() - t0
                wake_cpu = cpu_s(server) - wake_cpu0 + sum(cpu_s(p.pid) for p in procs)
            rss.stop()
            size2 = db_bytes(db_file)
            visibility = has_visibility(db_file)
    finally:
        rss.stop()
        await env.shutdown()
        shutil.rmtree(tmp_server, ignore_errors=True)
    return {
        "cases": n,
        "rows_per_s": n / intake_s,
        "bare_n": bare_n,
        "bare_per_s": bare_n / bare_s,
        "ratio": (n / intake_s) / (bare_n / bare_s),
        "park_s": park_s,
        "rss_idle_mb": idle_kb / 1024,
        "rss_parked_mb": max(parked_kb) / 1024,
        "rss_peak_mb": rss.peak_kb / 1024,
        "cache": cache,
        "workers": workers,
        "db_bytes_per_case": (size1 - size0) / n,
        "db_bytes_total": size2,
        "db_visibility": float(visibility),
        "tell_s": tell_s,
        "wake_s": wake_s,
        # CPU milliseconds a case (load-independent: what the 100k estimate is made from):
        # the intake (server + this process), the park (server / workers / PDF processes),
        # the next day's export told (server + this process), the wake (server + workers).
        "cpu_ms_intake": intake_cpu / n * 1000,
        "cpu_ms_park_server": park_cpu["server"] / n * 1000,
        "cpu_ms_park_worker": park_cpu["worker"] / n * 1000,  # its PDF processes included
        "cpu_ms_tell": tell_cpu / n * 1000,
        "cpu_ms_wake": wake_cpu / n * 1000,
        **reads,
    }
