"""Safety training on record (issue 15, item 5): assignment never puts a collector whose
safety training has expired on a remote or hostile visit, and says so in the case's audit
trail; elsewhere the training does not restrict assignment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError

from db.models import AuditEvent, Collector
from domain.models import Reassignment
from tests.harness import Harness, eventually, running_worker
from tests.test_workflow_paths import to_field_visit, visit
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    async with running_worker(
        env, sqlite_sessions, tmp_path / "data",
        fast=request.config.getoption("--workflow-env") == "local",
    ) as harness:  # fmt: skip
        yield harness


async def set_training(h: Harness, **days_from_today: int | None) -> None:
    """Each collector's training valid until that many days from the server's today (the
    policy's calendar); None: no training on record."""
    today = (await h.now()).astimezone(ZoneInfo(h.policy.timezone)).date()
    with h.sessions.begin() as session:
        for cid, days in days_from_today.items():
            collector = session.get(Collector, cid.replace("_", "-"))
            assert collector is not None
            collector.training_expires_on = None if days is None else today + timedelta(days=days)


def training_audit(h: Harness, loan_no: str) -> list[str]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.loan_no == loan_no, AuditEvent.action == "assignment_training"
                )
            )
        )


async def test_a_remote_visit_gets_no_collector_with_expired_training(h: Harness) -> None:
    await set_training(h, QX01_C01=-1, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert sorted(status.collectors) == ["QX01-C02", "QX01-C03"]
    reasons = await eventually(lambda: training_audit(h, spec.loan_no), "the reason")
    assert "QX01-C01" in reasons[0] and "safety training expired" in reasons[0]
    assert any("valid safety training only" in e.detail for e in status.history)
    # A supervisor cannot put them there by hand either.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.reassign, Reassignment(["QX01-C01", "QX01-C02"], "sup", "swap")
        )
    message = refused.value.cause
    while getattr(message, "cause", None) is not None:
        message = message.cause
    assert "safety training of QX01-C01 expired" in str(message)
    await h.pay(handle, DEBT)
    await handle.result()


def refusal(error: WorkflowUpdateFailedError) -> str:
    message: BaseException = error
    while getattr(message, "cause", None) is not None:
        message = message.cause  # type: ignore[assignment]
    return str(message)


async def test_no_training_on_record_is_no_training_for_a_remote_visit(h: Harness) -> None:
    await set_training(h, QX01_C01=None, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert sorted(status.collectors) == ["QX01-C02", "QX01-C03"]
    (reason,) = await eventually(lambda: training_audit(h, spec.loan_no), "the reason")  # type: ignore[misc]
    # Said as what it is: not "expired", but nothing on record.
    assert "无安全培训记录 no training on record: QX01-C01" in reason
    assert "expired" not in reason
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.reassign, Reassignment(["QX01-C01", "QX01-C02"], "sup", "swap")
        )
    assert "QX01-C01 has no safety training on record" in refusal(refused.value)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_the_seeded_collectors_are_trained_from_today(h: Harness) -> None:
    """The demo and test collectors carry a training valid well ahead of the server's today,
    so that remote cases of other tests still get their teams."""
    today = (await h.now()).astimezone(ZoneInfo(h.policy.timezone)).date()
    with h.sessions() as session:
        expiries = list(session.scalars(select(Collector.training_expires_on)))
    assert expiries and all(e is not None and e > today + timedelta(days=365) for e in expiries)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert len(status.collectors) == 2
    assert training_audit(h, spec.loan_no) == []
    await h.pay(handle, DEBT)
    await handle.result()


async def test_training_expired_meanwhile_is_replaced_at_the_next_attempt(h: Harness) -> None:
    await set_training(h, QX01_C01=200, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    first = sorted(status.collectors)
    leaving = first[0]
    await set_training(h, **{leaving.replace("-", "_"): -1})
    await visit(h, handle, "NOT_HOME")
    await h.until(handle, lambda s: s.next_action == "revisit", "revisit scheduled")
    await h.advance(3.2)  # the revisit: a new attempt, the team checked again
    status = await h.until(handle, lambda s: leaving not in s.collectors, "replaced")
    assert len(status.collectors) == 2
    await eventually(lambda: training_audit(h, spec.loan_no), "the reason")
    await h.pay(handle, DEBT)
    await handle.result()


async def test_near_home_the_training_does_not_restrict_assignment(h: Harness) -> None:
    await set_training(h, QX01_C01=-1, QX01_C02=-1, QX01_C03=-1)
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    assert len(status.collectors) == 2
    assert training_audit(h, spec.loan_no) == []
    await h.pay(handle, DEBT)
    await handle.result()
