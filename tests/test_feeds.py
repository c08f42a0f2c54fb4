"""The back-office feeds: the overdue-loan export and the payment feed, through real cases."""

from __future__ import annotations

import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from db.models import AuditEvent, Borrower, Case, Loan, Payment
from domain.models import CloseRequest
from domain.names import workflow_id
from domain.stages import CLOSED_STAGES
from feeds.csv_files import EXCEL_EPOCH, EXCEL_LAST, FileError
from feeds.loans import cancel_missing, intake
from feeds.payments import post_payments
from tests.harness import Harness, eventually, running_worker
from workflows.collection import LoanCollectionWorkflow as WF

HEADER_ZH = "贷款编号,网点代码,身份证号,姓名,手机号,贷款金额,未还本金,欠息,罚息,逾期起始日,村,偏远"


@dataclass
class Export:
    """An export with two good rows and seven bad ones (each with the field it is refused
    for). Its loan numbers are its own (a uuid), so no two tests, in this module or another
    on the same server, share a case; its dates are days around `today`, never fixed ones."""

    good: list[str]
    bad: list[tuple[str, str]]
    loans: list[str]  # the good rows' loan numbers


def export(today: date) -> Export:
    tag = uuid.uuid4().hex[:6].upper()
    no = [f"QX{tag}-{n:04d}" for n in range(10)]
    since, earlier = today - timedelta(days=59), today - timedelta(days=75)
    future = today + timedelta(days=33)
    good = [
        f"{no[1]},QX01,522401198001011234,王建国,139 1234 5678,20000,9000,800,200,{since},石门,否",
        f"{no[2]},QX02,52240119800101123X,李秀英,１３９１２３４５６７９,30000.50,10000.5,0,0,{earlier},"
        "河口,是",
    ]
    bad = [
        (f"{no[3]},QX01,522401198001011235,张三,12345,1000,500,0,0,{since},,否", "phone"),
        (
            f"{no[4]},QX01,522401198001011236,张四,13912345670,1000,-5,0,0,{since},,否",
            "outstanding_principal_yuan",
        ),
        (
            f"{no[5]},QX01,522401198001011237,张五,13912345671,1000,abc,0,0,{since},,否",
            "outstanding_principal_yuan",
        ),
        (f"{no[6]},ZZ99,522401198001011238,张六,13912345672,1000,500,0,0,{since},,否", "branch"),
        (
            f"{no[7]},QX01,522401198001011239,张七,13912345673,1000,500,0,0,{future},,否",
            "overdue_since",
        ),
        (f"{no[1]},QX01,522401198001011240,张八,13912345674,1000,500,0,0,{since},,否", "loan_no"),
        (
            f"{no[9]},QX01,522401198001011241,=cmd|' /C calc'!A0,13912345675,"
            f"1000,500,0,0,{since},,否",
            "name",
        ),
    ]
    return Export(good, bad, no[1:3])


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
    today = await server_today(h)
    x = export(today)
    path = write(tmp_path / "export.csv", [HEADER_ZH, *x.good, *(row for row, _ in x.bad)])
    dry = await intake(path, h.sessions, None, h.task_queue, h.policy, today, dry_run=True)
    assert len(dry.good) == 2 and count(h, Loan) == 0  # a dry run writes nothing

    report = await intake(path, h.sessions, h.client, h.task_queue, h.policy, today)
    assert [s.loan_no for s in report.good] == x.loans
    assert report.started == 2
    rejected = {(e.row, e.field) for e in report.errors}
    for n, (_, field) in enumerate(x.bad, start=len(x.good) + 2):
        assert (n, field) in rejected, (n, field, report.errors)
    assert any("duplicate of row 2" in str(e) for e in report.errors)
    assert any("formula" in str(e) for e in report.errors)
    assert count(h, Loan) == 2 and count(h, Borrower) == 2  # nothing half-written
    with h.sessions() as session:
        second = session.scalar(select(Loan).where(Loan.loan_no == x.loans[1]))
        assert second.outstanding_principal_fen == 1_000_050
        assert second.borrower.phone == "+8613912345679" and second.borrower.remote
    for spec in report.good:
        handle = h.client.get_workflow_handle(workflow_id(spec.loan_no))
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", f"{spec.loan_no} started")
        h.started.append(handle)

    again = await intake(path, h.sessions, h.client, h.task_queue, h.policy, today)
    assert (again.started, again.attached) == (0, 2)  # the second run starts nothing
    assert count(h, Loan) == 2
    # Let the cases end on their own: the time-skipping server stops skipping time after a
    # workflow is terminated in the middle of a task (what the harness does to leftovers).
    await close_cases(h, [spec.loan_no for spec in report.good])
    reopened = await intake(path, h.sessions, h.client, h.task_queue, h.policy, today)
    assert sorted(reopened.ended) == x.loans  # a feed never reopens a case
    assert reopened.started == 0


async def test_intake_reads_gb18030_and_english_headers(h: Harness, tmp_path: Path) -> None:
    header = (
        "loan_no,branch,id_number,name,phone,principal_yuan,outstanding_principal_yuan,"
        "overdue_since"
    )
    today = await server_today(h)
    row = f"EN-0001,QX01,522401198001011299,赵六,13912340000,5000,5000,{today - timedelta(28)}"
    report = await intake(
        write(tmp_path / "en.csv", [header, row], "gb18030"),
        h.sessions,
        None,
        h.task_queue,
        h.policy,
        today,
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
            today,
        )


async def test_payment_feed_signals_each_reference_once(h: Harness, tmp_path: Path) -> None:
    today = await server_today(h)
    x, still_listed = export(today), export(today)
    [loan, _] = x.loans
    await intake(
        write(tmp_path / "export.csv", [HEADER_ZH, x.good[0]]),
        h.sessions, h.client, h.task_queue, h.policy, today,
    )  # fmt: skip
    handle = h.client.get_workflow_handle(workflow_id(loan))
    h.started.append(handle)
    await h.until(handle, lambda s: s.debt_fen == 1_000_000, "case investigated")
    yesterday, unknown = today - timedelta(days=1), f"{loan[:-4]}9999"
    feed = write(
        tmp_path / "payments.csv",
        [
            "贷款编号,金额,还款日期,流水号",
            f"{loan},1000.00,{yesterday},BANK-1",
            f"{loan},1000.00,{yesterday},BANK-1",
            f"{unknown},5.00,{yesterday},BANK-2",
            f"{loan},0,{yesterday},BANK-3",
        ],
    )
    report = await post_payments(feed, h.sessions, h.client, today, h.policy)
    assert report.signalled == 1
    assert {(e.row, e.field) for e in report.errors} == {
        (3, "reference"),
        (4, "loan_no"),
        (5, "amount_yuan"),
    }
    again = await post_payments(feed, h.sessions, h.client, today, h.policy)
    assert again.duplicates == ["BANK-1"]
    status = await h.until(handle, lambda s: s.paid_fen > 0, "payment counted")
    assert status.paid_fen == 100_000 and count(h, Payment) == 1

    cancelled = await cancel_missing(
        write(tmp_path / "next.csv", [HEADER_ZH, still_listed.good[0]]),  # `loan` is not
        h.sessions,
        h.client,
        "paid at the counter",
        "backoffice",
        ["QX01"],
        apply=True,
        confirm_count=1,  # the only open case of QX01: more than 10 %
    )
    assert cancelled.cancelled == [loan]
    await handle.result()
    assert (await handle.query(WF.status)).stage == "CANCELLED"


PAYMENTS_HEADER = "贷款编号,金额,还款日期,流水号"


async def server_today(h: Harness) -> date:
    """Today in the borrowers' calendar on the test server's clock (never a fixed date)."""
    return (await h.now()).astimezone(ZoneInfo("Asia/Shanghai")).date()


def loan_rows(loans: list[tuple[str, str]], today: date) -> list[str]:
    """Export rows (HEADER_ZH) for (loan number, branch) pairs, overdue for forty days."""
    return [
        f"{loan_no},{branch},52240119800101{n:04d},王建国,13912345678,20000,9000,800,200,"
        f"{today - timedelta(days=40)},石门,否"
        for n, (loan_no, branch) in enumerate(loans, start=1)
    ]


def open_loans(h: Harness) -> set[str]:
    """Loan numbers of the open cases, as the database's projection has them."""
    with h.sessions() as session:
        return set(
            session.scalars(
                select(Loan.loan_no)
                .join(Case, Case.loan_id == Loan.id)
                .where(Case.stage.not_in([s.value for s in CLOSED_STAGES]))
            )
        )


async def open_cases(h: Harness, tmp_path: Path, loans: list[tuple[str, str]]) -> None:
    """Cases for (loan number, branch) pairs through the intake, each past its investigation."""
    today = await server_today(h)
    path = write(tmp_path / f"open-{len(h.started)}.csv", [HEADER_ZH, *loan_rows(loans, today)])
    report = await intake(path, h.sessions, h.client, h.task_queue, h.policy, today)
    assert report.errors == [] and report.started == len(loans), report
    for loan_no, _ in loans:
        handle = h.client.get_workflow_handle(workflow_id(loan_no))
        h.started.append(handle)
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", f"{loan_no} started")
    wanted = {loan_no for loan_no, _ in loans}
    await eventually(lambda: wanted <= open_loans(h), "the cases in the database")


async def close_cases(h: Harness, loan_nos: list[str]) -> None:
    """End the cases the way a supervisor would, and wait for them: the time-skipping server
    stops skipping time after a workflow is terminated in the middle of a task."""
    for loan_no in loan_nos:
        handle = h.client.get_workflow_handle(workflow_id(loan_no))
        with contextlib.suppress(RPCError, WorkflowUpdateFailedError):  # ended already
            await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
        await handle.result()


class RecordingClient:
    """The test client, with every signal it sends written down."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.signals: list[tuple[str, str, object]] = []

    def get_workflow_handle(self, wid: str):  # type: ignore[no-untyped-def]
        handle, signals = self.client.get_workflow_handle(wid), self.signals

        class Handle:
            async def signal(self, name: str, arg: object) -> None:
                signals.append((wid, name, arg))
                await handle.signal(name, arg)

        return Handle()


async def test_a_stored_reference_is_counted_only_for_its_own_loan_and_amount(
    h: Harness, tmp_path: Path
) -> None:
    today = await server_today(h)
    await open_cases(h, tmp_path, [("PAY-A001", "QX01"), ("PAY-B001", "QX01")])
    client = RecordingClient(h.client)

    async def feed(name: str, row: str):  # type: ignore[no-untyped-def]
        path = write(tmp_path / name, [PAYMENTS_HEADER, row])
        return await post_payments(path, h.sessions, client, today, h.policy)  # type: ignore[arg-type]

    first = await feed("p1.csv", f"PAY-A001,100.00,{today},REF-1")
    assert first.errors == [] and first.signalled == 1
    # A corrected export naming another loan, or another amount, for the same transfer.
    other_loan = await feed("p2.csv", f"PAY-B001,100.00,{today},REF-1")
    other_amount = await feed("p3.csv", f"PAY-A001,250.00,{today},REF-1")
    for report, field in ((other_loan, "loan_no"), (other_amount, "amount_yuan")):
        assert [(e.row, e.field) for e in report.errors] == [(2, field)], report.errors
        message = report.errors[0].message
        assert "REF-1" in message and "PAY-A001" in message and "100.00" in message, message
        assert report.signalled == 0
    assert len(client.signals) == 1
    # The same transfer again with another date: signalled again, with what was stored.
    again = await feed("p4.csv", f"PAY-A001,100.00,{today - timedelta(days=1)},REF-1")
    assert again.errors == [] and again.duplicates == ["REF-1"] and again.signalled == 1
    with h.sessions() as session:
        stored = session.scalars(select(Payment)).one()
    wid, _, posted = client.signals[-1]
    assert wid == workflow_id("PAY-A001")
    assert (posted.amount_fen, posted.paid_at) == (10_000, stored.paid_at)  # type: ignore[attr-defined]
    a = h.client.get_workflow_handle(workflow_id("PAY-A001"))
    b = h.client.get_workflow_handle(workflow_id("PAY-B001"))
    assert (await h.until(a, lambda s: s.paid_fen > 0, "payment counted")).paid_fen == 10_000
    assert (await h.status(b)).paid_fen == 0
    await close_cases(h, ["PAY-A001", "PAY-B001"])


def cancellations(h: Harness) -> list[tuple[str, str | None, str]]:
    """The audit trail of cancel-missing: (user, loan, outcome)."""
    with h.sessions() as session:
        return [
            (e.username, e.loan_no, e.outcome)
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "cancel_missing")
                .order_by(AuditEvent.id)
            )
        ]


QX01_LOANS = [(f"CM-01{n:02d}", "QX01") for n in range(1, 11)]
QX02_LOANS = [("CM-0201", "QX02"), ("CM-0202", "QX02")]


async def test_cancel_missing_only_in_listed_branches_of_a_real_export(
    h: Harness, tmp_path: Path
) -> None:
    from feeds.loans import CancelRefused

    today = await server_today(h)
    await open_cases(h, tmp_path, QX01_LOANS + QX02_LOANS)
    every = {loan_no for loan_no, _ in QX01_LOANS + QX02_LOANS}

    async def cancel(path: Path, branches: list[str], **options: object):  # type: ignore[no-untyped-def]
        return await cancel_missing(
            path, h.sessions, h.client, "paid at the counter", "ops", branches, **options
        )

    # An export of only its header, or the payment CSV by mistake: refused whole.
    with pytest.raises(CancelRefused, match="no rows"):
        await cancel(write(tmp_path / "header.csv", [HEADER_ZH]), ["QX01", "QX02"], apply=True)
    payments = write(tmp_path / "pay.csv", [PAYMENTS_HEADER, f"CM-0101,100.00,{today},R-1"])
    with pytest.raises(FileError, match="missing columns"):
        await cancel(payments, ["QX01"], apply=True)
    assert open_loans(h) == every and cancellations(h) == []

    # A one-branch export: QX02 is listed but not in it, so none of its cases is a candidate.
    export = write(tmp_path / "qx01.csv", [HEADER_ZH, *loan_rows(QX01_LOANS[1:], today)])
    dry = await cancel(export, ["QX01", "QX02"])
    assert (dry.candidates, dry.cancelled, dry.absent, dry.scope) == (["CM-0101"], [], ["QX02"], 10)
    assert open_loans(h) == every and cancellations(h) == []  # a dry run changes nothing
    done = await cancel(export, ["QX01", "QX02"], apply=True)
    assert (done.cancelled, done.refusal) == (["CM-0101"], "")
    await h.client.get_workflow_handle(workflow_id("CM-0101")).result()
    await eventually(lambda: open_loans(h) == every - {"CM-0101"}, "CM-0101 cancelled")
    assert cancellations(h) == [("ops", "CM-0101", "ACCEPTED")]

    # Two of the nine open QX01 cases, more than 10 %: only with the exact count confirmed.
    fewer = write(tmp_path / "fewer.csv", [HEADER_ZH, *loan_rows(QX01_LOANS[3:], today)])
    refused = await cancel(fewer, ["QX01"], apply=True)
    assert refused.candidates == ["CM-0102", "CM-0103"] and refused.cancelled == []
    assert "--confirm-count 2" in refused.refusal, refused.refusal
    wrong = await cancel(fewer, ["QX01"], apply=True, confirm_count=3)
    assert wrong.cancelled == [] and "3" in wrong.refusal
    assert len(cancellations(h)) == 1
    confirmed = await cancel(fewer, ["QX01"], apply=True, confirm_count=2)
    assert confirmed.cancelled == ["CM-0102", "CM-0103"]
    assert cancellations(h)[1:] == [("ops", "CM-0102", "ACCEPTED"), ("ops", "CM-0103", "ACCEPTED")]
    await close_cases(h, sorted(every))


async def test_cancel_missing_command_is_a_dry_run_and_says_why_it_refuses(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cli import feeds_commands
    from cli.main import parser
    from service.settings import Settings

    loans = [("CL-0101", "QX01"), ("CL-0102", "QX01"), ("CL-0103", "QX01")]
    today = await server_today(h)
    await open_cases(h, tmp_path, loans)

    async def connect(settings: Settings):  # type: ignore[no-untyped-def]
        return h.client

    monkeypatch.setattr(feeds_commands, "connect", connect)
    db_url = str(h.sessions.kw["bind"].url)
    strict = Settings(db_url=db_url, task_queue=h.task_queue)  # at most 10 % without confirming
    lenient = Settings(db_url=db_url, task_queue=h.task_queue, cancel_max_percent=50)
    export = write(tmp_path / "export.csv", [HEADER_ZH, *loan_rows(loans[1:], today)])
    header_only = write(tmp_path / "header.csv", [HEADER_ZH])
    payments = write(tmp_path / "pay.csv", [PAYMENTS_HEADER, f"CL-0101,100.00,{today},R-1"])
    base = ["--reason", "paid at the counter", "--by", "ops"]

    async def run(settings: Settings, *argv: str) -> tuple[int, str, str]:
        args = parser().parse_args(["cancel-missing", *argv, *base])
        code = await feeds_commands.cmd_cancel_missing(args, settings)
        out = capsys.readouterr()
        return code, out.out, out.err

    with pytest.raises(SystemExit) as no_branch:  # --branch is required
        parser().parse_args(["cancel-missing", str(export), *base])
    assert no_branch.value.code == 2
    code, _, err = await run(lenient, str(export), "--branch", "ZZ99")
    assert code == 2 and "ZZ99" in err
    code, _, err = await run(lenient, str(header_only), "--branch", "QX01", "--apply")
    assert code == 1 and "no rows" in err
    code, _, err = await run(lenient, str(payments), "--branch", "QX01", "--apply")
    assert code == 1 and "missing columns" in err

    code, out, err = await run(lenient, str(export), "--branch", "QX01")  # no --apply: dry
    assert code == 0 and "CL-0101" in out and "would cancel 1" in out, out + err
    code, out, err = await run(lenient, str(export), "--branch", "QX01,QX02")
    assert code == 3 and "QX02" in err and "would cancel 1" in out, out + err
    code, out, err = await run(strict, str(export), "--branch", "QX01", "--apply")
    assert code == 1 and "--confirm-count 1" in err, out + err
    assert open_loans(h) == {"CL-0101", "CL-0102", "CL-0103"} and cancellations(h) == []

    code, out, err = await run(
        strict, str(export), "--branch", "QX01", "--apply", "--confirm-count", "1"
    )
    assert code == 0 and "cancelled 1" in out and "CL-0101" in out, out + err
    await h.client.get_workflow_handle(workflow_id("CL-0101")).result()
    assert cancellations(h) == [("ops", "CL-0101", "ACCEPTED")]
    await close_cases(h, [loan_no for loan_no, _ in loans])


def test_yuan_amounts_are_exact(tmp_path: Path) -> None:
    from feeds.csv_files import yuan_to_fen

    errors: list = []
    assert yuan_to_fen(2, "x", "12,345.67", errors) == 1_234_567
    assert yuan_to_fen(2, "x", "0.1", errors) == 10 and errors == []
    yuan_to_fen(3, "x", "1.005", errors)
    assert str(errors[-1]) == "row 3, x: '1.005': at most two decimals (fen)"


@pytest.fixture
async def hdb(env, sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    """A worker on a database of each kind (SQLite and PostgreSQL)."""
    async with running_worker(env, sessions, tmp_path / "data") as harness:
        yield harness


async def test_a_mixed_export_then_its_rejected_rows_corrected_and_sent_again(
    hdb: Harness, tmp_path: Path
) -> None:
    """Dates and amounts as people write them are imported; the rows refused (a day-first
    date, more outstanding than lent, interest out of proportion) come back in a file with
    their reason, which, corrected, is sent again like any export. The payments too."""
    h = hdb
    today = await server_today(h)
    d = today - timedelta(days=45)
    tag = uuid.uuid4().hex[:6].upper()
    no = [f"MX{tag}-{n:04d}" for n in range(5)]
    person = [f"52240119800101{2000 + n},{name},1391234{5600 + n}" for n, name in
              enumerate(["甲", "乙", "丙", "丁", "戊"])]  # fmt: skip
    # An Excel day number (the test server's clock runs years ahead: at most 2099's).
    serial = (min(d, EXCEL_LAST) - EXCEL_EPOCH).days
    path = write(
        tmp_path / "export.csv",
        [
            HEADER_ZH,
            f'{no[0]},QX01,{person[0]},"20,000.00",９０００元,800,200,{d:%Y年%m月%d日},石门,否',
            f"{no[1]},QX02,{person[1]},30000,10000,0,0,{serial},河口,是",
            f"{no[2]},QX01,{person[2]},20000,9000,800,200,{d.day}/{d.month}/{d.year},,否",
            f"{no[3]},QX01,{person[3]},20000,20000.50,0,0,{d:%Y%m%d},,否",
            f"{no[4]},QX01,{person[4]},20000,9000,9000,500,{d:%Y.%m.%d},,否",
        ],
    )
    report = await intake(path, h.sessions, h.client, h.task_queue, h.policy, today)
    assert [s.loan_no for s in report.good] == no[:2] and report.started == 2
    assert {(e.row, e.field) for e in report.errors} == {
        (4, "overdue_since"),
        (5, "outstanding_principal_yuan"),
        (6, "interest_yuan"),
    }
    assert report.rejected_file == tmp_path / "export.rejected.csv"
    text = report.rejected_file.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff")  # as the export: UTF-8 with a BOM
    rejected = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rejected[0] == ["拒绝原因", *HEADER_ZH.split(",")]
    assert [r[1] for r in rejected[1:]] == no[2:]
    shaped = f"{'9' * len(str(d.day))}/{'9' * len(str(d.month))}/9999"  # D/M/YYYY's shape
    assert rejected[1][0].startswith(f"overdue_since: a value shaped '{shaped}' is not a date")
    assert str(d.year) not in rejected[1][0]  # its shape, not the value
    assert "more than the loan amount" in rejected[2][0]
    assert "max_interest_penalty_percent" in rejected[3][0]

    column = rejected[0].index
    rejected[1][column("逾期起始日")] = f"{d:%Y/%m/%d}"
    rejected[2][column("未还本金")] = "20,000.00"
    rejected[3][column("欠息")] = "900"
    out = io.StringIO()
    csv.writer(out).writerows(rejected)
    corrected = tmp_path / "corrected.csv"
    corrected.write_text(out.getvalue(), encoding="utf-8-sig")
    again = await intake(corrected, h.sessions, h.client, h.task_queue, h.policy, today)
    assert again.errors == [] and again.started == 3
    assert again.rejected_file == tmp_path / "corrected.rejected.csv"
    assert again.rejected_file.read_text("utf-8-sig").splitlines() == [
        "拒绝原因," + HEADER_ZH  # nothing to send again; no earlier file left to mislead
    ]
    with h.sessions() as session:
        loans = {ln.loan_no: ln for ln in session.scalars(select(Loan))}
    assert sorted(loans) == no and {ln.overdue_since for ln in loans.values()} == {d}
    assert loans[no[0]].outstanding_principal_fen == 900_000
    assert loans[no[3]].outstanding_principal_fen == 2_000_000
    assert loans[no[4]].interest_fen == 90_000

    yesterday = today - timedelta(days=1)
    feed = write(
        tmp_path / "payments.csv",
        [
            PAYMENTS_HEADER,
            f"{no[0]},１，０００．００元,{yesterday.year}年{yesterday.month}月{yesterday.day}日,MX-1",
            f'{no[1]},"1,000.005",{yesterday:%Y%m%d},MX-2',
        ],
    )
    paid = await post_payments(feed, h.sessions, h.client, today, h.policy)
    assert paid.signalled == 1 and [(e.row, e.field) for e in paid.errors] == [(3, "amount_yuan")]
    assert paid.rejected_file == tmp_path / "payments.rejected.csv"
    assert paid.rejected_file.read_text("utf-8-sig").splitlines() == [
        "拒绝原因," + PAYMENTS_HEADER,
        f'"amount_yuan: \'1,000.005\': at most two decimals (fen)",{no[1]},"1,000.005",'
        f"{yesterday:%Y%m%d},MX-2",
    ]
    with h.sessions() as session:
        assert session.scalar(select(Payment.amount_fen)) == 100_000
    for loan_no in no:
        handle = h.client.get_workflow_handle(workflow_id(loan_no))
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", f"{loan_no} started")
        h.started.append(handle)
    await close_cases(h, no)
