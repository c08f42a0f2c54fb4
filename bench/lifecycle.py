"""Sections 3 and 4, lifecycle and memory: M cases driven contact → visit → plan →
signature → 3 installments paid by `python worker.py` processes (the cases role, and the
render role in a process of its own), against a trivial workflow doing the same Temporal
work per case (activities, signals, Updates, timers, upserts); the CPU per case (server,
our workers, the render apart) and orchestration_ratio from it; the status Query at rest and
under load, a visit-report Update under load, and worker RSS per 1,000 open cases. With
--pace, the same Query and Update again with further cases started at a steady fraction of
the measured throughput (paced_phase); and, from a sample of histories, each workflow task's
and activity task's wait from scheduled to started, flat out and paced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from bench.driver import Driver
from bench.harness import (
    add_loans,
    bounded,
    cpu_ms_per_case,
    cpu_split,
    database,
    dev_server,
    idle_cpu,
    median,
    paced,
    pct,
    quiet,
    rss_kb,
    worker_processes,
)
from bench.report import orchestration_ratio
from bench.trivial import TrivialInput, TrivialWorkflow
from domain.models import CaseResult
from domain.names import RENDER, ROLES, SMS, workflow_id
from domain.policy import fast_policy
from service.case_start import start_case
from service.dev_server import ONE_PARTITION_ARGS
from workflows.collection import LoanCollectionWorkflow as WF

LIFECYCLE_POLICY = fast_policy(
    contact_wait_seconds=1,
    # Human deadlines far away: the benchmark, not a timeout, moves the case on.
    visit_deadline_seconds=3600,
    negotiation_deadline_seconds=3600,
    signature_deadline_seconds=3600,
    max_plan_seconds=7200,
)


def probe_count(m: int) -> int:
    """How many of M cases have their visit report sent one at a time, timed: at least 30
    (a p95 of 10 was the slowest one), a fifth of the cases from 150 on, never all."""
    return max(1, min(m // 2, max(30, m // 5)))


# What count_events counts, by the history event's attributes.
COUNTED = {
    "activity_task_scheduled_event_attributes": "activities",
    "workflow_execution_signaled_event_attributes": "signals",
    "workflow_execution_update_accepted_event_attributes": "updates",
    "timer_started_event_attributes": "timers",
    "upsert_workflow_search_attributes_event_attributes": "upserts",
    "workflow_task_completed_event_attributes": "wf_tasks",
}


# The niceness of the role processes run apart (--apart-nice): 0, as a default worker.
APART_NICE = 0


async def run_histories(client: Client, wid: str) -> AsyncIterator[Any]:
    """The histories of a case's runs, first to last (continue-as-new)."""
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        yield history
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return


# The tasks whose waits task_waits measures: scheduled event → started event (which names
# its scheduled event's id).
TASKS = {
    "wft": ("workflow_task_scheduled_event_attributes", "workflow_task_started_event_attributes"),
    "act": ("activity_task_scheduled_event_attributes", "activity_task_started_event_attributes"),
}


def task_waits(events: Iterable[HistoryEvent]) -> dict[str, list[float]]:
    """Milliseconds each workflow task ("wft") and each activity task ("act") waited, from its
    Scheduled event to its Started event: the server's queue and a worker's free slot (its
    poll). An activity's Started event is its last attempt's: a retried one's wait holds
    the attempts before it."""
    scheduled: dict[int, float] = {}
    waits: dict[str, list[float]] = {kind: [] for kind in TASKS}
    for e in events:
        t = e.event_time.seconds * 1000 + e.event_time.nanos / 1e6
        attributes = e.WhichOneof("attributes")
        for kind, (scheduled_kind, started_kind) in TASKS.items():
            if attributes == scheduled_kind:
                scheduled[e.event_id] = t
            elif attributes == started_kind:
                at = scheduled.pop(getattr(e, started_kind).scheduled_event_id, None)
                if at is not None:
                    waits[kind].append(t - at)
    return waits


async def count_events(
    client: Client, wids: list[str], waits: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """Per case, over all its runs: activities, signals, Updates, timers, search-attribute
    upserts (the patch markers' TemporalChangeVersion ones too: the server's work all the
    same), workflow tasks, events and runs; and each workflow and activity task's wait into
    `waits` by kind, if given (task_waits, from the same histories)."""
    counts = dict.fromkeys([*COUNTED.values(), "events", "runs"], 0)
    for wid in wids:
        async for history in run_histories(client, wid):
            for e in history.events:
                kind = COUNTED.get(e.WhichOneof("attributes") or "")
                if kind is not None:
                    counts[kind] += 1
            counts["events"] += len(history.events)
            counts["runs"] += 1
            if waits is not None:
                for kind, these in task_waits(history.events).items():
                    waits.setdefault(kind, []).extend(these)
    n = len(wids)
    return {k: v / n for k, v in counts.items()}


def wait_figures(waits: dict[str, list[float]], suffix: str = "") -> dict[str, float]:
    """<kind>_wait_p50/_p95 (+ suffix) of each kind's waits (NaN without any), and how many."""
    figures = {}
    for kind, these in waits.items():
        figures[f"{kind}_wait_p50{suffix}"] = median(these)
        figures[f"{kind}_wait_p95{suffix}"] = pct(these, 0.95) if these else float("nan")
        figures[f"{kind}_waits{suffix}"] = float(len(these))
    return figures


def history_sample(wids: list[str]) -> list[str]:
    """The cases whose histories are read (count_events, the workflow-task waits): 20."""
    return wids[:: max(1, len(wids) // 20)]


async def paced_phase(
    client: Client, tq: str, sessions: Any, tmp: Path, n: int, first: int, rate: float
) -> tuple[dict[str, float], list[str]]:
    """N more cases (loans numbered from `first`) started `rate` a second, on the same
    workers, driven by a Driver as the flat-out phase's are (its status Query samples and
    visit-report probes the same); their figures and the sample of their workflow ids whose
    histories are to be read."""
    report = add_loans(sessions, tmp / "export-paced.csv", n, first=first)
    wids = [workflow_id(s.loan_no) for s in report.good]
    driver = Driver(client, tq, sessions, probes=set(wids[:: max(1, n // probe_count(n))]))
    driver.before = first
    t0 = time.perf_counter()
    await asyncio.gather(
        paced(
            report.good,
            lambda spec: start_case(client, tq, spec.loan_no, spec.branch, LIFECYCLE_POLICY),
            rate,
        ),
        driver.run(len(wids)),
    )
    paced_s = time.perf_counter() - t0
    return {
        "pace_cases_per_s": rate,
        "paced_cases_per_s": len(wids) / paced_s,
        "paced_cases": float(len(wids)),
        "query_p50_paced": median(driver.query_ms),
        "query_p95_paced": pct(driver.query_ms, 0.95),
        "queries_paced": float(len(driver.query_ms)),
        "visit_p50_paced": median(driver.visit_ms),
        "visit_p95_paced": pct(driver.visit_ms, 0.95),
        "visits_paced": float(len(driver.visit_ms)),
        "update_p50_paced": median(driver.update_ms),
        "update_p95_paced": pct(driver.update_ms, 0.95),
    }, history_sample(wids)


def worker_env(address: str, task_queue: str, db_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a `python worker.py` process on this server, queue and database
    (no Twilio: SMS are recorded, not sent)."""
    wenv = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": task_queue,
        "COLLECTION_DB_URL": db_url,
        "COLLECTION_DATA_DIR": str(data_dir),
    }
    for k in list(wenv):
        if k.startswith("TWILIO_") or k.startswith("WORKER_"):
            del wenv[k]
    return wenv


def trivial_input(per_case: dict[str, float]) -> TrivialInput:
    """The trivial case doing a case's Temporal work (count_events, rounded)."""
    return TrivialInput(
        activities=round(per_case["activities"]),
        signals=round(per_case["signals"]),
        updates=round(per_case["updates"]),
        timers=round(per_case["timers"]),
        upserts=round(per_case["upserts"]),
    )


async def trivial_baseline(
    client: Client,
    m: int,
    per_case: dict[str, float],
    workers: int,
    wenv: dict[str, str],
    queries: int = 0,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """The baseline: M trivial cases with as many activities, signals, Updates, timers and
    upserts a case as ours, nothing else, on as many worker processes; (wall seconds, CPU
    ms per case, count_events of a sample of them).

    Ours are queried while they run (the status Query sampled under load, and at rest): the
    baseline answers as many Queries, to its open cases, as its cases progress, so that the
    CPU they cost the server and the worker is on both sides of the ratio."""
    inp = trivial_input(per_case)
    btq = f"trivial-{uuid.uuid4().hex[:6]}"
    address = wenv["TEMPORAL_ADDRESS"]
    command = [sys.executable, "-m", "bench.trivial_worker", address, btq]
    async with worker_processes(workers, command, wenv) as tprocs:
        idle = await idle_cpu({"worker": tprocs})
        cpu0 = cpu_split({"worker": tprocs})
        t0 = time.perf_counter()

        running: list[WorkflowHandle[Any, int]] = []
        progress = {"done": 0, "asked": 0}
        rng = random.Random(7)

        async def trivial(i: int) -> WorkflowHandle[Any, int]:
            h = await client.start_workflow(
                TrivialWorkflow.run, inp, id=f"t-{btq}-{i}", task_queue=btq
            )
            running.append(h)
            for _ in range(inp.signals):
                await h.signal(TrivialWorkflow.poke)
            for _ in range(inp.updates):
                await h.execute_update(TrivialWorkflow.touch)
            return h

        async def finished(h: WorkflowHandle[Any, int]) -> None:
            await h.result()
            running.remove(h)
            progress["done"] += 1
            # A case's share ahead, so that the last share is asked while cases still run.
            await ask(queries * min(1.0, (progress["done"] + 1) / m))

        async def ask(upto: float) -> None:
            tries = 0
            while running and progress["asked"] < upto and tries < 4 * queries:
                tries += 1
                with contextlib.suppress(RPCError):  # it completed meanwhile: not counted
                    await rng.choice(running).query(TrivialWorkflow.signals_seen)
                    progress["asked"] += 1

        await bounded(range(m), trivial, after=finished)
        trivial_s = time.perf_counter() - t0
        cpu = cpu_ms_per_case(cpu0, cpu_split({"worker": tprocs}), m)
        cpu["idle"] = sum(idle.values()) * trivial_s / m  # ms a case, of server + worker
    counted = await count_events(client, history_sample([f"t-{btq}-{i}" for i in range(m)]))
    return trivial_s, cpu, counted


async def bench_lifecycle(
    m: int,
    db: str,
    workers: int,
    apart: tuple[str, ...] = (RENDER,),
    apart_nice: int = APART_NICE,
    tuning: dict[str, str] | None = None,
    pace: float | None = None,
    pace_cases: int | None = None,
) -> dict[str, float]:
    """Our M cases on `workers` processes with the cases role (and every role not `apart`),
    and one process for each role `apart` (at `apart_nice` niceness: WORKER_NICE); `tuning`:
    more environment for the cases processes (WORKER_WORKFLOW_TASKS, ...).

    With `pace` (a fraction, 0.8), a paced phase after the flat-out one: `pace_cases` more
    cases (default M) started at `pace` × the flat-out cases/s, on the same workers, the
    status Query and the visit-report Update sampled as flat out (paced_phase). It comes
    after the CPU readings: the CPU per case, the orchestration ratio and the trivial
    baseline are the flat-out phase's alone."""
    # As the service runs it (service/dev_server.py): one partition a task queue, so a
    # collector's activity goes before the backlog (its task priority, collection-v6).
    env = await dev_server(extra_args=ONE_PARTITION_ARGS)
    try:
        with database(db) as (url, sessions, tmp):
            # Borrowers whose loans the cases work on (one a case).
            report = add_loans(sessions, tmp / "export.csv", m)
            address = env.client.service_client.config.target_host
            tq = f"bench-{uuid.uuid4().hex[:6]}"
            wenv = worker_env(address, tq, url, tmp / "data")
            cases_env = {
                **wenv,
                **(tuning or {}),
                "WORKER_ROLES": ",".join(r for r in ROLES if r not in apart),
            }
            role_envs = [
                {**wenv, "WORKER_ROLES": role, "WORKER_NICE": str(apart_nice)} for role in apart
            ]
            command = [sys.executable, "worker.py"]
            async with contextlib.AsyncExitStack() as stack:
                procs = await stack.enter_async_context(
                    worker_processes(workers, command, cases_env)
                )
                role_procs = {
                    role: await stack.enter_async_context(worker_processes(1, command, e))
                    for role, e in zip(apart, role_envs, strict=True)
                }
                # Ours: the cases processes and the sms role's; the render's apart.
                groups = {
                    "worker": procs + role_procs.get(SMS, []),
                    "render": role_procs.get(RENDER, []),
                }
                idle = sum(rss_kb(p.pid) for p in procs)
                idle_rate = await idle_cpu(groups)
                cpu0 = cpu_split(groups)
                wids = [workflow_id(s.loan_no) for s in report.good]
                probes = set(wids[:: max(1, m // probe_count(m))])
                driver = Driver(env.client, tq, sessions, probes=probes)
                t0 = time.perf_counter()
                await bounded(
                    report.good,
                    lambda spec: start_case(
                        env.client, tq, spec.loan_no, spec.branch, LIFECYCLE_POLICY
                    ),
                )
                # Memory: every case open and waiting for its visit, in the workflow cache.
                parked_q = f"TaskQueue='{tq}' AND CollectionStage='FIELD_VISIT'"
                while (await env.client.count_workflows(parked_q)).count < m:
                    await asyncio.sleep(0.5)
                # Visibility lists a case at FIELD_VISIT before its visit task and notice are
                # written: wait until the server and the workers have nothing left to do.
                await quiet(groups)
                parked = sum(rss_kb(p.pid) for p in procs)
                # The status Query with every case open and the workers idle: what a
                # supervisor opening a case page waits for.
                rest_ms = []
                for wid in wids[:: max(1, m // 50)]:
                    t = time.perf_counter()
                    await env.client.get_workflow_handle(wid).query(WF.status)
                    rest_ms.append((time.perf_counter() - t) * 1000)
                t_load = time.perf_counter()
                await driver.run(m)
                ours_s = time.perf_counter() - t0
                load_s = time.perf_counter() - t_load
                cpu1 = cpu_split(groups)
                ours_cpu = cpu_ms_per_case(cpu0, cpu1, m)
                ours_cpu["idle"] = (idle_rate["server"] + idle_rate["worker"]) * ours_s / m
                more: dict[str, float] = {}  # the paced phase, the workflow-task waits
                paced_sample: list[str] = []
                if pace:
                    more, paced_sample = await paced_phase(
                        env.client, tq, sessions, tmp, pace_cases or m, m, pace * m / ours_s
                    )
                    more["pace"] = pace
            results = [
                await env.client.get_workflow_handle(w, result_type=CaseResult).result()
                for w in wids[:50]
            ]
            assert all(r.outcome == "PAID_IN_FULL" for r in results), results[:3]
            waits: dict[str, list[float]] = {kind: [] for kind in TASKS}
            sample = history_sample(wids)
            per_case = await count_events(env.client, sample, waits)
            more |= wait_figures(waits) | {"wft_wait_cases": float(len(sample))}
            if pace:
                paced_waits: dict[str, list[float]] = {kind: [] for kind in TASKS}
                await count_events(env.client, paced_sample, paced_waits)
                more |= wait_figures(paced_waits, "_paced")
                more["wft_wait_cases_paced"] = float(len(paced_sample))

            # The baseline's sandbox as our cases' (--worker-env WORKER_SANDBOX=...).
            sandbox = {k: v for k, v in (tuning or {}).items() if k == "WORKER_SANDBOX"}
            trivial_s, trivial_cpu, trivial_case = await trivial_baseline(
                env.client,
                m,
                per_case,
                workers,
                {**wenv, **sandbox},
                len(rest_ms) + len(driver.query_ms),
            )
    finally:
        await env.shutdown()
    return {
        "cases_per_s": m / ours_s,
        "load_cases_per_s": m / load_s,
        **{f"cpu_ms_{k}": v for k, v in ours_cpu.items()},
        **{f"trivial_cpu_ms_{k}": v for k, v in trivial_cpu.items()},
        "activities_per_s": m * per_case["activities"] / ours_s,
        "wf_tasks_per_s": m * per_case["wf_tasks"] / ours_s,
        "trivial_per_s": m / trivial_s,
        "wall_ratio": trivial_s / ours_s,
        "ratio": orchestration_ratio(ours_cpu, trivial_cpu),
        "rest_query_p50": median(rest_ms),
        "rest_query_p95": pct(rest_ms, 0.95),
        "query_p50": median(driver.query_ms),
        "query_p95": pct(driver.query_ms, 0.95),
        "queries": len(driver.query_ms),
        "visit_p50": median(driver.visit_ms),
        "visit_p95": pct(driver.visit_ms, 0.95),
        "visits": len(driver.visit_ms),
        "update_p50": median(driver.update_ms),
        "update_p95": pct(driver.update_ms, 0.95),
        "rss_per_1000_mb": (parked - idle) / m * 1000 / 1024,
        "rss_idle_mb": idle / 1024,
        **{f"per_case_{k}": v for k, v in per_case.items()},
        **{f"trivial_case_{k}": v for k, v in trivial_case.items()},
        **more,
    }
