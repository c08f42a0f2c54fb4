"""What every benchmark section shares: the dev server, a fresh database with generated loans,
bounded concurrency, medians, and the CPU and memory of the server and worker processes.

The sections (intake, reads, lifecycle, skipping, render) measure; this module sets up what
they measure against, so that each section sets it up the same way.
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import select, update
from temporalio.testing import WorkflowEnvironment

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.models import Branch, Collector
from db.seed import add_branches_and_collectors
from domain import search_attributes as sa
from service.converter import DATA_CONVERTER

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("COLLECTION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CONCURRENCY = 50  # starts in flight at once, for the intake and the bare loop alike

T = TypeVar("T")
R = TypeVar("R")


# ------------------------------------------------------------------ figures


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs that have it (a NaN, a run that could not measure
    it, is left out: statistics.median's answer with one depends on the order); NaN if none."""
    return {k: median([x[k] for x in runs if not math.isnan(x[k])]) for k in runs[0]}


async def bounded(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    after: Callable[[R], Awaitable[Any]] | None = None,
) -> None:
    """fn(item) for every item, CONCURRENCY at once; then after(fn's result), outside the limit."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> None:
        async with gate:
            result = await fn(item)
        if after is not None:
            await after(result)

    await asyncio.gather(*(one(x) for x in items))


def pace_offsets(n: int, rate: float) -> list[float]:
    """Seconds from the first start at which each of n starts goes, `rate` a second."""
    return [i / rate for i in range(n)]


async def paced(items: list[T], fn: Callable[[T], Awaitable[Any]], rate: float) -> None:
    """fn(item) for every item, started `rate` a second on a fixed schedule (open loop: a
    slow start does not hold back the next one), then awaited."""
    t0 = time.perf_counter()
    tasks = []
    for offset, item in zip(pace_offsets(len(items), rate), items, strict=True):
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(fn(item)))
    await asyncio.gather(*tasks)


# ------------------------------------------------------------------ server, database, loans


async def dev_server(
    db_file: Path | None = None, extra_args: list[str] | None = None
) -> WorkflowEnvironment:
    """A fresh dev server; history in memory, or in the SQLite file `db_file` (as
    `temporal server start-dev --db-filename`, which the scale section measures);
    `extra_args` for `temporal server start-dev` (the morning wave: one partition per task
    queue, service/dev_server.ONE_PARTITION_ARGS)."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
        data_converter=DATA_CONVERTER,
        dev_server_database_filename=str(db_file) if db_file else None,
        dev_server_extra_args=extra_args or [],
    )


@contextmanager
def database(kind: str) -> Iterator[tuple[str, Any, Path]]:
    """A fresh, migrated database with the demo branches and collectors: (URL, session
    factory, a temporary directory that goes with it)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'collection.db'}"
    else:
        name = f"collection_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        # Ten collectors a branch, capacity for a county's portfolio.
        add_branches_and_collectors(session, per_branch=10)
        session.execute(update(Collector).values(capacity=100_000))
    try:
        yield url, sessions, tmp
    finally:
        engine.dispose()
        if kind != "sqlite":
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def export_file(path: Path, n: int, today: date, accrued_yuan: int = 0, first: int = 0) -> Path:
    """N overdue loans as the core-banking export (Chinese headers, UTF-8 with BOM); the
    same loans every time, with `accrued_yuan` more interest each (a later day's export);
    numbered from `first` (other loans, other borrowers: a second batch beside the first)."""
    rnd = random.Random(7)
    branches = ["QX01", "QX02", "LS01"]
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            "贷款编号 网点代码 身份证号 姓名 手机号 贷款金额 未还本金 欠息 罚息 逾期起始日 村 偏远".split()  # noqa: E501
        )
        for i in range(first, first + n):
            principal = rnd.randrange(5_000, 200_000)
            w.writerow(
                [
                    f"B{i:07d}",
                    branches[i % 3],
                    f"522401{i:011d}X",
                    "王建国",
                    f"139{i:08d}",
                    principal,
                    principal // 2,
                    rnd.randrange(0, 2000) + accrued_yuan,
                    rnd.randrange(0, 500),
                    (today - timedelta(days=rnd.randrange(31, 400))).isoformat(),
                    "石门",
                    "否",
                ]
            )
    return path


def add_loans(sessions: Any, path: Path, n: int, first: int = 0) -> Any:
    """N generated loans (an export file at `path`, numbered from `first`) validated and
    stored, as the intake does before it starts any case; returns the validation report (its
    `good` loans)."""
    from feeds.loans import upsert, validate

    with sessions() as session:
        branches = list(session.scalars(select(Branch.code)))
    today = datetime.now(UTC).date()
    report = validate(export_file(path, n, today, first=first), branches, today)
    with sessions.begin() as session:
        upsert(session, report.good)
    return report


# ------------------------------------------------------------------ processes: CPU and memory


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def server_pid() -> int:
    """The dev server this process started (WorkflowEnvironment.start_local's child)."""
    for kid in children(os.getpid()):
        if "temporal" in Path(f"/proc/{kid}/cmdline").read_bytes().decode(errors="replace"):
            return kid
    return 0


Procs = list[subprocess.Popen]  # type: ignore[type-arg]


def cpu_split(groups: dict[str, Procs]) -> dict[str, float]:
    """CPU seconds so far: the Temporal server ("server"), and each named group of worker
    processes with their child processes (a render worker's PDF processes)."""
    split = {"server": cpu_s(server_pid())}
    for name, procs in groups.items():
        split[name] = sum(cpu_s(p.pid) + sum(cpu_s(k) for k in children(p.pid)) for p in procs)
    return split


async def idle_cpu(groups: dict[str, Procs], seconds: float = 5) -> dict[str, float]:
    """CPU milliseconds a second the server and the worker groups use with nothing to do
    (long polls, timers of their own): what a slower run costs per case without more work."""
    await quiet(groups)  # started and settled first
    before = cpu_split(groups)
    await asyncio.sleep(seconds)
    return {k: v / seconds for k, v in cpu_ms_per_case(before, cpu_split(groups), 1).items()}


def cpu_ms_per_case(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds a case between two cpu_split readings, over n cases."""
    return {k: (after[k] - before[k]) / n * 1000 for k in before}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def quiet(groups: dict[str, Procs], timeout: float = 120) -> None:
    """Until the server and the worker processes (with their children) use under 5% of a
    core."""
    deadline = time.perf_counter() + timeout
    before = cpu_split(groups)
    while time.perf_counter() < deadline:
        await asyncio.sleep(1)
        after = cpu_split(groups)
        if sum(after.values()) - sum(before.values()) < 0.05:
            return
        before = after


@asynccontextmanager
async def worker_processes(count: int, command: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    # Output to files: a pipe nobody reads fills up and blocks the worker's logging.
    logs = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    procs = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=(logs / f"w{i}.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]
    try:
        await asyncio.sleep(3)  # imports, connection, first poll
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker exited; see {logs}")
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
