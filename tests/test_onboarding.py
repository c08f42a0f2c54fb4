"""Issue 18's "done when": a new cooperative goes from an empty database to running cases with
README's commands only — branches file, collectors file, users, then its own export (an Excel
workbook with its own headers: a branch by name, days overdue instead of a date) through
`intake --dry-run` and `intake`; the next day's export updates the running case's debt."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from db.engine import make_engine, session_factory
from db.models import Borrower, Loan, User
from tests.harness import running_worker

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


def workbook(path: Path, rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


async def test_a_cooperative_onboards_itself_from_an_empty_database(dev_env, tmp_path: Path):  # type: ignore[no-untyped-def]
    db = tmp_path / "coop.db"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "COLLECTION_DB_URL": f"sqlite:///{db}",
        "COLLECTION_DATA_DIR": str(tmp_path / "data"),
        "COLLECTION_PASSWORD": "a-long-enough-passphrase-2026",
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    await run("migrate")
    branches = tmp_path / "网点.csv"
    branches.write_text("网点代码,网点名称,县\nSM01,石门信用社,石门县\n", encoding="gb18030")
    await run("branches", str(branches), "--by", "ops")
    valid_until = f"{datetime.now(SHANGHAI).date() + timedelta(days=365)}"  # a year ahead
    collectors = workbook(
        tmp_path / "催收员.xlsx",
        [
            ["工号", "姓名", "网点代码", "案件容量", "手机号", "培训有效期"],
            ["SM01-C01", "李明", "SM01", 30, "13800000001", valid_until],
            ["SM01-C02", "张华", "SM01", 30, "13800000002", valid_until],
        ],
    )
    await run("collectors", str(collectors), "--by", "ops")
    await run("user", "li", "--role", "SUPERVISOR", "--branch", "SM01")
    await run("user", "zhang", "--role", "COLLECTOR", "--collector", "SM01-C01")

    today = datetime.now(SHANGHAI).date()
    header = ["借据号", "机构名称", "客户名称", "证件号码", "联系电话", "合同金额", "贷款余额",
              "表内欠息", "逾期罚息", "逾期天数"]  # fmt: skip
    row = ["JJ0001", "石门信用社", "王建国", "522401198001011234", "13912345678", "20,000.00",
           "9000", "800", "200", 75]  # fmt: skip
    export = workbook(tmp_path / "逾期贷款.xlsx", [header, row])
    dry = await run("intake", str(export), "--dry-run")
    assert "机构名称" in dry.stdout and "逾期天数" in dry.stdout  # which column fed which field
    engine = make_engine(env["COLLECTION_DB_URL"])
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            assert session.scalar(select(Loan)) is None  # a dry run writes nothing
        async with running_worker(dev_env, sessions, tmp_path / "data") as h:
            env["TEMPORAL_TASK_QUEUE"] = h.task_queue  # the cases on this test's worker
            await run("intake", str(export))
            handle = h.client.get_workflow_handle("collection-JJ0001")
            h.started.append(handle)
            status = await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "started")
            assert status.branch == "SM01" and status.days_past_due == 75
            assert set(status.collectors) <= {"SM01-C01", "SM01-C02"}
            with sessions() as session:
                loan = session.scalar(select(Loan).where(Loan.loan_no == "JJ0001"))
                assert loan is not None and loan.overdue_since == date.fromordinal(
                    today.toordinal() - 75
                )
                assert session.scalar(select(Borrower.name)) == "王建国"
                assert {u.username for u in session.scalars(select(User))} == {"li", "zhang"}
            # The next day's export: the interest and penalty have grown.
            row[7:9] = ["812.50", "203.40"]
            second = await run("intake", str(workbook(tmp_path / "逾期贷款2.xlsx", [header, row])))
            assert "JJ0001: 10,000.00 → 10,015.90" in second.stdout
            await h.until(handle, lambda s: s.outstanding_fen == 1_001_590, "the new debt")
            await h.pay(handle, 1_001_590)
            await handle.result()
    finally:
        engine.dispose()
