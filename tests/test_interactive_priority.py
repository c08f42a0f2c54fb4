"""A person's Update goes first (issue 17, "interactive under load"; collection-v6): the
activity a collector waits on inside an Update handler (the visit report's record, the
signature's) is scheduled with the highest task priority of its queue, so it is not queued
behind the back office's backlog; background activities keep the default (the SMS sends
their bands by days past due). Read from the case's history, on the real dev server (one
partition a queue: priority orders its backlog, service/dev_server.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domain.case_rules import INTERACTIVE_PRIORITY, sms_priority
from domain.names import Activities as A
from tests.harness import Harness, assert_replays, run_histories, running_worker
from tests.test_workflow_paths import DEBT, propose, sign, visit
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
