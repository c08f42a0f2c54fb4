"""The benchmark's collectors: the Driver sends each lifecycle case its human steps
(visit, plan, signature, payments) when the database's case projection shows it at that stage,
timing its Updates; and samples the status Query under that load.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from bench.harness import CONCURRENCY
from domain.models import (
    PaymentPosted,
    PlannedInstallment,
    PlanProposal,
    SignatureConfirmation,
    VisitReport,
)
from domain.money import split_evenly
from workflows.collection import LoanCollectionWorkflow as WF


@dataclass
class Driver:
    """Sends each case's human steps as soon as the database's case projection shows the
    case at the step's stage, as a collector's app would see it.

    What a step needs also comes from the database (collectors, debt and paid from the
    projection; the agreement's hash and installments). Earlier versions polled visibility
    (a list per stage twice a second): with 200 cases open that cost the dev server ~90 ms
    of CPU a round, a quarter of the server CPU the table charged to our cases, and it grows
    with the number of open cases. Reading the projection costs the Temporal server nothing.
    The status Query is sampled separately, twice a second, to measure its latency under load;
    and so is the visit-report Update: the visits of the `probes` cases are held back from the
    bursts the driver sends and sent one at a time, timed (`visit_ms`), as one collector's
    report reaches a busy back office. They are spread over the whole load, not sent in its
    first seconds (when every other case's visit is in flight): the k-th of n goes once the
    other cases have had k/n of their human steps sent, and at least `probe_every` seconds
    after the one before.
    """

    client: Client
    task_queue: str
    sessions: Any
    done: dict[str, set[str]] = field(default_factory=dict)
    query_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)  # each accepted Update, sent to done
    probes: set[str] = field(default_factory=set)  # workflow ids whose visit is a probe
    probe_every: float = 1.0
    total: int = 0  # cases driven (set by run)
    visit_ms: list[float] = field(default_factory=list)  # the probes' visits, one at a time
    ready: dict[str, dict[str, Any]] = field(default_factory=dict)  # probes at the visit
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)
    before: int = 0  # cases of the queue paid and completed before this driver's (a first phase)

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

    async def update(
        self, h: WorkflowHandle[Any, Any], update: Any, arg: Any, into: list[float]
    ) -> None:
        """A collector's Update, timed under the load (refused ones are not counted)."""
        t0 = time.perf_counter()
        await h.execute_update(update, arg)
        into.append((time.perf_counter() - t0) * 1000)

    async def step(
        self, stage: str, wid: str, facts: dict[str, Any], into: list[float] | None = None
    ) -> bool:
        """The human step for `stage`; True once it has been sent."""
        into = self.update_ms if into is None else into
        h = self.client.get_workflow_handle(wid)
        loan_no = wid.removeprefix("collection-")
        now = datetime.now(UTC)
        team: list[str] = facts["team"]
        collector = team[0] if team else ""
        try:
            if stage == "FIELD_VISIT":
                report = VisitReport("MET", team, now, "bench", "bench")
                await self.update(h, WF.report_visit, report, into)
            elif stage == "NEGOTIATION":
                items = [
                    PlannedInstallment(now + timedelta(minutes=20 * (k + 1)), a)
                    for k, a in enumerate(split_evenly(facts["outstanding"], 3))
                ]
                await self.update(h, WF.propose_plan, PlanProposal(items, collector), into)
            elif stage == "AGREEMENT_SIGNING":
                found = await asyncio.to_thread(self.agreement, loan_no)
                if found is None:
                    return False  # still rendering: next round
                version, sha, _ = found
                confirmation = SignatureConfirmation(version, sha, collector, now, "村委会")
                await self.update(h, WF.confirm_signature, confirmation, into)
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

    def progress(self) -> float:
        """The share of the other cases' human steps sent (the probes' own left out: they
        wait for the probes, which wait for this)."""
        others = self.total - len(self.probes)
        if others <= 0:
            return 1.0
        sent = sum(len(wids - self.probes) for wids in self.done.values())
        return sent / (others * len(STEPS))

    async def send_probes(self, stop: asyncio.Event, inflight: set[tuple[str, str]]) -> None:
        """The probes' visit reports, one at a time, spread over the load, each timed."""
        sent, n = 0, max(1, len(self.probes))
        while not stop.is_set():
            if self.ready and self.progress() >= sent / n:
                wid, facts = self.ready.popitem()
                if await self.step("FIELD_VISIT", wid, facts, self.visit_ms):
                    self.done.setdefault("FIELD_VISIT", set()).add(wid)
                inflight.discard(("FIELD_VISIT", wid))
                sent += 1
            await asyncio.sleep(self.probe_every)

    async def run(self, total: int) -> None:
        self.total = total
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
        prober = asyncio.create_task(self.send_probes(stop, inflight))
        while True:
            steps, paid = await asyncio.to_thread(self.projection)
            paid -= self.before
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
                if stage == "FIELD_VISIT" and wid in self.probes:
                    self.ready[wid] = facts  # for send_probes
                    continue
                t = asyncio.create_task(one(stage, wid, facts))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(sampler, prober, *tasks)
        # The projection says paid in full a moment before each case completes.
        base = f"TaskQueue='{self.task_queue}' AND ExecutionStatus='Completed'"
        while (await self.client.count_workflows(base)).count < self.before + total:
            await asyncio.sleep(0.2)


STEPS = ("FIELD_VISIT", "NEGOTIATION", "AGREEMENT_SIGNING", "FOLLOW_UP")
