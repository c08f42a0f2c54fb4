"""A parked case's memory in a workflows-only worker: `python -m bench.memory_parked [N] [WARM]`.

A dev server, a database, an activities process (`WORKER_CASES_PART=activities`) and the
measured process: `python worker.py` with `WORKER_ROLES=cases WORKER_CASES_PART=workflows`,
started through this module so that it answers SIGUSR1 with its figures. WARM cases are
parked at the visit first (the process's one-off costs: imports, the type adapters, the
SDK's first runs), its figures, and it starts tracing its allocations (tracemalloc,
MEMORY_PARKED_FRAMES frames, 4 by default; 0: no tracing, the figures undistorted by
tracemalloc's slower tasks and its own bookkeeping); then N more, its figures and a
snapshot. Per case of the N: the RSS growth, the Python objects kept (allocated while
tracing and still alive, by what made them), the objects by type, and what RSS has beyond
the Python objects (glibc malloc's heap in use and free, pymalloc's arenas). With
--trivial the same for the trivial workflow's worker (bench/trivial.py) and N runs parked on
a signal, as the memory section's baseline (MEMORY_PARKED_TRIVIAL_WORK=A,T,U: with A
no-op activities, T timers and U upserts before they park). MEMORY_PARKED_UNSANDBOXED=1:
the measured worker without the workflow sandbox (what the sandbox costs a case).

TEMPORAL_DEBUG=1 in the measured process: tracemalloc makes workflow tasks several times
slower and the SDK's 2-second deadlock detector would evict runs (debug mode turns it off,
and lets a debugger's modules through the sandbox; nothing else). Not a figure of the
report: the breakdown behind the memory section's (issue 17).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import tracemalloc
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

FRAMES = int(os.environ.get("MEMORY_PARKED_FRAMES", "4"))
ARENA = 1 << 20  # pymalloc's arena, 1 MiB (CPython 3.10+)


# ------------------------------------------------------------------ the measured process


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def allocator() -> dict[str, int]:
    """glibc malloc (every thread's arena, native and Python's blocks over 512 bytes alike)
    and pymalloc (Python's small objects, in arenas of their own): bytes."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    # sys._debugmallocstats writes to C's stderr: through a file.
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        stats = out.read().decode()

    def stat(label: str) -> int:
        found = re.search(rf"^# {label}\s+=\s+([\d,]+)", stats, re.M)
        return int(found.group(1).replace(",", "")) if found else 0

    return {
        "malloc_in_use": info.uordblks + info.hblkhd,  # mmapped blocks are in hblkhd
        "malloc_free": info.fordblks,
        "malloc_arena": info.arena,
        "pymalloc_arenas": stat("arenas allocated current") * ARENA,
        "pymalloc_in_use": stat("bytes in allocated blocks"),
    }


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def object_counts() -> dict[str, int]:
    """The garbage collector's objects by type (modules, classes, functions: per sandbox)."""
    counts: dict[str, int] = defaultdict(int)
    for o in gc.get_objects():
        counts[type(o).__name__] += 1
    return counts


def unsandboxed() -> None:
    """MEMORY_PARKED_UNSANDBOXED=1: the measured worker runs its workflows without the
    sandbox (what the sandbox costs a case; a measure only, never the product's setting)."""
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    import service.worker_factory as factory
    from bench import trivial

    def worker(*args: Any, **kwargs: Any) -> Worker:
        return Worker(*args, workflow_runner=UnsandboxedWorkflowRunner(), **kwargs)

    factory.Worker = worker  # type: ignore[assignment,misc]
    trivial.Worker = worker  # type: ignore[assignment,misc]


def traced_worker(out: Path, trivial: list[str]) -> None:
    """worker.main() (or the trivial worker, given its arguments), answering SIGUSR1: the
    first time its figures into `out` (0.json) and tracing starts; the second time a snapshot
    (1.snap) and its figures (1.json). Traced only in between, FRAMES frames: tracing from
    the start makes a sandbox's first task 20-30 s (over the workflow task timeout) on a busy
    machine."""
    taken = [0]

    def dump(*_: object) -> None:
        gc.collect()
        i = taken[0]
        figures: dict[str, object] = {
            "rss": rss(),
            "tracemalloc": tracemalloc.get_traced_memory()[0],
            "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
        }
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(out / f"{i}.snap"))
            tracemalloc.stop()  # pymalloc's statistics are there only without its hooks
        figures.update(allocator(), objects=object_counts())
        (out / f"{i}.json").write_text(json.dumps(figures))
        if i == 0 and FRAMES > 0:
            tracemalloc.start(FRAMES)
        taken[0] += 1

    signal.signal(signal.SIGUSR1, dump)
    if os.environ.get("MEMORY_PARKED_UNSANDBOXED"):
        unsandboxed()
    if trivial:  # as bench/trivial_worker.py: ADDRESS TASK_QUEUE CACHE
        from bench import trivial as trivial_worker

        sys.argv = [sys.argv[0], *trivial]
        asyncio.run(trivial_worker.serve())
    else:
        import worker

        worker.main()


# ------------------------------------------------------------------ the driver

# Where a kept allocation comes from: the first rule whose path part is in its traceback
# (innermost frame first within each rule's search, rules in this order).
BUCKETS = (
    ("the sandbox: modules imported afresh per run", ("workflow_sandbox/_importer.py",)),
    ("the sandbox: the run's instance and restrictions", ("workflow_sandbox/",)),
    # With a few frames, a class body run at each sandbox import lands here too: the
    # unsandboxed run (MEMORY_PARKED_UNSANDBOXED) tells the two apart.
    (
        "workflows/ and domain/ lines (class bodies per import, the run's state)",
        ("/workflows/", "/domain/"),
    ),
    ("the SDK's workflow instance (asyncio loop, futures, commands)", ("_workflow_instance.py",)),
    ("payload conversion (Pydantic, the converter)", ("pydantic", "converter")),
    ("the SDK's worker (activations, protobufs)", ("temporalio/",)),
)


def bucket(tb: tracemalloc.Traceback) -> str:
    files = [f.filename for f in tb]  # most recent call last (tracemalloc's default)
    for name, parts in BUCKETS:
        if any(p in f for f in files for p in parts):
            return name
    return f"other ({Path(files[-1]).name if files else '?'})"


async def drive(n: int, warm: int, trivial: bool) -> None:
    from bench.harness import (
        add_loans,
        bounded,
        database,
        dev_server,
        quiet,
        rss_kb,
        worker_processes,
    )
    from bench.lifecycle import LIFECYCLE_POLICY, worker_env
    from bench.trivial import TrivialInput, TrivialWorkflow
    from service.case_start import start_case

    out = Path(tempfile.mkdtemp(prefix="memory-parked-"))
    env = await dev_server()
    try:
        with database("sqlite") as (url, sessions, tmp):
            report = add_loans(sessions, tmp / "export.csv", warm + n)
            address = env.client.service_client.config.target_host
            tq = f"mem-parked-{uuid.uuid4().hex[:6]}"
            wenv = worker_env(address, tq, url, tmp / "data")
            cache = str(warm + n + 100)
            wenv["WORKER_MAX_CACHED_WORKFLOWS"] = cache
            acts_env = {**wenv, "WORKER_CASES_PART": "activities"}
            flows_env = {
                **wenv,
                "WORKER_ROLES": "cases",
                "WORKER_CASES_PART": "workflows",
                "TEMPORAL_DEBUG": "1",
            }
            flows_cmd = [sys.executable, "-m", "bench.memory_parked", "worker", str(out)]
            if trivial:  # the trivial workflow's worker, parked on a signal (bench/memory.py)
                flows_cmd += [address, tq, cache]
            # MEMORY_PARKED_TRIVIAL_WORK=ACTIVITIES,TIMERS,UPSERTS: the trivial runs do that
            # much before they park (a longer history, as a case's at the visit).
            acts_n, *work = (
                int(x) for x in os.environ.get("MEMORY_PARKED_TRIVIAL_WORK", "0,0,0").split(",")
            )
            async with (
                worker_processes(
                    0 if trivial else 1, [sys.executable, "worker.py"], acts_env
                ) as acts,
                worker_processes(1, flows_cmd, flows_env) as flows,
            ):
                groups = {"flows": flows, "acts": acts}
                parked = 0

                async def start(item: object) -> object:
                    if trivial:
                        return await env.client.start_workflow(
                            TrivialWorkflow.run,
                            TrivialInput(acts_n, 1, 0, *work),
                            id=f"tm-{tq}-{uuid.uuid4().hex}",
                            task_queue=tq,
                        )
                    spec = item
                    return await start_case(
                        env.client,
                        tq,
                        spec.loan_no,
                        spec.branch,
                        LIFECYCLE_POLICY,  # type: ignore[attr-defined]
                    )

                async def park(specs: list) -> None:
                    nonlocal parked
                    handles: list[object] = []

                    async def keep(handle: object) -> None:
                        handles.append(handle)

                    await bounded(specs, start, after=keep)
                    parked += len(specs)
                    if trivial:
                        for h in handles:  # answered once its first task ran: cached
                            await h.query(TrivialWorkflow.signals_seen)  # type: ignore[attr-defined]
                    else:
                        q = f"TaskQueue='{tq}' AND CollectionStage='FIELD_VISIT'"
                        while (await env.client.count_workflows(q)).count < parked:
                            await asyncio.sleep(0.5)
                    await quiet(groups)

                async def snapshot(i: int) -> dict[str, int]:
                    flows[0].send_signal(signal.SIGUSR1)
                    while not (out / f"{i}.json").exists():
                        await asyncio.sleep(0.5)
                    await asyncio.sleep(1)
                    return json.loads((out / f"{i}.json").read_text())

                await park(report.good[:warm])
                before = await snapshot(0)
                await park(report.good[warm:])
                after = await snapshot(1)
                print(f"measured process RSS {rss_kb(flows[0].pid) / 1024:.0f} MB ({out})")
    finally:
        await env.shutdown()
    explain(before, after, out, n)


def explain(before: dict, after: dict, out: Path, n: int) -> None:
    def kb(key: str) -> float:
        return (after[key] - before[key]) / n / 1024

    kept: dict[str, int] = defaultdict(int)
    top: dict[str, int] = defaultdict(int)
    by_file: dict[str, int] = defaultdict(int)
    snap = out / "1.snap"
    stats = tracemalloc.Snapshot.load(str(snap)).statistics("traceback") if snap.exists() else []
    for stat in stats:
        kept[bucket(stat.traceback)] += stat.size
        frame = stat.traceback[-1]
        where = frame.filename.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
        top[f"{where}:{frame.lineno}"] += stat.size
        by_file[where] += stat.size
    rss_grown = kb("rss") - kb("tracemalloc_overhead")
    print(f"per parked case, {n} cases (KB):")
    print(f"  {kb('rss'):7.1f}  RSS growth")
    print(f"  {kb('tracemalloc_overhead'):7.1f}    of which tracemalloc's own bookkeeping")
    print(f"  {rss_grown:7.1f}  RSS growth without it")
    print(f"  {kb('tracemalloc'):7.1f}    Python objects kept (tracemalloc), by what made them:")
    for name, size in sorted(kept.items(), key=lambda kv: -kv[1]):
        if size / n / 1024 >= 0.5:
            print(f"  {size / n / 1024:9.1f}    {name}")
    print(f"  {rss_grown - kb('tracemalloc'):7.1f}    RSS beyond the Python objects kept")
    print(
        f"  {kb('malloc_in_use'):7.1f}  glibc malloc in use (native, and Python's blocks > 512 B)"
    )
    print(f"  {kb('malloc_free'):7.1f}  glibc malloc free in its heap (fragmentation)")
    print(f"  {kb('pymalloc_arenas'):7.1f}  pymalloc arenas (Python's small objects)")
    print(f"  {kb('pymalloc_in_use'):7.1f}    of which in use")
    print("objects per case, by type (the garbage collector's):")
    grown = {t: after["objects"].get(t, 0) - c for t, c in before["objects"].items()}
    grown.update({t: c for t, c in after["objects"].items() if t not in before["objects"]})
    for t, c in sorted(grown.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {c / n:7.1f}  {t}")
    print("by file (innermost frame):")
    for where, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {size / n / 1024:7.1f}  {where}")
    print("by line:")
    for where, size in sorted(top.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {size / n / 1024:7.1f}  {where}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        traced_worker(Path(sys.argv[2]), sys.argv[3:])
    else:
        trivial = "--trivial" in sys.argv
        args = [int(a) for a in sys.argv[1:] if a != "--trivial"]
        asyncio.run(drive(args[0] if args else 200, args[1] if len(args) > 1 else 30, trivial))
