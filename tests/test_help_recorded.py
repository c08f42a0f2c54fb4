"""Help recorded at visits (issue 15, item 4): counselling given and the borrower's stated
situation are stored with the visit, shown in the collection record, and a stated disaster
lengthens the next plan's limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from domain.human_input import Refused, check_counselling
from domain.models import CheckIn, CheckOut, PlannedInstallment, PlanProposal, VisitReport
from domain.money import split_evenly
from domain.plans import plan_policy
from domain.policy import Policy
from service.collection_record import collection_record, csv_rows
from tests.harness import Harness, running_worker
from tests.test_workflow_paths import to_field_visit
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000


def test_a_stated_disaster_lengthens_the_plan_limits() -> None:
    policy = Policy()
    assert plan_policy(policy, []).max_installments == 24
    longer = plan_policy(policy, ["DISASTER"])
    assert longer.max_installments == 36 and longer.max_plan_seconds == 1095 * 86400
    assert plan_policy(policy, ["JOB_LOSS"]).max_installments == 24  # not named by the policy


def test_unknown_help_is_refused_by_name() -> None:
    report = VisitReport("MET", ["C1", "C2"], None, counselling=["PRAYER"])  # type: ignore[arg-type]
    with pytest.raises(Refused, match="^counselling: PRAYER"):
        check_counselling(report)
    report = VisitReport("MET", ["C1", "C2"], None, hardships=["BAD_LUCK"])  # type: ignore[arg-type]
    with pytest.raises(Refused, match="^hardships: BAD_LUCK"):
        check_counselling(report)


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("plans of policy months: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def monthly(h: Harness, count: int) -> PlanProposal:
    now = await h.now()
    return PlanProposal(
        [
            PlannedInstallment(now + h.day * 30 * (n + 1), amount)
            for n, amount in enumerate(split_evenly(DEBT, count))
        ],
        proposed_by="QX01-C01",
    )


async def test_help_at_a_visit_is_recorded_and_feeds_the_next_plan(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    await handle.execute_update(WF.check_in, CheckIn(status.collectors, await h.now()))
    report = VisitReport(
        "MET", status.collectors, await h.now(), "谈了还款",
        counselling=["FINANCIAL_ADVICE", "HARDSHIP_REFERRAL"], hardships=["DISASTER"],
        situation="七月洪水冲毁大棚，已向保险公司报案",
    )  # fmt: skip
    await handle.execute_update(WF.check_out, CheckOut(report))
    status = await h.at_stage(handle, "NEGOTIATION")
    assert status.hardships == ["DISASTER"] and status.max_installments == 36
    assert status.counselling_given == ["FINANCIAL_ADVICE", "HARDSHIP_REFERRAL"]
    # Thirty monthly installments: beyond the usual 24 and two years, within the disaster's.
    accepted = await handle.execute_update(WF.propose_plan, await monthly(h, 30))
    assert "30 installments" in accepted.message

    record = collection_record(h.sessions, spec.loan_no, None, h.policy, await h.now())
    assert record is not None
    help_text = record.visits[0].help_text
    assert "转介救助 hardship referral" in help_text and "受灾 disaster" in help_text
    assert "七月洪水冲毁大棚" in help_text
    assert any("七月洪水" in row[-1] for row in csv_rows(record))
    await h.pay(handle, DEBT)
    await handle.result()


async def test_without_a_stated_hardship_the_usual_limits_hold(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    report = VisitReport("MET", status.collectors, await h.now(), counselling=["FINANCIAL_ADVICE"])
    await handle.execute_update(WF.report_visit, report)
    status = await h.at_stage(handle, "NEGOTIATION")
    assert status.max_installments == 24
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WF.propose_plan, await monthly(h, 30))
    assert refused.value.cause.message.startswith("installments:")
    await h.pay(handle, DEBT)
    await handle.result()
