"""Every path of a case, months of it in seconds on the time-skipping server.

The activities are the real ones, on SQLite; what the tests assert is what a supervisor
would see in the status Query and what the database records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowUpdateFailedError

from db.models import Agreement, Payment, SmsOutbox, StageChange, Task
from domain.models import (
    CaseResult,
    HardshipHold,
    PlannedInstallment,
    PlanProposal,
    SignatureConfirmation,
    VisitReport,
)
from domain.names import workflow_id
from domain.plans import monthly_plan
from domain.timerules import local_date
from tests.harness import OPEN_POLICY, Harness, assert_replays, running_worker
from workflows.collection import LoanCollectionWorkflow

DEBT = 1_000_000  # 10,000.00 yuan: the harness's default loan


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


def stages(h: Harness, loan_no: str) -> list[str]:
    with h.sessions() as session:
        rows = session.execute(
            select(StageChange.to_stage)
            .join(StageChange.__table__.c.case_id == StageChange.case_id, isouter=False)
            if False
            else select(StageChange.to_stage, StageChange.seq)
            .where(StageChange.case_id == _case_id(h, loan_no))
            .order_by(StageChange.seq)
        ).all()
    return [r[0] for r in rows]


def _case_id(h: Harness, loan_no: str) -> int:
    from db.models import Case, Loan

    with h.sessions() as session:
        return session.scalar(
            select(Case.id).join(Loan, Loan.id == Case.loan_id).where(Loan.loan_no == loan_no)
        )


async def visit(h: Harness, handle, outcome: str = "MET", **kw):
    status = await h.status(handle)
    report = VisitReport(
        outcome=outcome,
        collector_ids=kw.pop("collector_ids", status.collectors),
        visited_at=kw.pop("visited_at", await h.now() - timedelta(minutes=5)),
        notes=kw.pop("notes", "talked at the farmhouse"),
    )
    return await handle.execute_update(LoanCollectionWorkflow.report_visit, report)


async def propose(h: Harness, handle, outstanding: int, count: int = 3):
    today = local_date(await h.now(), OPEN_POLICY)
    plan = monthly_plan(outstanding, count, today + timedelta(days=10), OPEN_POLICY, "QX01-C01")
    return await handle.execute_update(LoanCollectionWorkflow.propose_plan, plan)


async def sign(h: Harness, handle):
    status = await h.at_stage(handle, "AGREEMENT_SIGNING")
    status = await h.until(handle, lambda s: s.agreement is not None, "agreement rendered")
    return await handle.execute_update(
        LoanCollectionWorkflow.confirm_signature,
        SignatureConfirmation(
            version=status.agreement.version,
            sha256=status.agreement.sha256,
            collector_id=status.collectors[0],
            signed_at=await h.now(),
            place="石门村村委会",
        ),
    )


async def to_negotiation(h: Harness, handle) -> None:
    await h.at_stage(handle, "INITIAL_CONTACT")
    await h.env.sleep(timedelta(days=3, hours=1))
    await h.at_stage(handle, "FIELD_VISIT")
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")


async def test_paid_after_first_sms(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice sent")
    await h.pay(handle, DEBT)
    result: CaseResult = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    assert result.paid_fen == DEBT and result.outstanding_fen == 0
    assert stages(h, spec.loan_no) == ["INVESTIGATION", "INITIAL_CONTACT", "PAID_IN_FULL"]
    with h.sessions() as session:
        sms = session.scalars(select(SmsOutbox)).all()
        assert [(m.purpose, m.status) for m in sms] == [("first_notice", "RECORDED")]
        assert "10,000.00元" in sms[0].body and "逾期40天" in sms[0].body
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
    await assert_replays(handle)


async def test_visit_plan_signature_all_installments_paid(h: Harness) -> None:
    spec, handle = await h.start()
    await to_negotiation(h, handle)
    accepted = await propose(h, handle, DEBT, count=3)
    assert accepted.number == 1
    signed = await sign(h, handle)
    assert signed.number == 1
    status = await h.at_stage(handle, "FOLLOW_UP")
    amounts = [i.amount_fen for i in status.installments]
    assert sum(amounts) == DEBT and [i.status for i in status.installments] == ["UPCOMING"] * 3
    for n, amount in enumerate(amounts, start=1):
        await h.pay(handle, amount, reference=f"PAY-{n}")
        if n < 3:
            status = await h.until(
                handle, lambda s, n=n: s.run > n, f"run {n + 1} after installment {n}"
            )
            assert [i.status for i in status.installments][:n] == ["PAID"] * n
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    assert stages(h, spec.loan_no)[-3:] == ["AGREEMENT_SIGNING", "FOLLOW_UP", "PAID_IN_FULL"]
    with h.sessions() as session:
        agreement = session.scalar(select(Agreement))
        assert agreement.signed_place == "石门村村委会" and agreement.version == 1
    await assert_replays(handle)
