"""Section memory: worker RSS per cached open case, ours against the trivial workflow's.

One `python worker.py` process; N cases started and parked waiting for their visit
(FIELD_VISIT, as in the lifecycle section), every one in the worker's workflow cache; the
worker's RSS once the server and the worker are idle, less its RSS before the first case,
over N. Then the same for N runs of the trivial workflow (bench/trivial.py) parked on a
signal, in a worker process of its own with the same settings (the SDK's sandboxed runner,
the same cache size). The ratio is ours over the trivial one's (issue 17: target ≤ 2.0).

With `split` (--memory-split) the cases queue is served as a deployment may split it
(WORKER_CASES_PART): the measured process runs the cases' workflows only (WORKER_ROLES=cases,
WORKER_CASES_PART=workflows), another every activity (the cases role's, render and sms). The
bare trivial worker runs no activity either, so the two processes compare like for like: the
heap the activities leave (SQLAlchemy, the PDF and SMS code, their threads) is the
activities process's, and not divided among the cached cases. Its growth is reported apart.
(The same-work baseline below runs its no-op activities in its own worker, split or not.)

A second baseline: N trivial runs that first do the Temporal work a parked case did (its
activities, timers and upserts, counted from a sample of the parked cases' histories), then
park on a signal: a history as long as the case's, as orchestration_ratio's baseline does
the case's work (memory_ratio_same_work). The SDK keeps state for every event of a cached
run, so the bare trivial run (about 5 events) and a case at its visit (about 45) differ by
that too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from temporalio.client import Client

from bench.harness import add_loans, bounded, database, dev_server, quiet, rss_kb, worker_processes
from bench.lifecycle import (
    LIFECYCLE_POLICY,
    count_events,
    history_sample,
    trivial_input,
    worker_env,
)
from bench.trivial import TrivialInput, TrivialWorkflow
from domain.names import workflow_id
from service.case_start import start_case


def cache_size(n: int) -> int:
    """WORKER_MAX_CACHED_WORKFLOWS for N parked runs: all of them, with room to spare."""
    return max(1000, n + 100)


async def not_parked(handles: list[Any]) -> list[Any]:
    """Those of the trivial runs not yet waiting for their signal (asked CONCURRENCY at once)."""
    still: list[Any] = []

    async def ask(h: Any) -> None:
        if not await h.query(TrivialWorkflow.parked):
            still.append(h)

    await bounded(handles, ask)
    return still


async def trivial_parked(
    client: Client, n: int, wenv: dict[str, str], work: TrivialInput | None = None
) -> tuple[float, float]:
    """N trivial runs parked on a signal in one worker process: (idle KB, parked KB). With
    `work`, each run first does that Temporal work (activities, timers, upserts): a history
    as long as a parked case's."""
    tq = f"trivial-mem-{uuid.uuid4().hex[:6]}"
    cache = wenv["WORKER_MAX_CACHED_WORKFLOWS"]
    command = [sys.executable, "-m", "bench.trivial_worker", wenv["TEMPORAL_ADDRESS"], tq, cache]
    async with worker_processes(1, command, wenv) as procs:
        await quiet({"worker": procs})  # imported, connected, polling
        idle = rss_kb(procs[0].pid)

        async def start(i: int) -> Any:
            return await client.start_workflow(
                TrivialWorkflow.run, work or TrivialInput(0, 1), id=f"tm-{tq}-{i}", task_queue=tq
            )

        handles: list[Any] = []

        async def parked(h: Any) -> None:
            # Answered once the worker has run the first workflow task: a bare run is
            # waiting on its signal, in the cache (one with `work` is doing it).
            await h.query(TrivialWorkflow.signals_seen)
            handles.append(h)

        await bounded(range(n), start, after=parked)
        if work is not None:  # every run done with its work and waiting, before RSS is read
            pending = list(handles)
            deadline = time.monotonic() + max(300.0, n * 0.5)
            while pending:
                pending = await not_parked(pending)
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{len(pending)} trivial runs did not finish their work, "
                        f"e.g. {pending[0].id}"
                    )
                if pending:
                    await asyncio.sleep(0.5)
        await quiet({"worker": procs})
        return idle, rss_kb(procs[0].pid)


async def bench_memory(n: int, db: str, split: bool = False) -> dict[str, float]:
    env = await dev_server()
    try:
        with database(db) as (url, sessions, tmp):
            report = add_loans(sessions, tmp / "export.csv", n)
            address = env.client.service_client.config.target_host
            tq = f"bench-mem-{uuid.uuid4().hex[:6]}"
            wenv = worker_env(address, tq, url, tmp / "data")
            wenv["WORKER_MAX_CACHED_WORKFLOWS"] = str(cache_size(n))
            command = [sys.executable, "worker.py"]
            async with AsyncExitStack() as stack:
                if split:
                    flows_env = {**wenv, "WORKER_ROLES": "cases", "WORKER_CASES_PART": "workflows"}
                    acts_env = {**wenv, "WORKER_CASES_PART": "activities"}
                    procs = await stack.enter_async_context(worker_processes(1, command, flows_env))
                    acts = await stack.enter_async_context(worker_processes(1, command, acts_env))
                else:
                    procs = await stack.enter_async_context(worker_processes(1, command, wenv))
                    acts = []
                groups = {"worker": procs, "activities": acts}
                # On a busy machine the worker may still be importing after the harness's
                # few seconds: its idle RSS once it has nothing to do.
                await quiet(groups)
                idle = rss_kb(procs[0].pid)
                acts_idle = rss_kb(acts[0].pid) if acts else 0
                await bounded(
                    report.good,
                    lambda spec: start_case(
                        env.client, tq, spec.loan_no, spec.branch, LIFECYCLE_POLICY
                    ),
                )
                parked_q = f"TaskQueue='{tq}' AND CollectionStage='FIELD_VISIT'"
                while (await env.client.count_workflows(parked_q)).count < n:
                    await asyncio.sleep(0.5)
                await quiet(groups)  # visit tasks and notices written: nothing left to do
                parked = rss_kb(procs[0].pid)
                acts_parked = rss_kb(acts[0].pid) if acts else 0
            # What a parked case's history holds (a sample of them), for the baseline that
            # does the same Temporal work before it parks (its signal is never sent).
            wids = history_sample([workflow_id(spec.loan_no) for spec in report.good])
            done = await count_events(env.client, wids)
            work = dataclasses.replace(trivial_input(done), signals=1, updates=0)
            t_idle, t_parked = await trivial_parked(env.client, n, wenv)
            w_idle, w_parked = await trivial_parked(env.client, n, wenv, work)
    finally:
        await env.shutdown()
    ours = (parked - idle) / n / 1024
    trivial = (t_parked - t_idle) / n / 1024
    same_work = (w_parked - w_idle) / n / 1024
    m = {
        "mb_per_case": ours,
        "trivial_mb_per_case": trivial,
        # At a few cases the trivial runs' growth can be lost in the noise: no ratio then.
        "ratio": ours / trivial if trivial > 0 else float("nan"),
        "same_work_mb_per_case": same_work,
        "ratio_same_work": ours / same_work if same_work > 0 else float("nan"),
        "events_parked": done["events"],
        "same_work_activities": float(work.activities),
        "same_work_timers": float(work.timers),
        "same_work_upserts": float(work.upserts),
        "idle_mb": idle / 1024,
        "trivial_idle_mb": t_idle / 1024,
    }
    if split:
        m["activities_idle_mb"] = acts_idle / 1024
        m["activities_growth_mb"] = (acts_parked - acts_idle) / 1024
    return m
