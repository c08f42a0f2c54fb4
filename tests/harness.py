"""Driving real cases in tests: a worker with the real activities on a test database."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.sms_gateway import SmsGateway
from db.seed import LoanSpec, add_loan
from domain.models import CaseResult, CaseStatus, PaymentPosted
from domain.policy import Policy, fast_policy
from service.case_start import start_case
from service.converter import DATA_CONVERTER
from service.sandbox_code import STRICT
from service.worker_factory import build_worker
from workflows.collection import LoanCollectionWorkflow

# Quiet hours off and generous caps: tests about other rules must not wait for the morning.
OPEN_POLICY = Policy().with_overrides(
    {
        "quiet_start": "00:00",
        "quiet_end": "00:00",
        "ruleset": "test-open",  # not cba-2026: its window is open at any hour of the test clock
        "contact_window_start": "00:00",
        "contact_window_end": "00:00",
        "sms_per_day": 20,
        "sms_per_week": 100,
    }
)

_counter = 0


def loan_spec(**overrides: object) -> LoanSpec:
    """A loan of 10,000.00 yuan debt (9,000 principal, 800 interest, 200 penalty)."""
    global _counter
    _counter += 1
    values: dict[str, object] = dict(
        loan_no=f"T{uuid.uuid4().hex[:8].upper()}{_counter:03d}",
        branch="QX01",
        id_number=f"52240119800101{_counter:04d}",
        name="王建国",
        phone="+8613912345678",
        principal_fen=2_000_000,
        outstanding_principal_fen=900_000,
        interest_fen=80_000,
        penalty_fen=20_000,
        # Days past due count in the borrower's calendar, not the test machine's.
        overdue_since=datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=40),
        monthly_income_fen=300_000,
    )
    values.update(overrides)
    return LoanSpec(**values)  # type: ignore[arg-type]


@dataclass
class Harness:
    env: WorkflowEnvironment
    client: Client
    task_queue: str
    sessions: sessionmaker[Session]
    data_dir: Path
    # A policy "day": a real day on the time-skipping server, a second on the dev server.
    day: timedelta = timedelta(days=1)
    policy: Policy = field(default_factory=lambda: OPEN_POLICY)
    started: list[WorkflowHandle] = field(default_factory=list)

    @property
    def skips_time(self) -> bool:
        return self.day == timedelta(days=1)

    async def advance(self, days: float) -> None:
        """Let `days` policy days pass: skipped on the test server, slept on the dev server."""
        if self.skips_time:
            await self.env.sleep(self.day * days)
        else:
            await asyncio.sleep((self.day * days).total_seconds())

    def add_loan(self, **overrides: object) -> LoanSpec:
        spec = loan_spec(**overrides)
        with self.sessions.begin() as session:
            add_loan(session, spec)
        return spec

    async def start(
        self, policy: Policy | None = None, **overrides: object
    ) -> tuple[LoanSpec, WorkflowHandle[object, CaseResult]]:
        if "overdue_since" not in overrides:
            # Forty days before the server's today: the time-skipping clock runs ahead.
            today = (await self.now()).astimezone(ZoneInfo("Asia/Shanghai")).date()
            overrides["overdue_since"] = today - timedelta(days=40)
        spec = self.add_loan(**overrides)
        handle = await start_case(
            self.client, self.task_queue, spec.loan_no, spec.branch, policy or self.policy
        )
        self.started.append(handle)
        return spec, handle

    async def status(self, handle: WorkflowHandle) -> CaseStatus:
        return await handle.query(LoanCollectionWorkflow.status)

    async def until(
        self,
        handle: WorkflowHandle,
        check: Callable[[CaseStatus], bool],
        what: str,
        timeout: float = 20.0,
    ) -> CaseStatus:
        """Poll the status Query (real time) until `check` holds. A Query of a cached case
        costs the worker a millisecond or two; polling every 20 ms keeps the time-skipping
        tests from waiting on their own poll interval."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.status(handle)
            if check(status):
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; status: {status}")
            await asyncio.sleep(0.02)

    async def at_stage(
        self, handle: WorkflowHandle, stage: str, timeout: float = 20.0
    ) -> CaseStatus:
        return await self.until(handle, lambda s: s.stage == stage, f"stage {stage}", timeout)

    async def pay(
        self, handle: WorkflowHandle, amount_fen: int, reference: str | None = None
    ) -> None:
        await handle.signal(
            LoanCollectionWorkflow.payment_posted,
            # Paid now on the server's clock (ahead of the wall clock once time was skipped).
            PaymentPosted(reference or uuid.uuid4().hex, amount_fen, await self.now()),
        )

    async def now(self) -> datetime:
        """The server's time (ahead of the wall clock once time has been skipped)."""
        if self.env is None:  # a server of the test's own (restart tests): real time
            return datetime.now(UTC)
        return await self.env.get_current_time()


async def through_legal_review(
    h: Harness,
    handle: WorkflowHandle,
    decision: str = "APPROVE_ESCALATION",
    timeout: float = 30.0,
) -> CaseResult:
    """A dead end waits for a legal reviewer (collection-v4): once the case is in
    LEGAL_REVIEW, the decision; then the case's result. The result is awaited all along, so
    the time-skipping server skips to the dead end."""
    from domain.models import LegalDecisionRequest

    result = asyncio.ensure_future(handle.result())
    try:
        await h.until(handle, lambda s: s.stage == "LEGAL_REVIEW", "legal review", timeout)
        await handle.execute_update(
            LoanCollectionWorkflow.legal_decision,
            LegalDecisionRequest(
                decision, "legal-wang", "法务审查通过 reviewed", "再谈一次", "LEGAL"
            ),
        )
        return await result
    finally:
        result.cancel()


async def eventually(check: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll `check` until it returns something truthy (facts written by activities); a
    `check` returning an awaitable is awaited each time (an async read)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


HISTORIES = Path(__file__).parent / "histories"


async def run_histories(handle: WorkflowHandle) -> list[WorkflowHistory]:
    """Every run's history of a case, last run first (continue-as-new links them)."""
    histories = []
    run_id: str | None = None
    while True:
        history = await handle._client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return histories


async def assert_replays(handle: WorkflowHandle) -> None:
    """Every run of the case replays on the current code without a non-determinism error.

    With RECORD_HISTORIES=1 the first and last runs are also saved under tests/histories/,
    named after the test, for test_replay.py to replay against later versions of the code.
    """
    histories = await run_histories(handle)
    replayer = Replayer(workflows=[LoanCollectionWorkflow], data_converter=DATA_CONVERTER)
    for history in histories:
        await replayer.replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{test}.json").write_text(histories[0].to_json())
        if len(histories) > 1:
            (HISTORIES / f"{test}.first-run.json").write_text(histories[-1].to_json())


@asynccontextmanager
async def running_worker(
    env: WorkflowEnvironment,
    sessions: sessionmaker[Session],
    data_dir: Path,
    fast: bool = False,
    gateway: SmsGateway | None = None,
    sandbox: str = STRICT,
) -> AsyncIterator[Harness]:
    """A worker on a fresh task queue; `fast`: policy days are seconds (dev server);
    `sandbox`: WORKER_SANDBOX's modes (strict: every run imports workflows/ afresh)."""
    task_queue = f"tq-{uuid.uuid4()}"
    worker = build_worker(
        env.client, task_queue, sessions, data_dir, gateway=gateway, sandbox=sandbox
    )
    day, policy = (
        (timedelta(seconds=1), fast_policy()) if fast else (timedelta(days=1), OPEN_POLICY)
    )
    harness = Harness(env, env.client, task_queue, sessions, data_dir, day, policy)
    async with worker:
        try:
            yield harness
        finally:
            # A case a failed test left open would keep the shared test server busy. Passing
            # tests end their cases themselves and wait for them: after a workflow was
            # terminated in the middle of a workflow task, the time-skipping server's later
            # sleeps time out.
            for handle in harness.started:
                with contextlib.suppress(RPCError):  # most have completed already
                    await handle.terminate("test finished")
