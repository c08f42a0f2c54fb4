"""README: the feeds' exit codes — "0 every row good, 3 some rows rejected (the good ones
processed), 1 the file could not be read" (issue 13, item 19). `python -m cli.main intake`
and `payments` as a cron job runs them, against the dev server and a worker running the
cases they start and signal.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from db.models import Loan, Payment
from domain.names import workflow_id
from tests.harness import Harness, running_worker

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "loan_no,branch,id_number,name,phone,principal_yuan,outstanding_principal_yuan,"
    "interest_yuan,penalty_yuan,overdue_since,village,remote"
)
PAYMENTS_HEADER = "loan_no,amount_yuan,paid_on,reference"


def today():  # type: ignore[no-untyped-def]
    """The feeds' today: the default policy's clock (Asia/Shanghai)."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def loan_row(loan_no: str, n: int, phone: str = "13912345678") -> str:
    since = today() - timedelta(days=40)
    return f"{loan_no},QX01,52240119800101{n:04d},王建国,{phone},20000,9000,800,200,{since},石门,否"


@pytest.fixture
async def cli(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[tuple[Harness, object]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": h.task_queue,  # the cases it starts run on this worker
            "COLLECTION_DB_URL": str(sqlite_sessions.kw["bind"].url),
            "COLLECTION_DATA_DIR": str(tmp_path / "data"),
        }
        env.pop("COLLECTION_POLICY_FILE", None)

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip

        try:
            yield h, run
        finally:
            for loan_no in started(h):  # the cases the CLI started: end them
                h.started.append(h.client.get_workflow_handle(workflow_id(loan_no)))


def started(h: Harness) -> list[str]:
    with h.sessions() as session:
        return list(session.scalars(select(Loan.loan_no).order_by(Loan.loan_no)))


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def unreadable(tmp_path: Path, header: str) -> dict[str, str]:
    """Files no feed can read: absent, not text, no such columns."""
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xff\xff\n\x80\x80\n")
    return {
        "absent": str(tmp_path / "no-such-file.csv"),
        "not text": str(binary),
        "missing columns": write(tmp_path / "columns.csv", [header.split(",", 1)[1], "x"]),
    }


async def test_intake_exits_0_when_all_rows_are_good_3_when_some_are_rejected_1_unreadable(
    cli, tmp_path: Path
) -> None:
    h, run = cli
    good = write(tmp_path / "good.csv", [HEADER, loan_row("EX-0001", 1), loan_row("EX-0002", 2)])
    r = await run("intake", good)
    assert r.returncode == 0, r.stderr
    assert "2 rows: imported 2, rejected 0; cases started 2" in r.stdout
    assert "rejected:" not in r.stderr

    mixed = write(
        tmp_path / "mixed.csv",
        [HEADER, loan_row("EX-0003", 3), loan_row("EX-0004", 4, phone="12345")],
    )
    dry = await run("intake", mixed, "--dry-run")
    assert dry.returncode == 3, dry.stderr
    assert started(h) == ["EX-0001", "EX-0002"]  # a dry run writes nothing
    r = await run("intake", mixed)
    assert r.returncode == 3, r.stderr
    assert "rejected: row 3, phone:" in r.stderr
    assert "2 rows: imported 1, rejected 1; cases started 1" in r.stdout
    rejected_rows = tmp_path / "mixed.rejected.csv"
    assert f"rejected rows, to correct and send again: {rejected_rows}" in r.stdout
    assert "EX-0004" in rejected_rows.read_text("utf-8-sig")
    assert started(h) == ["EX-0001", "EX-0002", "EX-0003"]  # the good row processed
    handle = h.client.get_workflow_handle(workflow_id("EX-0003"))
    await h.until(handle, lambda s: s.stage != "INVESTIGATION", "EX-0003's case running")

    for what, path in unreadable(tmp_path, HEADER).items():
        r = await run("intake", path)
        assert r.returncode == 1, (what, r.returncode, r.stderr)
        assert r.stderr.startswith(f"error: {path}: "), (what, r.stderr)
        assert "Traceback" not in r.stderr
    assert started(h) == ["EX-0001", "EX-0002", "EX-0003"]


async def test_payments_exit_0_when_all_rows_are_good_3_when_some_are_rejected_1_unreadable(
    cli, tmp_path: Path
) -> None:
    h, run = cli
    loans = write(
        tmp_path / "loans.csv", [HEADER, loan_row("PX-0001", 11), loan_row("PX-0002", 12)]
    )
    assert (await run("intake", loans)).returncode == 0
    handles = {n: h.client.get_workflow_handle(workflow_id(n)) for n in ("PX-0001", "PX-0002")}
    for handle in handles.values():
        await h.until(handle, lambda s: s.stage != "INVESTIGATION", "case running", timeout=30)
    paid_on = today() - timedelta(days=1)

    good = write(
        tmp_path / "good.csv",
        [PAYMENTS_HEADER, f"PX-0001,100,{paid_on},REF-1", f"PX-0002,200.50,{paid_on},REF-2"],
    )
    r = await run("payments", good)
    assert r.returncode == 0, r.stderr
    assert "2 rows: signalled 2" in r.stdout and "rejected 0" in r.stdout
    await h.until(handles["PX-0001"], lambda s: s.paid_fen == 10_000, "REF-1 counted")
    await h.until(handles["PX-0002"], lambda s: s.paid_fen == 20_050, "REF-2 counted")
    # The same file again is safe: references seen before are reported, not rejected.
    again = await run("payments", good)
    assert again.returncode == 0, again.stderr
    assert "references seen before: 2" in again.stdout

    mixed = write(
        tmp_path / "mixed.csv",
        [PAYMENTS_HEADER, f"PX-0001,50,{paid_on},REF-3", f"NO-SUCH-LOAN,50,{paid_on},REF-4"],
    )
    r = await run("payments", mixed)
    assert r.returncode == 3, r.stderr
    assert "rejected: row 3, loan_no: unknown loan 'NO-SUCH-LOAN'" in r.stderr
    assert "2 rows: signalled 1" in r.stdout
    rejected_rows = tmp_path / "mixed.rejected.csv"
    assert f"rejected rows, to correct and send again: {rejected_rows}" in r.stdout
    assert "NO-SUCH-LOAN" in rejected_rows.read_text("utf-8-sig")
    await h.until(handles["PX-0001"], lambda s: s.paid_fen == 15_000, "REF-3 counted")

    for what, path in unreadable(tmp_path, PAYMENTS_HEADER).items():
        r = await run("payments", path)
        assert r.returncode == 1, (what, r.returncode, r.stderr)
        assert r.stderr.startswith(f"error: {path}: "), (what, r.stderr)
        assert "Traceback" not in r.stderr
    with h.sessions() as session:
        refs = session.scalars(select(Payment.reference).order_by(Payment.reference)).all()
    assert refs == ["REF-1", "REF-2", "REF-3"]
    assert (await h.status(handles["PX-0002"])).paid_fen == 20_050  # counted once
