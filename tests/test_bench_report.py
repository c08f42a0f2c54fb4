"""`python -m bench.run --json FILE` (issue 17): every figure a section that ran measures is
in the file, and only those; the sections' results are made up here (no benchmark runs).
And what the lifecycle's orchestration_ratio rests on: the ratio leaves the render out, and
the trivial baseline does the Temporal work it is told a case does."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from temporalio.api.history.v1 import HistoryEvent

from bench import report
from bench.actions import KINDS
from bench.driver import STEPS, Driver
from bench.harness import pace_offsets, paced
from bench.lifecycle import count_events, probe_count, task_waits, trivial_input, wait_figures
from bench.trivial import TrivialWorkflow
from bench.trivial import worker as trivial_worker

LIFECYCLE = {
    "cases_per_s": 2.0,
    "load_cases_per_s": 2.2,
    "activities_per_s": 50.0,
    "wf_tasks_per_s": 60.0,
    "per_case_activities": 24.0,
    "per_case_signals": 3.0,
    "per_case_updates": 3.0,
    "per_case_timers": 10.0,
    "per_case_upserts": 12.0,
    "per_case_wf_tasks": 29.0,
    "per_case_events": 198.0,
    "per_case_runs": 2.0,
    "trivial_case_wf_tasks": 20.0,
    "trivial_case_events": 150.0,
    "trivial_per_s": 6.0,
    "wall_ratio": 0.33,
    "ratio": 0.35,
    "cpu_ms_server": 300.0,
    "cpu_ms_worker": 310.0,
    "cpu_ms_render": 190.0,
    "trivial_cpu_ms_server": 180.0,
    "trivial_cpu_ms_worker": 100.0,
    "cpu_ms_idle": 12.0,
    "trivial_cpu_ms_idle": 4.0,
    "rest_query_p50": 7.0,
    "rest_query_p95": 10.0,
    "query_p50": 38.0,
    "query_p95": 412.0,
    "queries": 300.0,
    "visit_p50": 90.0,
    "visit_p95": 280.0,
    "visits": 40.0,
    "update_p50": 55.0,
    "update_p95": 640.0,
    "rss_per_1000_mb": 577.0,
    "rss_idle_mb": 262.0,
    "wft_wait_p50": 4.0,
    "wft_wait_p95": 900.0,
    "wft_waits": 580.0,
    "act_wait_p50": 6.0,
    "act_wait_p95": 700.0,
    "act_waits": 480.0,
    "wft_wait_cases": 20.0,
}
PACED = {
    "pace": 0.8,
    "pace_cases_per_s": 1.6,
    "paced_cases_per_s": 1.5,
    "paced_cases": 1000.0,
    "query_p50_paced": 20.0,
    "query_p95_paced": 90.0,
    "queries_paced": 1200.0,
    "visit_p50_paced": 110.0,
    "visit_p95_paced": 250.0,
    "visits_paced": 200.0,
    "update_p50_paced": 100.0,
    "update_p95_paced": 240.0,
    "wft_wait_p50_paced": 3.0,
    "wft_wait_p95_paced": 40.0,
    "wft_waits_paced": 570.0,
    "act_wait_p50_paced": 5.0,
    "act_wait_p95_paced": 30.0,
    "act_waits_paced": 480.0,
    "wft_wait_cases_paced": 20.0,
}
RENDER = {"ours_ms": 200.0, "default_ms": 500.0, "kb": 40.0}
ACTIONS = {
    **{f"actions_{k}": 1.0 for k in KINDS},
    "actions_per_case": 101.0,
    "actions_runs": 1.0,
    "actions_baseline": 53.0,
    "actions_ratio": 1.91,
}
MORNING = {
    "messages": 1000.0,
    "cases": 1000.0,
    "rate": 20.0,
    "drain_s": 52.0,
    "ratio": 1000 / 20 / 52,
    "first_s": 0.4,
    "refused_429": 0.0,
    "outside_window": 0.0,
    "duplicates": 0.0,
    "dpd_order": 0.998,
    **{f"band{b}_sent": 1.0 for b in range(1, 5)},
    "parked_s": 80.0,
    "lead_s": 200.0,
}
SHORT = {**MORNING, "messages": 500.0, "rate": 8.3, "window_s": 60.0, "band1_sent": 1.0}
SHORT.update(band2_sent=0.4, band3_sent=0.0, band4_sent=0.0)
SCALE = {
    "cases": 5000.0,
    "rows_per_s": 150.0,
    "bare_n": 5000.0,
    "bare_per_s": 170.0,
    "ratio": 0.88,
    "park_s": 900.0,
    "rss_idle_mb": 130.0,
    "rss_parked_mb": 600.0,
    "rss_peak_mb": 640.0,
    "cache": 1000.0,
    "workers": 1.0,
    "db_bytes_per_case": 40_000.0,
    "db_bytes_total": 3e8,
    "db_visibility": 1.0,
    "tell_s": 60.0,
    "wake_s": 420.0,
    "cpu_ms_intake": 10.0,
    "cpu_ms_park_server": 100.0,
    "cpu_ms_park_worker": 120.0,
    "cpu_ms_tell": 9.0,
    "cpu_ms_wake": 40.0,
    "list_p50": 40.0,
    "list_p95": 80.0,
    "counts_p50": 30.0,
    "counts_p95": 35.0,
    "page_p50": 150.0,
    "page_p95": 210.0,
    "json_p50": 140.0,
    "json_p95": 190.0,
}
MEMORY = {
    "mb_per_case": 0.3,
    "trivial_mb_per_case": 0.15,
    "ratio": 2.0,
    "idle_mb": 130.0,
    "trivial_idle_mb": 40.0,
}
SAME_WORK = {  # other figures than MEMORY's: a row or key that took the bare baseline's shows
    "same_work_mb_per_case": 0.25,
    "ratio_same_work": 1.2,
    "events_parked": 45.0,
    "same_work_activities": 8.0,
    "same_work_timers": 3.0,
    "same_work_upserts": 2.0,
}
UNMEASURED: set[str] = set()


def written(table: report.Table, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "figures.json"
    report.finish(table, None, str(out))
    return json.loads(out.read_text())


def test_every_key_a_section_measured_is_in_the_json(tmp_path: Path) -> None:
    table = report.Table()
    report.lifecycle(table, LIFECYCLE, 1000, 1)
    later = {**LIFECYCLE, "ratio": 0.5, "query_p95": 1.0, "visit_p95": 2.0}
    report.lifecycle(table, later, 1000, 2, ("render", "sms"), 10)
    report.memory(table, {**MEMORY, **SAME_WORK}, 1000)
    report.render(table, RENDER)
    report.actions(table, ACTIONS)
    report.morning(table, MORNING)
    report.morning_short(table, SHORT)
    report.scale(table, SCALE)
    figures = written(table, tmp_path)
    assert figures["orchestration_ratio"] == 0.35  # the first --workers count's run
    assert figures["query_p95_under_load_ms"] == 412.0
    # The visit report sent one at a time under the load, not the driver's bursts of 50.
    assert figures["update_p95_under_load_ms"] == 280.0
    assert figures["render_ratio"] == 2.5  # WeasyPrint's default 500 ms over ours 200 ms
    assert figures["actions_per_case"] == 101.0 and figures["actions_ratio"] == 1.91
    assert figures["memory_ratio_to_trivial"] == 2.0
    assert figures["memory_mb_per_case"] == 0.3
    assert figures["memory_trivial_mb_per_case"] == 0.15
    assert figures["memory_ratio_same_work"] == 1.2
    assert figures["morning_drain_ratio"] == MORNING["ratio"]
    assert (figures["morning_429s"], figures["morning_dpd_order"]) == (0.0, 0.998)
    assert figures["morning_short_band_sent"] == [1.0, 0.4, 0.0, 0.0]
    # The rest: no section measures them.
    assert {k for k in report.KEYS if figures[k] is None} == UNMEASURED
    assert figures["meta"]["command"].startswith("python -m bench.run")  # type: ignore[index]


def test_the_split_memory_run_says_what_its_worker_ran() -> None:
    """--memory-split: the measured worker is named workflows-only, and the activities
    process's growth has a row of its own, not counted per cached case."""
    table = report.Table()
    report.memory(table, {**MEMORY, "activities_idle_mb": 140.0, "activities_growth_mb": 30.0}, 300)
    assert "(workflows-only worker, activities in another)" in table.rows[0][0]
    assert table.rows[1][1:] == ("30 MB", "idle 140 MB; not per cached case")
    assert table.figures["memory_ratio_to_trivial"] == 2.0
    single = report.Table()
    report.memory(single, MEMORY, 300)
    assert "(1 worker)" in single.rows[0][0] and len(single.rows) == 3


def test_the_memory_run_compares_with_a_trivial_workflow_doing_the_same_work() -> None:
    """Beside the bare trivial workflow, one that did a parked case's Temporal work first
    (its history as long): its row says what it did, and its ratio has a key of its own."""
    table = report.Table()
    report.memory(table, {**MEMORY, **SAME_WORK}, 300)
    rows = {what.strip(): (value, note) for what, value, note in table.rows}
    doing = next(w for w in rows if w.startswith("trivial workflow doing"))
    assert "8 activities, 3 timers, 2 upserts; the case's history: 45 events" in doing
    assert rows[doing][0] == "256 KB"
    assert rows["memory ratio to the trivial workflow doing the same work"][0] == "1.20"
    assert table.figures["memory_ratio_same_work"] == 1.2
    assert table.figures["memory_ratio_to_trivial"] == MEMORY["ratio"]


def test_a_section_that_did_not_run_leaves_its_keys_null(tmp_path: Path) -> None:
    table = report.Table()
    report.render(table, RENDER)
    figures = written(table, tmp_path)
    assert figures["render_ratio"] == 2.5  # WeasyPrint's default 500 ms over ours 200 ms
    assert {k for k in report.KEYS if figures[k] is None} == set(report.KEYS) - {"render_ratio"}


def test_the_scale_section_writes_one_object_with_its_figures(tmp_path: Path) -> None:
    table = report.Table()
    report.scale(table, SCALE)
    figures = written(table, tmp_path)
    assert figures["scale_100k"] == {
        "intake_ratio": 0.88,
        "list_p95_ms": 80.0,
        "dashboard_p95_ms": 210.0,  # the HTML page's
        "worker_rss_mb": 640.0,  # the highest of one worker process
        "worker_cache_setting": 1000,
        "db_bytes_per_case": 40_000.0,
        "wake_all_s": 420.0,
        "cases": 5000,  # the size it ran at: 100,000 only when --scale-cases says so
    }
    assert set(figures["scale_100k"]) == set(report.SCALE_KEYS)  # type: ignore[arg-type]
    assert {k for k in report.KEYS if figures[k] is None} == set(report.KEYS) - {"scale_100k"}


def test_the_orchestration_ratio_leaves_the_render_out() -> None:
    ours = {"server": 300.0, "worker": 260.0, "render": 190.0}
    trivial = {"server": 180.0, "worker": 100.0}
    assert report.orchestration_ratio(ours, trivial) == 0.5
    assert report.orchestration_ratio({**ours, "render": 5000.0}, trivial) == 0.5


async def test_the_trivial_workflow_does_a_cases_temporal_work(env) -> None:  # type: ignore[no-untyped-def]
    """The baseline's history holds as many activities, signals, Updates, timers and upserts
    as the case counts it was given (what count_events counts in our cases' histories)."""
    counted = {"activities": 3, "signals": 2, "updates": 2, "timers": 4, "upserts": 5}
    inp = trivial_input({k: float(v) for k, v in counted.items()})
    tq = f"trivial-{uuid.uuid4().hex[:6]}"
    async with trivial_worker(env.client, tq):
        h = await env.client.start_workflow(TrivialWorkflow.run, inp, id=tq, task_queue=tq)
        for _ in range(inp.signals):
            await h.signal(TrivialWorkflow.poke)
        for _ in range(inp.updates):
            await h.execute_update(TrivialWorkflow.touch)
        assert await h.result() == 3
    per_case = await count_events(env.client, [tq])
    assert {k: per_case[k] for k in counted} == counted
    assert per_case["runs"] == 1


def test_at_least_thirty_visit_reports_are_timed_and_never_every_case() -> None:
    assert probe_count(100) == 30 and probe_count(200) == 40 and probe_count(1000) == 200
    assert probe_count(10) == 5 and probe_count(1) == 1


class SteppedDriver(Driver):
    """The probes' Update replaced by a note of how far the other cases were when it went."""

    sent_at: list[float]

    async def step(self, stage, wid, facts, into=None):  # type: ignore[no-untyped-def]
        self.sent_at.append(self.progress())
        return True


async def test_the_timed_visit_reports_are_spread_over_the_load() -> None:
    """The k-th of n probes goes once the other cases have had k/n of their steps sent: not
    all in the first seconds, when every other visit is in flight."""
    probes = {"p1", "p2", "p3", "p4"}
    driver = SteppedDriver(None, "tq", None, probes=probes, probe_every=0.01)  # type: ignore[arg-type]
    driver.sent_at, driver.total = [], 8  # four others, four steps each: 16 steps
    driver.ready = {p: {} for p in sorted(probes)}
    stop = asyncio.Event()
    prober = asyncio.create_task(driver.send_probes(stop, set()))
    for n, stage in enumerate(STEPS):
        await asyncio.sleep(0.3)  # thirty rounds of the prober
        assert len(driver.sent_at) == n + 1  # one probe a quarter of the load, not more
        driver.done[stage] = {"o1", "o2", "o3", "o4"}  # the others' next step, all four
    await asyncio.sleep(0.1)
    stop.set()
    await prober
    assert driver.sent_at == [0.0, 0.25, 0.5, 0.75]


def test_the_paced_phase_has_keys_of_its_own_and_leaves_the_flat_out_ones(
    tmp_path: Path,
) -> None:
    table = report.Table()
    report.lifecycle(table, {**LIFECYCLE, **PACED}, 1000, 1)
    figures = written(table, tmp_path)
    # Flat out: as before, the visit probes' p95 under the driver's full load.
    assert figures["query_p95_under_load_ms"] == 412.0
    assert figures["update_p95_under_load_ms"] == 280.0
    assert (figures["wft_wait_p50_ms"], figures["wft_wait_p95_ms"]) == (4.0, 900.0)
    # Paced: the visit probes again (not the driver's own Updates), and the pace.
    assert (figures["query_p50_paced_ms"], figures["query_p95_paced_ms"]) == (20.0, 90.0)
    assert (figures["update_p50_paced_ms"], figures["update_p95_paced_ms"]) == (110.0, 250.0)
    assert figures["pace_cases_per_s"] == 1.6 and figures["paced_cases_per_s"] == 1.5
    assert (figures["wft_wait_p50_paced_ms"], figures["wft_wait_p95_paced_ms"]) == (3.0, 40.0)
    assert (figures["act_wait_p50_paced_ms"], figures["act_wait_p95_paced_ms"]) == (5.0, 30.0)
    assert any("paced" in what and "250 ms" in value for what, value, _ in table.rows)


def test_without_pace_the_paced_keys_are_null(tmp_path: Path) -> None:
    table = report.Table()
    report.lifecycle(table, LIFECYCLE, 1000, 1)
    figures = written(table, tmp_path)
    assert all(figures[k] is None for k in report.PACED_KEYS)
    assert figures["wft_wait_p95_ms"] == 900.0
    assert not any("paced" in what for what, _, _ in table.rows)


def event(event_id: int, ms: int, kind: str, scheduled: int = 0) -> HistoryEvent:
    e = HistoryEvent(event_id=event_id)
    e.event_time.FromMilliseconds(1_700_000_000_000 + ms)
    if kind == "wft scheduled":
        e.workflow_task_scheduled_event_attributes.SetInParent()
    elif kind == "wft started":
        e.workflow_task_started_event_attributes.scheduled_event_id = scheduled
    elif kind == "act scheduled":
        e.activity_task_scheduled_event_attributes.activity_id = "1"
    elif kind == "act started":
        e.activity_task_started_event_attributes.scheduled_event_id = scheduled
    else:
        e.timer_started_event_attributes.timer_id = "1"
    return e


def test_a_tasks_wait_runs_from_its_scheduled_to_its_started_event() -> None:
    events = [
        event(1, 0, "wft scheduled"),
        event(2, 40, "wft started", scheduled=1),
        event(3, 60, "act scheduled"),
        event(4, 100, "wft scheduled"),  # timed out, never started: no wait
        event(5, 115, "act started", scheduled=3),
        event(6, 80, "timer"),
        event(7, 1100, "wft scheduled"),
        event(8, 1350, "wft started", scheduled=7),
        event(9, 1400, "wft started", scheduled=99),  # its scheduled event not in this history
    ]
    assert task_waits(events) == {"wft": [40.0, 250.0], "act": [55.0]}


def test_the_wait_figures_are_the_median_and_the_95th_percentile() -> None:
    waits = [float(x) for x in range(1, 101)]  # 1 .. 100 ms
    figures = wait_figures({"wft": waits, "act": []}, "_paced")
    assert figures["wft_wait_p50_paced"] == 50.5
    assert figures["wft_wait_p95_paced"] == 95.0
    assert figures["wft_waits_paced"] == 100.0
    assert figures["act_waits_paced"] == 0
    assert figures["act_wait_p95_paced"] != figures["act_wait_p95_paced"]  # NaN: none


def test_pacing_starts_at_a_steady_rate() -> None:
    assert pace_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert pace_offsets(3, 0.8 * 1.25) == [0.0, 1.0, 2.0]  # 80 % of 1.25 cases/s


async def test_a_slow_start_does_not_hold_back_the_next_one() -> None:
    """Open loop: each start goes at its time, whatever the ones before still wait for."""
    started: list[float] = []
    t0 = time.perf_counter()

    async def start(i: int) -> None:
        started.append(time.perf_counter() - t0)
        await asyncio.sleep(0.5 if i == 0 else 0)  # the first start is slow

    await paced([0, 1, 2, 3], start, 20.0)  # one every 50 ms
    assert len(started) == 4
    assert started[3] < 0.4  # not after the first one's 0.5 s
    assert all(b - a > 0.03 for a, b in zip(started, started[1:], strict=False))


async def test_a_second_phases_driver_waits_for_its_own_cases_not_the_first_ones() -> None:
    """Paid and completed cases of the queue counted from `before` on: a driver of 2 more
    cases after 3 does not stop when 4 are paid, only when 5 are, and completed."""
    rounds = iter([([], 4), ([], 5)])
    calls: list[int] = []

    async def count_workflows(query: str) -> SimpleNamespace:
        calls.append(1)
        return SimpleNamespace(count=5)

    client = SimpleNamespace(count_workflows=count_workflows)
    driver = Driver(client, "tq", None)  # type: ignore[arg-type]
    driver.before = 3
    driver.projection = lambda: next(rounds)  # type: ignore[method-assign]
    await driver.run(2)
    assert next(rounds, None) is None  # both rounds read: it did not stop at 4
    assert calls  # and it waited for the completions


def test_a_run_that_could_not_measure_a_figure_is_left_out_of_its_median(
    tmp_path: Path,
) -> None:
    """A NaN (a baseline that did not grow) neither decides nor poisons the median across
    --runs, whatever its place; the JSON says null for a figure no run measured."""
    from bench.harness import medians

    nan = float("nan")
    for runs in ([nan, 3.0, 1.0], [3.0, nan, 1.0], [3.0, 1.0, nan]):
        assert medians([{"ratio": r, "other": 1.0} for r in runs]) == {"ratio": 2.0, "other": 1.0}
    assert math.isnan(medians([{"ratio": nan}, {"ratio": nan}])["ratio"])
    table = report.Table()
    report.memory(table, {**MEMORY, "ratio": nan}, 300)
    assert written(table, tmp_path)["memory_ratio_to_trivial"] is None
