"""The benchmark's report: the header (command, machine, date), one table row per figure as
each section finishes, and the markdown table at the end (printed, and written to --out).

Sections return their medians as plain dicts; how each figure is labelled, rounded and set
against its target is decided here, in one place.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# The figures `--json FILE` writes (issue 17's keys), each set by the section that measures
# it: lifecycle (orchestration_ratio, query_p95_under_load_ms, update_p95_under_load_ms: the
# first --workers count's, one worker by default), memory (memory_ratio_to_trivial,
# memory_mb_per_case, memory_trivial_mb_per_case; and memory_ratio_same_work, against the
# trivial workflow doing a parked case's Temporal work before it parks), render
# (render_ratio), actions (actions_per_case, actions_ratio), scale (scale_100k: an object,
# SCALE_KEYS, whatever --scale-cases was: its `cases` says how many), morning
# (morning_drain_ratio, and beside the keys morning_* figures: MORNING_KEYS). Null
# when that section did not run.
KEYS = (
    "orchestration_ratio",
    "render_ratio",
    "memory_ratio_to_trivial",
    "memory_mb_per_case",
    "memory_trivial_mb_per_case",
    "memory_ratio_same_work",
    "query_p95_under_load_ms",
    "update_p95_under_load_ms",
    "morning_drain_ratio",
    "scale_100k",
    "actions_per_case",
    "actions_ratio",
)
# scale_100k's keys (bench/scale.py).
SCALE_KEYS = (
    "intake_ratio",
    "list_p95_ms",
    "dashboard_p95_ms",
    "worker_rss_mb",
    "worker_cache_setting",
    "db_bytes_per_case",
    "wake_all_s",
    "cases",
)
# The lifecycle's figures beside the keys (the first --workers count's run): the
# paced phase's (--pace; null without it) and the workflow-task waits; by m's name.
PACED_KEYS = {
    "pace_cases_per_s": "pace_cases_per_s",
    "paced_cases_per_s": "paced_cases_per_s",
    "query_p50_paced_ms": "query_p50_paced",
    "query_p95_paced_ms": "query_p95_paced",
    "update_p50_paced_ms": "visit_p50_paced",
    "update_p95_paced_ms": "visit_p95_paced",
    "wft_wait_p50_paced_ms": "wft_wait_p50_paced",
    "wft_wait_p95_paced_ms": "wft_wait_p95_paced",
    "act_wait_p50_paced_ms": "act_wait_p50_paced",
    "act_wait_p95_paced_ms": "act_wait_p95_paced",
}
WAIT_KEYS = {
    "wft_wait_p50_ms": "wft_wait_p50",
    "wft_wait_p95_ms": "wft_wait_p95",
    "act_wait_p50_ms": "act_wait_p50",
    "act_wait_p95_ms": "act_wait_p95",
}
PARK = "INITIAL_CONTACT, first notice recorded"  # where bench/scale.py parks its cases


@dataclass
class Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=lambda: dict.fromkeys(KEYS))

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what}: {value} {note}", flush=True)

    def markdown(self) -> str:
        lines = ["| measure | median | note |", "| --- | ---: | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows]
        return "\n".join(lines)


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


def command() -> str:
    return f"python -m bench.run {' '.join(sys.argv[1:])}"


def header() -> None:
    print(f"command: {command()}")
    print(f"machine: {machine()}")
    print(f"date:    {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n", flush=True)


def finish(table: Table, out: str | None, json_out: str | None = None) -> None:
    """The table, printed; and written to `out` with the header, if given; the figures by
    key to `json_out`, if given."""
    print("\n" + table.markdown())
    if out:
        Path(out).write_text(
            f"command: `{command()}`  \nmachine: {machine()}  \n"
            f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n{table.markdown()}\n"
        )
    if json_out:
        meta = {
            "command": command(),
            "machine": machine(),
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "commit": commit(),
        }
        figures = {k: None if isinstance(v, float) and math.isnan(v) else v
                   for k, v in table.figures.items()}  # fmt: skip
        # A figure a run could not measure (NaN) is null, as JSON has no NaN.
        Path(json_out).write_text(json.dumps({**figures, "meta": meta}, indent=2) + "\n")


def commit() -> str | None:
    try:
        run = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return run.stdout.strip() or None


def fmt(v: float) -> str:
    return f"{v:,.1f}"


def intake(table: Table, m: dict[str, float], n: int, db: str) -> None:
    """Rows of the intake section and of the reads measured with its N cases open."""
    table.add(f"intake {n:,} loans ({db}): cases started/s", fmt(m["rows_per_s"]))
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


def orchestration_ratio(ours: dict[str, float], trivial: dict[str, float]) -> float:
    """Issue 17's orchestration_ratio from CPU ms per case (cpu_split's groups): the Temporal
    server's plus the workers' for the trivial case, over the same for ours. Our agreement
    render ("render": its own worker process) is left out: the trivial case renders nothing."""
    return (trivial["server"] + trivial["worker"]) / (ours["server"] + ours["worker"])


def lifecycle(
    table: Table,
    m: dict[str, float],
    cases: int,
    workers: int,
    apart: tuple[str, ...] = ("render",),
    nice: int = 0,
) -> None:
    """Rows of the lifecycle section with `workers` cases processes (and one process for
    each role `apart`, at niceness `nice`): throughput, CPU against the trivial workflow,
    the status Query at rest and under load, the visit Update under load, worker memory."""
    w = f"{workers} worker{'s' if workers > 1 else ''}"
    if apart:
        w += f" + {', '.join(apart)} apart" + (f" at nice {nice}" if nice else "")
    table.add(f"lifecycle {cases:,} cases, {w}: cases/s", fmt(m["cases_per_s"]))
    table.add(
        f"  activities/s, workflow tasks/s ({w})",
        f"{m['activities_per_s']:.0f}, {m['wf_tasks_per_s']:.0f}",
        f"per case: {m['per_case_activities']:.0f} activities, "
        f"{m['per_case_signals']:.0f} signals, {m['per_case_updates']:.0f} Updates, "
        f"{m['per_case_timers']:.0f} timers, {m['per_case_upserts']:.0f} upserts, "
        f"{m['per_case_wf_tasks']:.0f} workflow tasks, "
        f"{m['per_case_events']:.0f} events, {m['per_case_runs']:.1f} runs",
    )
    table.add(
        f"  trivial workflow, the same Temporal work ({w}): cases/s",
        fmt(m["trivial_per_s"]),
        f"wall-time ratio {m['wall_ratio']:.2f}; per case: "
        f"{m['trivial_case_wf_tasks']:.0f} workflow tasks, {m['trivial_case_events']:.0f} events",
    )
    table.add(
        f"  CPU per case, ours ({w}): server / workers / agreement render apart",
        f"{m['cpu_ms_server']:.0f} / {m['cpu_ms_worker']:.0f} / {m['cpu_ms_render']:.0f} ms",
        f"trivial: server {m['trivial_cpu_ms_server']:.0f} / worker "
        f"{m['trivial_cpu_ms_worker']:.0f} ms; of server + workers, idle polling over the "
        f"run's length: ours {m['cpu_ms_idle']:.0f}, trivial {m['trivial_cpu_ms_idle']:.0f} ms",
    )
    table.add(
        f"  orchestration ratio, CPU (server + workers) trivial / ours ({w})",
        f"{m['ratio']:.2f}",
        "target ≥ 0.7; the render left out",
    )
    table.add(
        f"  status Query, {cases} cases open, workers idle ({w}): p50 / p95",
        f"{m['rest_query_p50']:.0f} / {m['rest_query_p95']:.0f} ms",
        "target p95 < 100 ms",
    )
    table.add(
        f"  status Query under that load ({w}): p50 / p95",
        f"{m['query_p50']:.0f} / {m['query_p95']:.0f} ms",
        f"target p95 < 100 ms; {m['queries']:.0f} samples, "
        f"{m['load_cases_per_s']:.1f} cases/s meanwhile",
    )
    table.add(
        f"  visit-report Update under that load, one at a time ({w}): p50 / p95",
        f"{m['visit_p50']:.0f} / {m['visit_p95']:.0f} ms",
        f"target p95 < 300 ms; {m['visits']:.0f} probes",
    )
    table.add(
        f"  collectors' Updates (visit, plan, signature) sent 50 at a time ({w}): p50 / p95",
        f"{m['update_p50']:.0f} / {m['update_p95']:.0f} ms",
        "accepted ones",
    )
    table.add(
        f"  worker RSS per 1,000 open cases ({w})",
        f"{m['rss_per_1000_mb']:.0f} MB",
        f"{cases} parked in FIELD_VISIT; idle worker {m['rss_idle_mb']:.0f} MB",
    )
    if "wft_wait_p50" in m:
        table.add(
            f"  workflow-task wait, scheduled → started, flat out ({w}): p50 / p95",
            f"{m['wft_wait_p50']:.0f} / {m['wft_wait_p95']:.0f} ms",
            f"{m['wft_waits']:.0f} workflow tasks of a sample of {m['wft_wait_cases']:.0f} "
            "cases' histories: the floor under the Query's and the Update's wait; activity "
            f"tasks {m['act_wait_p50']:.0f} / {m['act_wait_p95']:.0f} ms",
        )
    if "pace" in m:
        paced(table, m, w)
    if table.figures["orchestration_ratio"] is None:  # the first --workers count's run
        table.figures["orchestration_ratio"] = m["ratio"]
        table.figures["query_p95_under_load_ms"] = m["query_p95"]
        table.figures["update_p95_under_load_ms"] = m["visit_p95"]
        for key, name in {**WAIT_KEYS, **PACED_KEYS}.items():
            table.figures[key] = m.get(name)


def paced(table: Table, m: dict[str, float], w: str) -> None:
    """Rows of the lifecycle's paced phase (--pace): cases started at a fraction of the
    flat-out throughput, the status Query and the visit Update sampled as flat out."""
    load = (
        f"{m['paced_cases']:.0f} more cases started at {m['pace_cases_per_s']:.2f}/s "
        f"({m['pace'] * 100:.0f} % of the flat-out {m['cases_per_s']:.2f}/s)"
    )
    table.add(
        f"  paced: {load} ({w}): cases/s achieved",
        f"{m['paced_cases_per_s']:.2f}",
        "first start to last case closed",
    )
    table.add(
        f"  status Query, paced ({w}): p50 / p95",
        f"{m['query_p50_paced']:.0f} / {m['query_p95_paced']:.0f} ms",
        f"target p95 < 100 ms; {m['queries_paced']:.0f} samples",
    )
    table.add(
        f"  visit-report Update, paced, one at a time ({w}): p50 / p95",
        f"{m['visit_p50_paced']:.0f} / {m['visit_p95_paced']:.0f} ms",
        f"target p95 < 300 ms; {m['visits_paced']:.0f} probes",
    )
    table.add(
        f"  collectors' Updates (visit, plan, signature), paced ({w}): p50 / p95",
        f"{m['update_p50_paced']:.0f} / {m['update_p95_paced']:.0f} ms",
        "accepted ones, sent as the cases reach them",
    )
    table.add(
        f"  workflow-task wait, scheduled → started, paced ({w}): p50 / p95",
        f"{m['wft_wait_p50_paced']:.0f} / {m['wft_wait_p95_paced']:.0f} ms",
        f"{m['wft_waits_paced']:.0f} workflow tasks of a sample of "
        f"{m['wft_wait_cases_paced']:.0f} cases' histories; activity tasks "
        f"{m['act_wait_p50_paced']:.0f} / {m['act_wait_p95_paced']:.0f} ms",
    )


def memory(table: Table, m: dict[str, float], cases: int) -> None:
    """Rows of the memory section: one worker's RSS per cached open case, against the
    trivial workflow's in a worker with the same settings; with --memory-split the worker
    runs the cases' workflows only and the activities process's growth has a row."""
    split = "activities_growth_mb" in m
    which = "workflows-only worker, activities in another" if split else "1 worker"
    table.add(
        f"worker RSS per cached open case, {cases:,} parked in FIELD_VISIT ({which})",
        f"{m['mb_per_case'] * 1024:.0f} KB",
        f"idle worker {m['idle_mb']:.0f} MB",
    )
    if split:
        table.add(
            "  the activities process (cases role's activities, render, sms): RSS growth",
            f"{m['activities_growth_mb']:.0f} MB",
            f"idle {m['activities_idle_mb']:.0f} MB; not per cached case",
        )
    table.add(
        f"  trivial workflow, {cases:,} parked on a signal (same cache size, sandboxed)",
        f"{m['trivial_mb_per_case'] * 1024:.0f} KB",
        f"idle worker {m['trivial_idle_mb']:.0f} MB",
    )
    table.add("  memory ratio to the trivial workflow", f"{m['ratio']:.2f}", "target ≤ 2.0")
    if "ratio_same_work" in m:
        table.add(
            f"  trivial workflow doing a parked case's Temporal work first "
            f"({m['same_work_activities']:.0f} activities, {m['same_work_timers']:.0f} timers, "
            f"{m['same_work_upserts']:.0f} upserts; the case's history: "
            f"{m['events_parked']:.0f} events)",
            f"{m['same_work_mb_per_case'] * 1024:.0f} KB",
            "then parked on a signal",
        )
        table.add(
            "  memory ratio to the trivial workflow doing the same work",
            f"{m['ratio_same_work']:.2f}",
            "as orchestration_ratio's baseline",
        )
        table.figures["memory_ratio_same_work"] = m["ratio_same_work"]
    table.figures["memory_ratio_to_trivial"] = m["ratio"]
    table.figures["memory_mb_per_case"] = m["mb_per_case"]
    table.figures["memory_trivial_mb_per_case"] = m["trivial_mb_per_case"]


def skipping(table: Table, m: dict[str, float]) -> None:
    table.add(
        "time-skipping: one 12-installment case, wall: a worker's first case / later cases",
        f"{m['wall_12_cold']:.2f} / {m['wall_12']:.2f} s",
        "target < 1 s",
    )
    table.add(
        "24-installment case: runs; events in the first run; most events in a run",
        f"{m['runs_24']:.0f}; {m['first_run_24']:.0f}; {m['most_events_24']:.0f}",
    )


def render(table: Table, m: dict[str, float]) -> None:
    """render_ratio is WeasyPrint's default CPU per agreement over ours, the direction of the
    orchestration ratio (the baseline's cost over ours): ≥ 0.9 says ours costs at most about
    1.1 times what WeasyPrint costs by default."""
    ratio = m["default_ms"] / m["ours_ms"]
    table.add(
        "agreement PDF (6 installments), CPU in one process: as the worker renders / "
        "WeasyPrint's default",
        f"{m['ours_ms']:.0f} / {m['default_ms']:.0f} ms",
        f"render_ratio (default / ours) {ratio:.2f}, target ≥ 0.9; {m['kb']:.0f} KB; "
        "identical bytes",
    )
    table.figures["render_ratio"] = ratio


def actions(table: Table, m: dict[str, float]) -> None:
    """Temporal Cloud's billable Actions of one 12-installment case (bench/actions.py)."""
    from bench.actions import KINDS, LIST_PRICE_PER_MILLION_USD, cost_per_10k_cases

    kinds = ", ".join(f"{k} {m[f'actions_{k}']:.0f}" for k in KINDS if m[f"actions_{k}"])
    table.add(
        "Temporal Cloud Actions, one 12-installment case (all runs)",
        f"{m['actions_per_case']:.0f}",
        f"runs {m['actions_runs']:.0f}; {kinds}",
    )
    table.add(
        "  trivial workflow, same activities and messages: Actions",
        f"{m['actions_baseline']:.0f}",
    )
    table.add(
        "  Actions ratio to the trivial workflow", f"{m['actions_ratio']:.2f}", "target ≤ 1.3"
    )
    table.add(
        "  Actions cost of 10,000 such cases (list price)",
        f"${cost_per_10k_cases(m['actions_per_case']):,.2f}",
        f"${LIST_PRICE_PER_MILLION_USD:.0f} per million Actions; plan fee and storage apart",
    )
    table.figures["actions_per_case"] = m["actions_per_case"]
    table.figures["actions_ratio"] = m["actions_ratio"]


# The morning section's figures beside morning_drain_ratio (only in a file where it ran).
MORNING_KEYS = {
    "morning_messages": "messages",
    "morning_rate": "rate",
    "morning_drain_s": "drain_s",
    "morning_429s": "refused_429",
    "morning_outside_window": "outside_window",
    "morning_duplicates": "duplicates",
    "morning_dpd_order": "dpd_order",
}


def morning(table: Table, m: dict[str, float]) -> None:
    """The 08:00 wave (bench/morning.py): drain time against N / rate, refusals, order."""
    n, rate = m["messages"], m["rate"]
    table.add(
        f"morning wave: {m['cases']:,.0f} first notices at {rate:g}/s: sent, drain from the "
        "window's opening",
        f"{n:,.0f} in {m['drain_s']:.1f} s",
        f"N / rate = {n / rate:.1f} s; first after {m['first_s']:.1f} s; every case waited "
        f"{m['parked_s']:.0f} s after the first start (opening at {m['lead_s']:.0f}+ s)",
    )
    table.add("  drain ratio (N / rate) / drain", f"{m['ratio']:.2f}", "target ≥ 0.9")
    table.add(
        "  provider 429s; sent outside the window; sent twice",
        f"{m['refused_429']:.0f}; {m['outside_window']:.0f}; {m['duplicates']:.0f}",
        "target 0; 0; 0",
    )
    table.add(
        "  pairs of different DPD bands sent in band order (≥90, ≥60, ≥30, less)",
        f"{m['dpd_order']:.3f}",
        "1.0: every more overdue band first",
    )
    table.figures["morning_drain_ratio"] = m["ratio"]
    for key, name in MORNING_KEYS.items():
        table.figures[key] = m[name]


def morning_short(table: Table, m: dict[str, float]) -> None:
    """The wave in a window that holds about half of it: who went inside it."""
    bands = " / ".join(f"{m[f'band{b}_sent'] * 100:.0f} %" for b in range(1, 5))
    table.add(
        f"  short window ({m['window_s'] / 60:.0f} min at {m['rate']:g}/s, "
        f"{m['cases']:,.0f} notices): sent inside it, by DPD band ≥90 / ≥60 / ≥30 / less",
        bands,
        f"{m['messages']:,.0f} sent; {m['outside_window']:.0f} after it closed; "
        f"{m['refused_429']:.0f} 429s; the rest wait for the next window",
    )
    table.figures["morning_short_band_sent"] = [m[f"band{b}_sent"] for b in range(1, 5)]
    table.figures["morning_short_outside_window"] = m["outside_window"]


def scale(table: Table, m: dict[str, float]) -> None:
    """N open cases on a server persisting to a SQLite file (bench/scale.py)."""
    n, cache, w = int(m["cases"]), int(m["cache"]), int(m["workers"])
    ws = f"{w} worker{'s' if w > 1 else ''}"
    table.add(f"scale, {n:,} cases: intake cases started/s", fmt(m["rows_per_s"]), "no worker")
    table.add(
        f"  bare start_workflow loop, {int(m['bare_n']):,} trivial: starts/s",
        fmt(m["bare_per_s"]),
        "run first, on the same server, same concurrency",
    )
    table.add(f"  intake ratio to the bare loop ({n:,} cases)", f"{m['ratio']:.2f}", "target ≥ 0.8")
    table.add(
        f"  park: {n:,} cases to {PARK} ({ws}, cache {cache:,})",
        f"{m['park_s']:,.0f} s",
        f"CPU per case: server {m['cpu_ms_park_server']:.0f} / workers "
        f"{m['cpu_ms_park_worker']:.0f} ms; intake {m['cpu_ms_intake']:.0f} ms",
    )
    table.add(
        f"  visibility list by stage, first page, {n:,} open: p50 / p95",
        f"{m['list_p50']:.0f} / {m['list_p95']:.0f} ms",
        "target p95 < 300 ms",
    )
    table.add(
        "  counts per stage (11 count queries): p50 / p95",
        f"{m['counts_p50']:.0f} / {m['counts_p95']:.0f} ms",
    )
    table.add(
        f"  dashboard page (HTML), {n:,} open: p50 / p95",
        f"{m['page_p50']:.0f} / {m['page_p95']:.0f} ms",
        f"target p95 < 300 ms; JSON {m['json_p50']:.0f} / {m['json_p95']:.0f} ms",
    )
    table.add(
        f"  worker RSS, highest of one process ({ws}, WORKER_MAX_CACHED_WORKFLOWS={cache:,})",
        f"{m['rss_peak_mb']:.0f} MB",
        f"3 s after start {m['rss_idle_mb']:.0f} MB, parked and quiet {m['rss_parked_mb']:.0f} MB; "
        "bounded by the cache, not by the cases",
    )
    where = "history and visibility" if m["db_visibility"] else "history (visibility apart)"
    table.add(
        "  server database (SQLite file) per case",
        f"{m['db_bytes_per_case'] / 1024:,.1f} KB",
        f"{where}: the file's growth over the intake and the park, over the cases; "
        f"{m['db_bytes_total'] / 2**20:,.0f} MB after the wake",
    )
    table.add(
        f"  wake every case, workers restarted cold ({ws}): s",
        f"{m['wake_s']:,.1f}",
        f"the next day's export told first, workers down ({m['tell_s']:,.0f} s); "
        f"CPU per case {m['cpu_ms_wake']:.0f} ms",
    )
    table.figures["scale_100k"] = {
        "intake_ratio": m["ratio"],
        "list_p95_ms": m["list_p95"],
        "dashboard_p95_ms": m["page_p95"],
        "worker_rss_mb": m["rss_peak_mb"],
        "worker_cache_setting": cache,
        "db_bytes_per_case": m["db_bytes_per_case"],
        "wake_all_s": m["wake_s"],
        "cases": n,
    }
