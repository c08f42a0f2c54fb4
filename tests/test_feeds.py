"""The back-office feeds: the overdue-loan export and the payment feed, through real cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Borrower, Loan, Payment
from domain.names import workflow_id
from feeds.csv_files import FileError
from feeds.loans import cancel_missing, intake
from feeds.payments import post_payments
from tests.harness import Harness, running_worker
from workflows.collection import LoanCollectionWorkflow as WF

TODAY = date(2026, 11, 29)
HEADER_ZH = "贷款编号,网点代码,身份证号,姓名,手机号,贷款金额,未还本金,欠息,罚息,逾期起始日,村,偏远"
GOOD = [
    "QX-0001,QX01,522401198001011234,王建国,139 1234 5678,20000,9000,800,200,2026-10-01,石门,否",
    "QX-0002,QX02,52240119800101123X,李秀英,１３９１２３４５６７９,30000.50,10000.5,0,0,2026-09-15,河口,是",
]
BAD = [
    ("QX-0003,QX01,522401198001011235,张三,12345,1000,500,0,0,2026-10-01,,否", "phone"),
    (
        "QX-0004,QX01,522401198001011236,张四,13912345670,1000,-5,0,0,2026-10-01,,否",
        "outstanding_principal_yuan",
    ),
    (
        "QX-0005,QX01,522401198001011237,张五,13912345671,1000,abc,0,0,2026-10-01,,否",
        "outstanding_principal_yuan",
    ),
    ("QX-0006,ZZ99,522401198001011238,张六,13912345672,1000,500,0,0,2026-10-01,,否", "branch"),
    (
        "QX-0007,QX01,522401198001011239,张七,13912345673,1000,500,0,0,2027-01-01,,否",
        "overdue_since",
    ),
    ("QX-0001,QX01,522401198001011240,张八,13912345674,1000,500,0,0,2026-10-01,,否", "loan_no"),
    (
        "QX-0009,QX01,522401198001011241,=cmd|' /C calc'!A0,13912345675,"
        "1000,500,0,0,2026-10-01,,否",
        "name",
    ),
]


def write(path: Path, lines: list[str], encoding: str = "utf-8-sig") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


def count(h: Harness, model: type) -> int:
    with h.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_intake_imports_good_rows_reports_bad_ones_and_runs_twice_safely(
    h: Harness, tmp_path: Path
) -> None:
    path = write(tmp_path / "export.csv", [HEADER_ZH, *GOOD, *(row for row, _ in BAD)])
    dry = await intake(path, h.sessions, None, h.task_queue, h.policy, TODAY, dry_run=True)
    assert len(dry.good) == 2 and count(h, Loan) == 0  # a dry run writes nothing

    report = await intake(path, h.sessions, h.client, h.task_queue, h.policy, TODAY)
    assert [s.loan_no for s in report.good] == ["QX-0001", "QX-0002"]
    assert report.started == 2
    rejected = {(e.row, e.field) for e in report.errors}
    for n, (_, field) in enumerate(BAD, start=len(GOOD) + 2):
        assert (n, field) in rejected, (n, field, report.errors)
    assert any("duplicate of row 2" in str(e) for e in report.errors)
    assert any("formula" in str(e) for e in report.errors)
    assert count(h, Loan) == 2 and count(h, Borrower) == 2  # nothing half-written
    with h.sessions() as session:
        second = session.scalar(select(Loan).where(Loan.loan_no == "QX-0002"))
        assert second.outstanding_principal_fen == 1_000_050
        assert second.borrower.phone == "+8613912345679" and second.borrower.remote
    for spec in report.good:
        handle = h.client.get_workflow_handle(workflow_id(spec.loan_no))
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", f"{spec.loan_no} started")
        h.started.append(handle)

    again = await intake(path, h.sessions, h.client, h.task_queue, h.policy, TODAY)
    assert (again.started, again.attached) == (0, 2)  # the second run starts nothing
    assert count(h, Loan) == 2
    # Let the cases end on their own: the time-skipping server stops skipping time after a
    # workflow is terminated in the middle of a task (what the harness does to leftovers).
    empty = write(tmp_path / "empty.csv", [HEADER_ZH])
    assert await cancel_missing(empty, h.sessions, h.client, "test over", "qa") == [
        "QX-0001",
        "QX-0002",
    ]
    for spec in report.good:
        await h.client.get_workflow_handle(workflow_id(spec.loan_no)).result()
    reopened = await intake(path, h.sessions, h.client, h.task_queue, h.policy, TODAY)
    assert sorted(reopened.ended) == ["QX-0001", "QX-0002"]  # a feed never reopens a case
    assert reopened.started == 0


async def test_intake_reads_gb18030_and_english_headers(h: Harness, tmp_path: Path) -> None:
    header = (
        "loan_no,branch,id_number,name,phone,principal_yuan,outstanding_principal_yuan,"
        "overdue_since"
    )
    row = "EN-0001,QX01,522401198001011299,赵六,13912340000,5000,5000,2026-11-01"
    report = await intake(
        write(tmp_path / "en.csv", [header, row], "gb18030"),
        h.sessions,
        None,
        h.task_queue,
        h.policy,
        TODAY,
        dry_run=True,
    )
    assert report.errors == [] and report.good[0].name == "赵六"
    with pytest.raises(FileError, match="missing columns: .*overdue_since"):
        await intake(
            write(tmp_path / "bad.csv", ["loan_no,branch", "X-1,QX01"]),
            h.sessions,
            None,
            h.task_queue,
            h.policy,
            TODAY,
        )


async def test_payment_feed_signals_each_reference_once(h: Harness, tmp_path: Path) -> None:
    export = write(tmp_path / "export.csv", [HEADER_ZH, GOOD[0].replace("QX-0001", "QX-0101")])
    await intake(export, h.sessions, h.client, h.task_queue, h.policy, TODAY)
    handle = h.client.get_workflow_handle(workflow_id("QX-0101"))
    h.started.append(handle)
    await h.until(handle, lambda s: s.debt_fen == 1_000_000, "case investigated")
    feed = write(
        tmp_path / "payments.csv",
        [
            "贷款编号,金额,还款日期,流水号",
            "QX-0101,1000.00,2026-11-28,BANK-1",
            "QX-0101,1000.00,2026-11-28,BANK-1",
            "QX-9999,5.00,2026-11-28,BANK-2",
            "QX-0101,0,2026-11-28,BANK-3",
        ],
    )
    report = await post_payments(feed, h.sessions, h.client, TODAY)
    assert report.signalled == 1
    assert {(e.row, e.field) for e in report.errors} == {
        (3, "reference"),
        (4, "loan_no"),
        (5, "amount_yuan"),
    }
    again = await post_payments(feed, h.sessions, h.client, TODAY)
    assert again.duplicates == ["BANK-1"]
    status = await h.until(handle, lambda s: s.paid_fen > 0, "payment counted")
    assert status.paid_fen == 100_000 and count(h, Payment) == 1

    cancelled = await cancel_missing(
        write(tmp_path / "next.csv", [HEADER_ZH]),
        h.sessions,
        h.client,
        "paid at the counter",
        "backoffice",
    )
    assert cancelled == ["QX-0101"]
    await handle.result()
    assert (await handle.query(WF.status)).stage == "CANCELLED"


def test_yuan_amounts_are_exact(tmp_path: Path) -> None:
    from feeds.csv_files import yuan_to_fen

    errors: list = []
    assert yuan_to_fen(2, "x", "12,345.67", errors) == 1_234_567
    assert yuan_to_fen(2, "x", "0.1", errors) == 10 and errors == []
    yuan_to_fen(3, "x", "1.005", errors)
    assert str(errors[-1]) == "row 3, x: '1.005': at most two decimals (fen)"
