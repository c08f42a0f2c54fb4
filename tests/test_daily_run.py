"""The daily feed run (issue 18, item 6): DailyFeedRunWorkflow picks the newest export in a
drop folder, runs the intake and that day's payment feed, writes a run report; the Schedule
that starts it (cli.main schedule); the reports on /feeds."""

from __future__ import annotations

import argparse
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import inspect, select
from temporalio.client import Client, ScheduleOverlapPolicy

from cli.main import parser
from cli.schedule_commands import cmd_schedule
from db.engine import make_engine
from db.migrate import downgrade, upgrade
from db.models import DailyRun, Loan, Payment
from domain.daily_run import (
    DEFAULT_EXPORT_PATTERN,
    DEFAULT_PAYMENTS_PATTERN,
    WORKFLOW_TYPE,
    DailyRunInput,
    DailyRunResult,
    RunStatus,
    is_export,
    names_day,
    patterns,
)
from domain.names import workflow_id
from service.settings import Settings
from service.users import Role
from tests.harness import Harness, eventually, running_worker
from tests.test_feeds import HEADER_ZH, export, write
from tests.web_support import add_user, app_for, form_login

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def today_of(h: Harness) -> datetime:
    return (await h.now()).astimezone(SHANGHAI)


def aged(path: Path, hours: float) -> Path:
    """The file as if written `hours` ago (the newest export is chosen by its time)."""
    then = datetime.now(UTC).timestamp() - hours * 3600
    os.utime(path, (then, then))
    return path


async def run_once(h: Harness, run: DailyRunInput) -> DailyRunResult:
    return await h.client.execute_workflow(
        WORKFLOW_TYPE,
        run,
        id=f"daily-test-{uuid.uuid4().hex[:8]}",
        task_queue=h.task_queue,
        result_type=DailyRunResult,
    )


def reports(h: Harness) -> list[DailyRun]:
    with h.sessions() as session:
        return list(session.scalars(select(DailyRun).order_by(DailyRun.id)))


async def end_cases(h: Harness, loans: list[str]) -> None:
    for loan in loans:
        h.started.append(h.client.get_workflow_handle(workflow_id(loan)))


async def test_the_newest_export_is_taken_once_with_that_days_payments(
    env, sessions, tmp_path: Path
) -> None:
    async with running_worker(env, sessions, tmp_path / "data") as h:
        now = await today_of(h)
        today = now.date()
        drop = tmp_path / "drop"
        drop.mkdir()
        old = export(today)
        aged(write(drop / "export-old.csv", [HEADER_ZH, *old.good]), 30)
        x = export(today)
        newest = write(drop / "export-new.csv", [HEADER_ZH, *x.good, x.bad[0][0]])
        # Yesterday's rejected-rows file beside it is newer, and never taken for an export.
        write(drop / "export-old.rejected.csv", ["拒绝原因," + HEADER_ZH])
        ref = f"R{uuid.uuid4().hex[:10]}"
        paid_on = today - timedelta(days=1)
        write(
            drop / f"payments-{today:%Y%m%d}.csv",
            ["贷款编号,金额,还款日期,流水号", f"{x.loans[0]},100.00,{paid_on},{ref}"],
        )
        # Older than the day before at any hour of the run's day (30 hours was not, before 06:00).
        aged(write(drop / "payments-old.csv", ["贷款编号,金额,还款日期,流水号"]), 72)

        first = await run_once(h, DailyRunInput(str(drop)))
        await end_cases(h, x.loans)
        assert first.status == RunStatus.PARTIAL, first
        assert first.file_name == "export-new.csv"
        assert first.sha256 == hashlib.sha256(newest.read_bytes()).hexdigest()
        assert (first.rows_read, first.cases_started, first.rejected) == (3, 2, 1)
        assert first.payments_file == f"payments-{today:%Y%m%d}.csv"
        assert first.payments_signalled == 1
        rejected = Path(first.rejected_file)
        assert rejected.is_file() and rejected.parent != drop  # not into the drop folder
        assert "phone" in rejected.read_text(encoding="utf-8-sig")  # the row and its reason
        with h.sessions() as session:
            loans = set(session.scalars(select(Loan.loan_no)))
        assert set(x.loans) <= loans and not set(old.loans) & loans  # the older one not taken
        with h.sessions() as session:
            assert session.scalar(select(Payment.amount_fen).where(Payment.reference == ref)) == (
                10_000
            )

        # The same file again (a copy under another name, same content): nothing new.
        (drop / "export-again.csv").write_bytes(newest.read_bytes())
        second = await run_once(h, DailyRunInput(str(drop)))
        assert second.status == RunStatus.ALREADY_PROCESSED, second
        assert second.file_name == "export-again.csv" and second.sha256 == first.sha256
        assert (second.rows_read, second.cases_started, second.payments_signalled) == (0, 0, 0)
        assert "已处理过" in second.error and "export-new.csv" in second.error
        rows = reports(h)
        assert [r.status for r in rows] == [RunStatus.PARTIAL, RunStatus.ALREADY_PROCESSED]
        assert [r.processed_sha256 for r in rows] == [first.sha256, None]
        assert all(r.finished_at is not None for r in rows)


async def test_the_next_days_export_updates_the_running_cases_debts(
    env, sessions, tmp_path: Path
) -> None:
    async with running_worker(env, sessions, tmp_path / "data") as h:
        today = (await today_of(h)).date()
        drop = tmp_path / "drop"
        drop.mkdir()
        x = export(today)
        aged(write(drop / "export-1.csv", [HEADER_ZH, *x.good]), 24)
        first = await run_once(h, DailyRunInput(str(drop)))
        await end_cases(h, x.loans)
        assert (first.cases_started, reports(h)[0].debts_updated) == (2, 0)
        # The next export: the first loan's interest has grown by 12.50 yuan.
        grown = [x.good[0].replace(",9000,800,200,", ",9000,812.50,200,"), x.good[1]]
        write(drop / "export-2.csv", [HEADER_ZH, *grown])
        second = await run_once(h, DailyRunInput(str(drop)))
        assert (second.cases_started, second.already_running) == (0, 2)
        assert reports(h)[-1].debts_updated == 1  # the second loan's figures did not change
        handle = h.client.get_workflow_handle(workflow_id(x.loans[0]))
        status = await h.until(handle, lambda s: s.debt_fen == 1_001_250, "the new debt")
        assert status.outstanding_fen == 1_001_250


async def test_payments_are_posted_when_the_export_is_old_and_when_they_came_late(
    env, sessions, tmp_path: Path
) -> None:
    """The export did not change (已处理过): the day's payment file is still posted; a file
    written after yesterday's run, named for yesterday, is posted by today's."""
    async with running_worker(env, sessions, tmp_path / "data") as h:
        today = (await today_of(h)).date()
        drop = tmp_path / "drop"
        drop.mkdir()
        x = export(today)
        aged(write(drop / "export.csv", [HEADER_ZH, *x.good]), 24)
        first = await run_once(h, DailyRunInput(str(drop)))
        await end_cases(h, x.loans)
        assert first.cases_started == 2 and first.payments_file == ""
        yesterday = today - timedelta(days=1)
        refs = [f"R{uuid.uuid4().hex[:10]}" for _ in range(2)]
        header = "贷款编号,金额,还款日期,流水号"
        write(
            drop / f"payments-{today:%Y%m%d}.csv", [header, f"{x.loans[0]},10.00,{today},{refs[0]}"]
        )
        late = drop / f"payments-{yesterday:%Y%m%d}.csv"
        aged(write(late, [header, f"{x.loans[1]},20.00,{yesterday},{refs[1]}"]), 10)
        second = await run_once(h, DailyRunInput(str(drop)))
        assert second.status == RunStatus.ALREADY_PROCESSED and second.cases_started == 0
        assert second.payments_file == late.name and second.payments_signalled == 1  # oldest
        third = await run_once(h, DailyRunInput(str(drop)))
        assert third.payments_file == f"payments-{today:%Y%m%d}.csv"
        assert third.payments_signalled == 1
        fourth = await run_once(h, DailyRunInput(str(drop)))
        assert fourth.payments_file == ""  # nothing left to post
        with h.sessions() as session:
            stored = set(session.scalars(select(Payment.reference)))
        assert set(refs) <= stored


async def test_a_bad_export_fails_once_with_its_reason(
    env, sqlite_sessions, tmp_path: Path
) -> None:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as h:
        drop = tmp_path / "drop"
        drop.mkdir()
        empty = await run_once(h, DailyRunInput(str(drop)))
        assert empty.status == RunStatus.FAILED and "没有导出文件" in empty.error

        # The payment feed's file dropped as an export: not a loan export, refused whole.
        write(drop / "export.csv", ["贷款编号,金额,还款日期,流水号", "L1,1,2026-01-01,R1"])
        wf_id = f"daily-test-{uuid.uuid4().hex[:8]}"
        bad = await h.client.execute_workflow(
            WORKFLOW_TYPE,
            DailyRunInput(str(drop)),
            id=wf_id,
            task_queue=h.task_queue,
            result_type=DailyRunResult,
        )
        assert bad.status == RunStatus.FAILED, bad
        assert bad.error.startswith("intake: export.csv: missing columns"), bad.error
        assert "id_number" in bad.error
        # Not retried: one attempt of the intake activity.
        history = await h.client.get_workflow_handle(wf_id).fetch_history()
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        ]
        assert attempts == [1, 1, 1], attempts  # pick, intake, finish
        (row,) = [r for r in reports(h) if r.file_name == "export.csv"]
        assert row.status == RunStatus.FAILED and "missing columns" in row.error
        # Not "already processed": the corrected file's run processes it; and the same bad
        # file dropped again is tried again (and fails again), never silently skipped.
        again = await run_once(h, DailyRunInput(str(drop)))
        assert again.status == RunStatus.FAILED and "missing columns" in again.error


def settings_for(client: Client, db_url: str, task_queue: str) -> Settings:
    config = client.service_client.config
    return Settings(
        temporal_address=config.target_host,
        temporal_namespace=client.namespace,
        task_queue=task_queue,
        db_url=db_url,
    )


async def test_the_schedule_runs_daily_skips_overlaps_and_is_updated_in_place(
    dev_env, sqlite_sessions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        today = (await today_of(h)).date()
        drop = tmp_path / "drop"
        drop.mkdir()
        x = export(today)
        write(drop / "导出.csv", [HEADER_ZH, *x.good])
        url = str(sqlite_sessions.kw["bind"].url)
        settings = settings_for(h.client, url, h.task_queue)
        schedule_id = f"daily-test-{uuid.uuid4().hex[:8]}"

        async def cli(*argv: str) -> int:
            args: argparse.Namespace = parser().parse_args(["schedule", *argv, "--id", schedule_id])
            return await cmd_schedule(args, settings)

        assert await cli("--export-dir", "x", "--at", "6:61") == 2
        assert await cli("--export-dir", str(drop), "--at", "06:00") == 0
        assert await cli("--export-dir", str(drop), "--at", "05:30", "--tz", "Asia/Urumqi") == 0
        handle = h.client.get_schedule_handle(schedule_id)
        try:
            s = (await handle.describe()).schedule
            assert s.policy.overlap == ScheduleOverlapPolicy.SKIP
            assert s.policy.catchup_window == timedelta(hours=23)
            assert s.spec.time_zone_name == "Asia/Urumqi"
            (calendar,) = s.spec.calendars
            assert (calendar.hour[0].start, calendar.minute[0].start) == (5, 30)
            next_run = (await handle.describe()).info.next_action_times[0]
            local = next_run.astimezone(ZoneInfo("Asia/Urumqi"))
            assert (local.hour, local.minute) == (5, 30)
            assert s.action.task_queue == h.task_queue  # type: ignore[attr-defined]

            await handle.trigger()
            (row,) = await eventually(  # type: ignore[misc]
                lambda: [r for r in reports(h) if r.finished_at is not None],
                "the triggered run's report",
                timeout=30,
            )
            await end_cases(h, x.loans)
            assert row.status == RunStatus.SUCCESS, row.error
            assert (row.file_name, row.rows_read, row.cases_started) == ("导出.csv", 2, 2)
            # The Schedule's own start time is the report's.
            assert row.scheduled_at <= datetime.now(UTC)
            assert row.run_key.startswith(f"{schedule_id}-")  # started by the Schedule
            capsys.readouterr()
            assert await cli("--show") == 0
            shown = capsys.readouterr().out
            assert "every day at 05:30 Asia/Urumqi" in shown and "overlap SKIP" in shown
            assert "成功 SUCCESS  导出.csv  read 2, started 2" in shown
        finally:
            assert await cli("--delete") == 0
        assert await cli("--delete") == 1  # gone


async def test_the_back_office_sees_the_run_reports(dev_env, sqlite_sessions, tmp_path) -> None:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        rejected = tmp_path / "abc-export.rejected.csv"
        rejected.write_text("拒绝原因,贷款编号\nphone: bad,L1\n", encoding="utf-8")
        now = datetime.now(UTC)
        with h.sessions.begin() as session:
            for n, (status, name) in enumerate(
                [
                    (RunStatus.PARTIAL, "export-1.csv"),
                    (RunStatus.ALREADY_PROCESSED, "copy.csv"),
                    (RunStatus.FAILED, "bad.csv"),
                ]  # fmt: skip
            ):
                session.add(
                    DailyRun(
                        run_key=f"r{n}",
                        scheduled_at=now - timedelta(days=3 - n),
                        finished_at=now,
                        file_name=name,
                        file_sha256="ab" * 32,
                        rows_read=120,
                        cases_started=100,
                        already_running=17,
                        rejected=3 if n == 0 else 0,
                        rejected_file=str(rejected) if n == 0 else "",
                        status=status,
                        error="intake: bad.csv: missing columns: loan_no" if n == 2 else "",
                    )  # fmt: skip
                )
        add_user(h, "office", Role.BACK_OFFICE)
        add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
        add_user(h, "coll", Role.COLLECTOR, collector_id="QX01-C01")
        transport = httpx.ASGITransport(app=app_for(h))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await form_login(http, "office")
            http.cookies.set("collection_session", r.cookies["collection_session"])
            page = (await http.get("/feeds")).text
            runs = page.split('id="daily-runs"')[1]
            for text in ("部分拒绝", "已处理过", "失败", "export-1.csv", "missing columns"):
                assert text in runs, text
            assert '<td class="num">100</td>' in runs and '<td class="num">3</td>' in runs
            assert (
                runs.index("失败") < runs.index("已处理过") < runs.index("部分拒绝")
            )  # newest first
            (run_id,) = [r.id for r in reports(h) if r.rejected]
            link = f"/feeds/runs/{run_id}/rejected"
            assert link in runs and str(rejected) in runs
            download = await http.get(link)
            assert download.status_code == 200 and "phone: bad" in download.text
            http.cookies.clear()
            for user, status in (("sup", 200), ("coll", 404)):
                r = await form_login(http, user)
                http.cookies.set("collection_session", r.cookies["collection_session"])
                shown = await http.get("/feeds/runs")
                assert shown.status_code == status
                if user == "sup":
                    assert "部分拒绝" in shown.text and link not in shown.text
                    assert (await http.get(link)).status_code == 404  # rows: names, ID numbers
                    assert (await http.get("/feeds")).status_code == 404
                http.cookies.clear()


def test_migration_0010_adds_and_drops_the_run_reports(tmp_path: Path, request) -> None:
    from tests.conftest import fresh_database

    for kind in ("sqlite", "postgresql"):
        url = fresh_database(kind, tmp_path, request) if kind == "sqlite" else None
        if url is None:
            try:
                url = fresh_database(kind, tmp_path, request)
            except pytest.skip.Exception:
                continue
        upgrade(url)
        engine = make_engine(url)
        try:
            assert "daily_runs" in inspect(engine).get_table_names()
            downgrade(url, "0009")
            assert "daily_runs" not in inspect(engine).get_table_names()
            upgrade(url)
            assert "daily_runs" in inspect(engine).get_table_names()
        finally:
            engine.dispose()


def test_which_files_are_exports_and_which_payments_of_the_day() -> None:
    exports, payments = patterns(DEFAULT_EXPORT_PATTERN), patterns(DEFAULT_PAYMENTS_PATTERN)
    for name in ("导出.csv", "EXPORT.CSV", "贷款台账.xlsx"):
        assert is_export(name, exports, payments), name
    for name in (
        "export.rejected.csv",  # a run's rejected rows
        "~$贷款台账.xlsx",  # Excel's lock file while the workbook is open
        ".export.csv",
        "payments-20261105.csv",
        "还款流水.xlsx",
        "export.xls",  # not matched by the default pattern
        "notes.txt",
    ):
        assert not is_export(name, exports, payments), name
    day = datetime.now(SHANGHAI).date()
    assert names_day(f"payments-{day:%Y%m%d}.csv", day)
    assert names_day(f"还款-{day.isoformat()}.xlsx", day)
    assert not names_day(f"payments-{day - timedelta(days=1):%Y%m%d}.csv", day)


async def test_the_daily_run_reads_the_export_through_its_mapping_profile(
    env, sqlite_sessions, tmp_path: Path
) -> None:
    import inspect as signature_of

    from feeds.loans import intake

    if "profile" not in signature_of.signature(intake).parameters:
        pytest.skip("the intake takes no mapping profile yet (issue 18, item 2)")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as h:
        today = (await today_of(h)).date()
        drop = tmp_path / "drop"
        drop.mkdir()
        x = export(today)
        write(drop / "own-shape.csv", [HEADER_ZH.replace("姓名", "甲方户名"), *x.good])
        profile = tmp_path / "profile.toml"
        profile.write_text('[columns]\n"甲方户名" = "name"\n', encoding="utf-8")
        bad_profile = tmp_path / "bad.toml"
        bad_profile.write_text("colums = 1\n", encoding="utf-8")

        failed = await run_once(h, DailyRunInput(str(drop), profile=str(bad_profile)))
        assert failed.status == RunStatus.FAILED and "colums" in failed.error, failed.error
        done = await run_once(h, DailyRunInput(str(drop), profile=str(profile)))
        await end_cases(h, x.loans)
        assert done.status == RunStatus.SUCCESS, done.error
        assert (done.rows_read, done.cases_started) == (2, 2)
