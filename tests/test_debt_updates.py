"""Debts that change (issue 18, item 4): a later export's balances reach the running case.

Pure arithmetic first (domain/debts.py), then the case on the time-skipping server with the
real activities: outstanding, the lists and the database follow the export (and a payment,
at once, with no late record undoing it; collection-v5); a
payment the export has not booked yet still counts; an older export does not undo a newer
one; a signed agreement stands and asks for renegotiation once the change is large enough.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.converter import default as default_converter

from activities.cases import CaseActivities
from db.models import AuditEvent, Case, Loan
from db.repository import mark_told
from domain import search_attributes as sa
from domain.debts import updated_debt
from domain.models import CountedPayment, DebtUpdate, PaymentPosted, Transition
from domain.names import workflow_id
from domain.stages import Stage
from feeds.debt_updates import NOT_TOLD, tell_cases, told
from feeds.loans import intake
from service.portfolio import CaseRow, list_cases
from tests.harness import Harness, assert_replays, eventually, running_worker
from tests.test_feeds import HEADER_ZH, write
from tests.test_workflow_paths import DEBT, tasks, to_field_visit, to_follow_up
from workflows.collection import LoanCollectionWorkflow as WF

SHANGHAI = ZoneInfo("Asia/Shanghai")
D = date(2026, 1, 10)  # a date inside the pure tests' own ledger, not the calendar's


# ---------------------------------------------------------------- the arithmetic


def test_export_with_accrued_interest_raises_the_debt_by_the_accrual() -> None:
    figures = updated_debt(900_000, 0, [], DebtUpdate(D, 900_000, 95_000, 26_000))
    assert (figures.principal_fen, figures.interest_fen, figures.penalty_fen) == (
        900_000,
        95_000,
        26_000,
    )
    assert figures.debt_fen == 1_021_000


def test_payments_the_export_booked_are_added_back_and_later_ones_are_not() -> None:
    # Case opened at 900,000 + 80,000 + 20,000; paid 300 yuan on the 5th and 200 on the 10th.
    ledger = [CountedPayment(D - timedelta(days=5), 30_000), CountedPayment(D, 20_000)]
    # Export of the 10th: the 5th's 300 yuan went on interest first (先息后本) and accrual.
    export = DebtUpdate(D, 900_000, 52_000, 21_000)
    figures = updated_debt(900_000, 50_000, ledger, export)
    assert figures.debt_fen == export.total_fen + 30_000  # the booked payment added back
    assert figures.debt_fen - 50_000 == export.total_fen - 20_000  # outstanding: less the 10th's
    assert figures.principal_fen == 900_000  # the principal the case opened with
    assert figures.interest_fen == 82_000 and figures.penalty_fen == 21_000


def test_a_written_down_principal_shows_in_the_breakdown() -> None:
    figures = updated_debt(900_000, 0, [], DebtUpdate(D, 700_000, 80_000, 20_000))
    assert figures.principal_fen == 700_000 and figures.debt_fen == 800_000


def test_payments_counted_before_the_ledger_began_are_taken_as_booked() -> None:
    # A released case: paid 100 yuan, no ledger entry.
    figures = updated_debt(None, 10_000, [], DebtUpdate(D, 890_000, 80_000, 20_000))
    assert figures.debt_fen == 1_000_000 and figures.principal_fen == 900_000


# ---------------------------------------------------------------- the case


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("walks policy days: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def raw_info(handle: WorkflowHandle):  # type: ignore[no-untyped-def]
    """The execution's info as the server holds it (the time-skipping server keeps an unset
    Datetime search attribute as null, which the SDK's typed description cannot read)."""
    desc = await handle._client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=handle._client.namespace,
            execution=WorkflowExecution(workflow_id=handle.id),
        )
    )
    return desc.workflow_execution_info


async def raw_attributes(handle: WorkflowHandle) -> dict[str, object]:
    """The search attributes as the server holds them (see raw_info)."""
    fields = (await raw_info(handle)).search_attributes.indexed_fields
    converter = default_converter().payload_converter
    return {k: converter.from_payloads([v])[0] for k, v in fields.items()}


async def attributes_when(
    handle: WorkflowHandle, check: Callable[[dict[str, object]], bool], what: str
) -> dict[str, object]:
    """The search attributes once `check` holds: with collection-v5 the case upserts them
    once it is idle (the activity recording the change done), a moment after its state
    (the status Query) has the change."""
    found: dict[str, object] = {}

    async def read() -> bool:
        nonlocal found
        found = await raw_attributes(handle)  # a key unset since is gone, not kept
        return check(found)

    deadline = asyncio.get_running_loop().time() + 10.0
    while not await read():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {found}")
        await asyncio.sleep(0.05)
    return found


class CaseVisibility:
    """Visibility listing one case with the search attributes the server holds for it (the
    list query of service/portfolio.py, without the time-skipping server's visibility)."""

    def __init__(self, handle: WorkflowHandle) -> None:
        self.handle = handle

    async def list_workflows(self, query: str, **kw: object) -> AsyncIterator[SimpleNamespace]:
        attrs = await raw_attributes(self.handle)
        fields = {k: [v] for k, v in attrs.items()}
        info = await raw_info(self.handle)
        yield SimpleNamespace(
            id=self.handle.id,
            search_attributes=fields,
            status=None,
            start_time=info.start_time.ToDatetime(UTC),
            close_time=info.close_time.ToDatetime(UTC) if info.HasField("close_time") else None,
        )


async def listed_when(h: Harness, handle: WorkflowHandle, outstanding: int) -> CaseRow:
    """The case's row in the lists (dashboard, JSON, export, CLI) once it shows `outstanding`."""
    rows: list[CaseRow] = []

    async def shown() -> bool:
        visibility = CaseVisibility(handle)
        rows[:] = await list_cases(visibility, "-", policy=h.policy, sessions=h.sessions)  # type: ignore[arg-type]
        return bool(rows) and rows[0].outstanding_fen == outstanding

    try:
        await eventually(shown, f"the lists to show {outstanding}")
    except AssertionError as e:
        raise AssertionError(f"{e}: they show {rows[0].outstanding_fen if rows else None}") from e
    return rows[0]


async def today(h: Harness) -> date:
    return (await h.now()).astimezone(SHANGHAI).date()


def debt_audit(h: Harness, loan_no: str) -> list[str]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.loan_no == loan_no, AuditEvent.action == "DEBT_UPDATED"
                )
            )
        )


async def test_a_later_export_changes_outstanding_lists_and_the_case_row(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    day = await today(h)
    update = DebtUpdate(day, 900_000, 95_000, 26_000, by="intake")
    await handle.signal(WF.debt_updated, update)
    status = await h.until(handle, lambda s: s.debt_fen != DEBT, "the new debt")
    assert status.debt_fen == status.outstanding_fen == 1_021_000
    assert status.stage == "FIELD_VISIT"  # the case goes on where it was
    assert any("10,000.00 → 10,210.00" in e.detail for e in status.history)
    # The lists show it at once, from the case row (collection-v5: the OutstandingFen search
    # attribute changes at the next stage change).
    await listed_when(h, handle, 1_021_000)

    def case_row_debt() -> int | None:
        with h.sessions() as session:
            return session.scalar(
                select(Case.debt_fen).join(Loan).where(Loan.loan_no == spec.loan_no)
            )

    await eventually(lambda: case_row_debt() == 1_021_000, "the case row's debt")
    assert len(debt_audit(h, spec.loan_no)) == 1

    # The same export again, and an older one: nothing changes, nothing more is recorded.
    await handle.signal(WF.debt_updated, update)
    await handle.signal(WF.debt_updated, DebtUpdate(day - timedelta(days=1), 900_000, 1, 1))
    status = await h.until(
        handle, lambda s: any("ignored" in e.detail for e in s.history), "older export noted"
    )
    assert status.outstanding_fen == 1_021_000
    assert len(debt_audit(h, spec.loan_no)) == 1
    await h.pay(handle, 1_021_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    await assert_replays(handle)


async def test_a_payment_shows_in_the_lists_at_once_and_a_late_record_cannot_undo_it(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    before = await to_field_visit(h, handle)
    await h.pay(handle, 300_000)
    status = await h.until(handle, lambda s: s.paid_fen == 300_000, "payment counted")
    assert status.stage == "FIELD_VISIT"  # no stage change
    row = await listed_when(h, handle, DEBT - 300_000)
    assert row.stage == "FIELD_VISIT"
    # Visibility's own attribute waits for the next stage change (an upsert is an Action).
    assert (await raw_attributes(handle))[sa.OUTSTANDING_FEN.name] == DEBT
    # The field visit's transition recorded again late (a retry after a lost answer),
    # with the amount before the payment: the lists keep the payment.
    with h.sessions() as session:
        generation = session.scalar(
            select(Case.generation).join(Loan).where(Loan.loan_no == spec.loan_no)
        )
    assert generation  # the case's own: the late retry is of this generation's transition
    late = Transition(
        spec.loan_no, 2, Stage.INITIAL_CONTACT, Stage.FIELD_VISIT, before.stage_since, "system",
        "late retry", "QX01", "LOW", [], DEBT, 0, "", None, generation=generation,
        outstanding_fen=DEBT, outstanding_at=before.stage_since,
    )  # fmt: skip
    CaseActivities(h.sessions).record_transition(late)
    assert (await listed_when(h, handle, DEBT - 300_000)).outstanding_fen == DEBT - 300_000
    await h.pay(handle, DEBT - 300_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    await listed_when(h, handle, 0)


async def test_a_payment_the_export_has_not_booked_still_counts(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    # Paid today on the server's clock: after the export below was made.
    await handle.signal(WF.payment_posted, PaymentPosted("BANK-1", 100_000, await h.now()))
    await h.until(handle, lambda s: s.paid_fen == 100_000, "payment counted")
    # Today's export holds the balances at the start of today: not today's payment; the
    # accrual since the case opened is 5 yuan.
    day = await today(h)
    await handle.signal(WF.debt_updated, DebtUpdate(day, 900_000, 80_500, 20_000))
    status = await h.until(handle, lambda s: s.debt_fen != DEBT, "the new debt")
    assert status.outstanding_fen == 1_000_500 - 100_000
    # The next day's export has booked it (on interest first): outstanding is the export's.
    await h.advance(1)
    tomorrow = day + timedelta(days=1)
    await handle.signal(WF.debt_updated, DebtUpdate(tomorrow, 900_000, 0, 901_000 - 900_000))
    status = await h.until(handle, lambda s: s.outstanding_fen == 901_000, "booked")
    assert status.debt_fen == 1_001_000 and status.paid_fen == 100_000
    await h.pay(handle, 901_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"


async def test_an_export_that_clears_the_loan_closes_the_case_paid(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await h.pay(handle, 400_000)
    await h.until(handle, lambda s: s.paid_fen == 400_000, "payment counted")
    # Tomorrow's export: everything paid (the rest at the counter, booked by core banking).
    await handle.signal(WF.debt_updated, DebtUpdate(await today(h) + timedelta(days=1), 0, 0, 0))
    result = await handle.result()
    # The case cannot tell the counter's payment from a refund it owes: it closes as paid,
    # with nothing outstanding and no refund task.
    assert result.outcome == "PAID_IN_FULL" and result.outstanding_fen == 0
    assert "REFUND_OVERPAYMENT" not in tasks(h, spec.loan_no)


async def test_a_signed_agreement_stands_and_a_large_change_asks_to_renegotiate(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    status = await to_follow_up(h, handle)
    plan_total = sum(i.amount_fen for i in status.installments)
    asked = tasks(h, spec.loan_no).count("NEGOTIATE")  # the negotiation stage's own
    day = await today(h)
    # 50 yuan of accrual: below the policy's 100 yuan, noted only.
    await handle.signal(WF.debt_updated, DebtUpdate(day, 900_000, 85_000, 20_000))
    await h.until(handle, lambda s: s.debt_fen == 1_005_000, "small change")
    assert tasks(h, spec.loan_no).count("NEGOTIATE") == asked
    # Another 100 yuan the next day: 150 since signing, the collectors are asked once.
    await handle.signal(
        WF.debt_updated, DebtUpdate(day + timedelta(days=1), 900_000, 95_000, 20_000)
    )
    status = await h.until(handle, lambda s: s.debt_fen == 1_015_000, "large change")
    await handle.signal(
        WF.debt_updated, DebtUpdate(day + timedelta(days=2), 900_000, 96_000, 20_000)
    )
    status = await h.until(handle, lambda s: s.debt_fen == 1_016_000, "a day later")
    await eventually(lambda: tasks(h, spec.loan_no).count("NEGOTIATE") > asked, "asked")
    assert tasks(h, spec.loan_no).count("NEGOTIATE") == asked + 1  # once, not every day
    assert status.stage == "FOLLOW_UP"
    assert sum(i.amount_fen for i in status.installments) == plan_total  # not rewritten
    await h.advance(2)  # paid on the day of the last export: not in its balances
    assert any("stands as signed" in e.detail for e in status.history)
    await h.pay(handle, 1_016_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    await assert_replays(handle)


async def test_an_export_before_the_investigation_read_the_loan_is_taken(h: Harness) -> None:
    """The overdue date is a search attribute from the start (collection-v4)."""
    spec, handle = await h.start()
    await handle.signal(WF.debt_updated, DebtUpdate(await today(h), 900_000, 90_000, 20_000))
    status = await h.until(handle, lambda s: s.debt_fen is not None, "investigated")
    status = await h.until(handle, lambda s: s.debt_fen == 1_010_000, "taken after reading")
    attrs = await attributes_when(handle, lambda a: sa.OVERDUE_SINCE.name in a, "OverdueSince")
    since = datetime.fromisoformat(str(attrs[sa.OVERDUE_SINCE.name]))
    assert since.astimezone(SHANGHAI) == datetime.combine(spec.overdue_since, time(0), SHANGHAI)
    assert attrs.get(sa.DAYS_PAST_DUE.name) is None  # replaced by the date
    await h.pay(handle, status.outstanding_fen or 0)
    await handle.result()


async def test_the_next_days_export_updates_running_cases_once(h: Harness, tmp_path: Path) -> None:
    """Through the intake: a second export with accrued interest and penalty tells the
    running case; the same file again tells it nothing more."""
    day = await today(h)
    loan_no = f"DU{uuid.uuid4().hex[:8].upper()}"

    def export(name: str, interest: str, penalty: str) -> Path:
        row = (
            f"{loan_no},QX01,522401198001019999,王建国,13912345678,20000,9000,{interest},"
            f"{penalty},{day - timedelta(days=40)},石门,否"
        )
        return write(tmp_path / name, [HEADER_ZH, row])

    first = await intake(
        export("day1.csv", "800", "200"), h.sessions, h.client, h.task_queue, h.policy, day
    )
    assert first.started == 1 and first.debts == []
    handle = h.client.get_workflow_handle(workflow_id(loan_no))
    h.started.append(handle)
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "started")
    second_file = export("day2.csv", "812.50", "203.40")
    second = await intake(second_file, h.sessions, h.client, h.task_queue, h.policy, day)
    assert second.attached == 1 and second.debts == [f"{loan_no}: 10,000.00 → 10,015.90 yuan"]
    status = await h.until(handle, lambda s: s.outstanding_fen == 1_001_590, "new debt")
    assert status.debt_fen == 1_001_590
    again = await intake(second_file, h.sessions, h.client, h.task_queue, h.policy, day)
    assert again.debts == []
    await eventually(lambda: len(debt_audit(h, loan_no)) == 1, "recorded")
    await h.pay(handle, 1_001_590)
    assert (await handle.result())["outcome"] == "PAID_IN_FULL"  # an untyped handle
    assert len(debt_audit(h, loan_no)) == 1


async def test_a_case_that_could_not_be_told_is_told_by_the_next_run(h: Harness) -> None:
    """The signal fails (here: no such case on the server): the figures the case knows stay
    as they were, so the next run of the file (or a retry after a crash) tells it."""
    spec = h.add_loan()
    known = (spec.outstanding_principal_fen, 80_000, spec.penalty_fen, spec.overdue_since)
    with h.sessions.begin() as session:
        mark_told(session, spec.loan_no, known)  # what its investigation read
    newer = dataclasses.replace(spec, interest_fen=95_000)
    lines = await tell_cases(h.client, h.sessions, [newer], await today(h), "intake")
    assert len(lines) == 1 and NOT_TOLD in lines[0] and "run the file again" in lines[0]
    with h.sessions() as session:
        assert told(session, [spec.loan_no]) == {spec.loan_no: known}
    # Unchanged figures are not sent again.
    assert await tell_cases(h.client, h.sessions, [spec], await today(h), "intake") == []


async def test_a_payment_the_export_already_deducted_is_not_counted_twice(h: Harness) -> None:
    """The daily run takes the export first, then the day's payment file: yesterday's 5,000
    yuan at the counter is in both. The case must still see 5,000 yuan owed."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    day = await today(h)
    # The export of today: yesterday's payment already deducted (500,000 fen left).
    await handle.signal(WF.debt_updated, DebtUpdate(day, 400_000, 80_000, 20_000))
    await h.until(handle, lambda s: s.outstanding_fen == 500_000, "the export's balance")
    yesterday = await h.now() - timedelta(days=1)
    await handle.signal(WF.payment_posted, PaymentPosted("COUNTER-1", 500_000, yesterday))
    status = await h.until(handle, lambda s: s.paid_fen == 500_000, "payment counted")
    assert status.outstanding_fen == 500_000 and status.stage == "FIELD_VISIT"
    assert status.debt_fen == 1_000_000
    # Today's own payment is not in the export: it does reduce what is owed.
    await handle.signal(WF.payment_posted, PaymentPosted("BANK-2", 100_000, await h.now()))
    status = await h.until(handle, lambda s: s.paid_fen == 600_000, "second payment")
    assert status.outstanding_fen == 400_000
    await h.pay(handle, 400_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    await assert_replays(handle)


async def test_a_corrected_overdue_date_reaches_the_case_and_its_lists(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    earlier = spec.overdue_since - timedelta(days=30)
    update = DebtUpdate(await today(h), 900_000, 80_000, 20_000, overdue_since=earlier)
    await handle.signal(WF.debt_updated, update)
    days = ((await today(h)) - earlier).days
    status = await h.until(handle, lambda s: s.days_past_due == days, "the corrected date")
    assert status.debt_fen == DEBT  # the figures did not change
    since = datetime.fromisoformat(str((await raw_attributes(handle))[sa.OVERDUE_SINCE.name]))
    assert since.astimezone(SHANGHAI).date() == earlier
    await h.pay(handle, DEBT)
    await handle.result()
