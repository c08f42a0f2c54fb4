"""A person's Update goes first (issue 17, "interactive under load"; collection-v6): the
activity a collector waits on inside an Update handler (the visit report's record, the
signature's) is scheduled with the highest task priority of its queue, so it is not queued
behind the back office's backlog; background activities keep the default (the SMS sends
their bands by days past due). Read from the case's history, on the real dev server (one
partition a queue: priority orders its backlog, service/dev_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle, WorkflowUpdateStage
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from bench.lifecycle import LIFECYCLE_POLICY
from domain.case_rules import INTERACTIVE_PRIORITY, sms_priority
from domain.models import HelpRequest, VisitReport
from domain.names import CASES
from domain.names import Activities as A
from service.worker_factory import build_worker, role_activities
from tests.harness import Harness, assert_replays, eventually, run_histories, running_worker
from tests.test_visit_safety import check_in
from tests.test_workflow_paths import DEBT, propose, sign, visit
from workflows.collection import LoanCollectionWorkflow as WF
from workflows.versions import PATCH_V6


@pytest.fixture
async def fast(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data", fast=True) as h:
        yield h


async def test_the_activity_a_collector_waits_on_goes_first_in_its_queue(fast: Harness) -> None:
    h = fast
    spec, handle = await h.start()
    await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT, count=1)
    await sign(h, handle)
    status = await h.at_stage(handle, "FOLLOW_UP")
    await h.pay(handle, status.installments[0].amount_fen, "PRIO-1")
    assert (await handle.result()).outcome == "PAID_IN_FULL"

    keys: dict[str, list[int]] = defaultdict(list)  # activity -> its schedules' priority keys
    markers: list[bytes] = []
    for history in await run_histories(handle):
        for e in history.events:
            if e.HasField("activity_task_scheduled_event_attributes"):
                a = e.activity_task_scheduled_event_attributes
                keys[a.activity_type.name].append(a.priority.priority_key)
            if e.HasField("marker_recorded_event_attributes"):
                markers.append(e.marker_recorded_event_attributes.SerializeToString())
    assert any(PATCH_V6.encode() in m for m in markers), "not a v6 run"
    # What the collector's phone waited on: first in the queue.
    assert keys[A.RECORD_VISIT] == [INTERACTIVE_PRIORITY]
    assert keys[A.RECORD_SIGNATURE] == [INTERACTIVE_PRIORITY]
    # The case's own work: the default (0: unset, the server's middle key), the SMS their
    # band by days past due (40 days: the loan's).
    for name in (A.RECORD_TRANSITION, A.CREATE_TASK, A.ASSIGN_COLLECTORS, A.RENDER_AGREEMENT):
        assert keys[name] and set(keys[name]) == {0}, (name, keys[name])
    assert keys[A.SEND_SMS] and set(keys[A.SEND_SMS]) == {sms_priority(40)}
    background = [k for name, ks in keys.items() if name not in (A.RECORD_VISIT,
                  A.RECORD_SIGNATURE) for k in ks]  # fmt: skip
    assert INTERACTIVE_PRIORITY not in background
    await assert_replays(handle)


class StartOrder(Interceptor):
    """Notes the type of every activity the worker starts, in the order it starts them."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Noted(next, self.started)


class _Noted(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, started: list[str]) -> None:
        super().__init__(next)
        self.started = started

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.started.append(activity.info().activity_type)
        return await super().execute_activity(input)


async def waiting(handle: WorkflowHandle, name: str) -> bool:
    """Whether the case has a `name` activity scheduled and not started (in the queue)."""
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        p.activity_type.name == name
        and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        for p in pending
    )


async def idle(handle: WorkflowHandle) -> bool:
    return not (await handle.describe()).raw_description.pending_activities


async def test_a_visit_report_is_recorded_before_the_back_offices_backlog(
    dev_env, sqlite_sessions, tmp_path: Path
) -> None:
    """Six new cases' first records wait in the queue (no activity worker), then a visit is
    reported: the one activity worker, one at a time, records the visit first."""
    client, data = dev_env.client, tmp_path / "data"
    tq = f"tq-{uuid.uuid4()}"
    h = Harness(dev_env, client, tq, sqlite_sessions, data, timedelta(seconds=1), LIFECYCLE_POLICY)
    try:
        async with build_worker(client, tq, sqlite_sessions, data):
            _, handle = await h.start()
            status = await h.at_stage(handle, "FIELD_VISIT", timeout=30)
            await eventually(lambda: idle(handle), "the case waiting for its visit", 30)
        # Workflows only: activities wait in the queue.
        async with Worker(client, task_queue=tq, workflows=[WF]):
            backlog = [(await h.start())[1] for _ in range(6)]
            for other in backlog:
                await eventually(lambda o=other: waiting(o, A.RECORD_TRANSITION), "backlog", 30)
            report = VisitReport("MET", status.collectors, await h.now(), "在家")
            update = await handle.start_update(
                WF.report_visit, report, wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
            await eventually(lambda: waiting(handle, A.RECORD_VISIT), "the visit's record", 30)
            order = StartOrder()
            acts = role_activities(sqlite_sessions, data, roles=[CASES])[CASES]
            with ThreadPoolExecutor(1) as one:
                async with Worker(
                    client, task_queue=tq, activities=acts, activity_executor=one,
                    max_concurrent_activities=1, interceptors=[order],
                ):  # fmt: skip
                    accepted = await update.result()
                    assert "visit 1 recorded" in accepted.message
        assert order.started[0] == A.RECORD_VISIT, order.started
    finally:
        for started in h.started:
            with contextlib.suppress(RPCError):
                await started.terminate("test finished")


async def test_a_collectors_call_for_help_is_raised_first_in_its_queue(fast: Harness) -> None:
    """A collector's "need help" on a visit: the safety alert it raises (by the safety
    watcher, not inside the Update) goes before the back office's backlog and every SMS
    band, as the activities the collector's phone waits on do."""
    h = fast
    _spec, handle = await h.start()
    await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    await check_in(h, handle)
    status = await h.status(handle)
    await handle.execute_update(
        WF.need_help, HelpRequest(status.collectors[0], await h.now(), "家属围堵")
    )

    async def raised() -> list[int]:
        return [
            e.activity_task_scheduled_event_attributes.priority.priority_key
            for e in (await handle.fetch_history()).events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == A.RAISE_ALERT
        ]

    keys: list[int] = []
    for _ in range(200):
        keys = await raised()
        if keys:
            break
        await asyncio.sleep(0.05)
    assert keys and keys[0] == INTERACTIVE_PRIORITY == 1, keys
    assert all(INTERACTIVE_PRIORITY < sms_priority(days) for days in (0, 40, 90, 400))
    await handle.terminate("test finished")
