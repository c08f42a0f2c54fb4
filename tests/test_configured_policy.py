"""One source for policy and time zone: a policy file with another time zone and other quiet
hours changes what the CLI, the pages and the feeds do, and a branch with a time zone of its
own has its cases' dates read on that clock. Real cases on the dev server, as in test_cli.py
and test_pages.py; every date is built from today, on the clock under test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update

from db.models import Branch, Case, Loan, Payment, Visit
from domain.models import CaseInput
from domain.names import workflow_id
from domain.plans import add_months
from domain.policy import Policy
from service.converter import DATA_CONVERTER
from service.local_time import branch_policy, loan_policy
from service.settings import Settings
from service.users import Role
from tests.harness import Harness, eventually, running_worker
from tests.test_feeds import HEADER_ZH, write
from tests.web_support import PASSWORD, add_user, case_waiting_for_visit
from webapp.app import create_app
from webapp.pages import WebConfig
from webapp.twilio_webhooks import WebhookConfig

ROOT = Path(__file__).resolve().parent.parent
# The cooperative's clock: New York (UTC-5/-4) is 12 or 13 hours behind Shanghai (UTC+8),
# so the same date or clock time read on the default clock is another instant.
ZONE = "America/New_York"
POLICY_FILE = f"""
[policy]
timezone = "{ZONE}"
quiet_start = "22:30"
quiet_end = "07:15"
"""
# LS01 keeps a clock of its own (UTC+5:30); QX01 and QX02 have none: the policy's.
BRANCH_ZONE = "Asia/Kolkata"
POLICY_CLOCK, BRANCH_CLOCK = ZoneInfo(ZONE), ZoneInfo(BRANCH_ZONE)


def end_of(day: date, clock: ZoneInfo) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=clock)


@pytest.fixture
def configured(tmp_path: Path, sqlite_sessions) -> Policy:  # type: ignore[no-untyped-def]
    """The policy file, read as the entry points read it; the branches' own clocks."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_FILE)
    with sqlite_sessions.begin() as session:
        session.execute(update(Branch).values(timezone=""))
        session.execute(update(Branch).where(Branch.code == "LS01").values(timezone=BRANCH_ZONE))
    policy = Settings(policy_file=str(path)).policy()
    assert (policy.timezone, policy.quiet_start) == (ZONE, "22:30")
    return policy


@pytest.fixture
async def cli(
    dev_env, sqlite_sessions, configured: Policy, tmp_path: Path
) -> AsyncIterator[tuple[Harness, object]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": h.task_queue,
            "COLLECTION_DB_URL": str(sqlite_sessions.kw["bind"].url),
            "COLLECTION_DATA_DIR": str(tmp_path / "data"),
            "COLLECTION_POLICY_FILE": str(tmp_path / "policy.toml"),
        }

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        yield h, run


async def today_on(h: Harness, clock: ZoneInfo) -> date:
    return (await h.now()).astimezone(clock).date()


def test_a_branch_without_a_clock_of_its_own_reads_the_policys(
    sqlite_sessions, configured: Policy
) -> None:
    assert branch_policy(sqlite_sessions, "QX01", configured).timezone == ZONE
    assert branch_policy(sqlite_sessions, "LS01", configured).timezone == BRANCH_ZONE
    assert branch_policy(sqlite_sessions, "NOPE", configured).timezone == ZONE
    assert loan_policy(sqlite_sessions, "NO-SUCH-LOAN", configured).timezone == ZONE
    # The rest of the policy is the configured one, whichever the clock.
    assert branch_policy(sqlite_sessions, "LS01", configured).quiet_end == "07:15"


async def test_the_cli_reads_dates_and_shows_times_on_the_configured_clock(
    cli, tmp_path: Path
) -> None:
    h, run = cli
    today = await today_on(h, POLICY_CLOCK)
    case = await case_waiting_for_visit(h)  # QX01: the policy's clock
    far = await case_waiting_for_visit(h, branch="LS01")  # its own clock
    talk = await case_waiting_for_visit(h)

    # A list shows the next action's time on the policy's clock (visibility catches up).
    status = await h.status(case.handle)
    expected = f"next {status.next_action_at.astimezone(POLICY_CLOCK):%Y-%m-%d %H:%M}"
    for _ in range(50):
        listed = await run("list", "--stage", "FIELD_VISIT", "--branch", "QX01", "--limit", "500")
        line = next((x for x in listed.stdout.splitlines() if x.startswith(case.loan_no)), "")
        if expected in line:
            break
        await asyncio.sleep(0.2)
    assert listed.returncode == 0 and expected in line, (expected, listed.stdout, listed.stderr)

    # --until DATE: the end of that day on the case's clock, for one case or a region's.
    until = today + timedelta(days=10)
    held = await run(
        "hold", "--loan", case.loan_no, "--until", f"{until}", "--reason", "住院", "--by", "李主任"
    )
    assert held.returncode == 0, held.stderr
    region = await run(
        "hold", "--region", "LS01", "--until", f"{until}", "--reason", "洪灾", "--by", "李主任"
    )
    assert region.returncode == 0 and "1 cases held" in region.stdout, region.stderr
    for c, clock in ((case, POLICY_CLOCK), (far, BRANCH_CLOCK)):
        status = await h.until(c.handle, lambda s: s.hold is not None, "hold")
        assert status.hold.until == end_of(until, clock), (status.hold.until, clock)
        shown = await run("status", c.loan_no)  # the case's times on its clock
        assert f"ON HOLD until {until} 23:59" in shown.stdout, shown.stdout + shown.stderr

    # --at without an offset: the case's local time (on Shanghai's it would be 13 hours
    # earlier, before the case was opened, and refused).
    at = datetime.now(POLICY_CLOCK).replace(microsecond=0)
    visited = await run(
        "visit", talk.loan_no, "--outcome", "MET", "--collectors", ",".join(talk.team),
        "--at", at.replace(tzinfo=None).isoformat(), "--by", "李主任",
    )  # fmt: skip
    assert visited.returncode == 0, visited.stderr
    await h.at_stage(talk.handle, "NEGOTIATION")

    def visit_time() -> datetime | None:
        with h.sessions() as session:
            return session.scalar(
                select(Visit.visited_at)
                .join(Case, Case.id == Visit.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == talk.loan_no)
            )

    assert await eventually(visit_time, "visit recorded") == at

    # --first-due DATE: every installment falls due at the end of its day on the case's clock.
    first_due = today + timedelta(days=20)
    plan = await run(
        "plan", talk.loan_no, "--months", "2", "--first-due", f"{first_due}", "--by", "李主任"
    )
    assert plan.returncode == 0, plan.stderr
    status = await h.until(talk.handle, lambda s: bool(s.installments), "plan proposed")
    assert [i.due_at for i in status.installments] == [
        end_of(first_due, POLICY_CLOCK),
        end_of(add_months(first_due, 1), POLICY_CLOCK),
    ]

    # The payment feed: a paid_on date is noon of that day on the loan's branch's clock, and
    # "in the future" means after today on the configured clock.
    yesterday = today - timedelta(days=1)
    ref = uuid.uuid4().hex[:8]
    feed = write(
        tmp_path / "payments.csv",
        [
            "贷款编号,金额,还款日期,流水号",
            f"{case.loan_no},100.00,{yesterday},A-{ref}",
            f"{far.loan_no},100.00,{yesterday},B-{ref}",
            f"{case.loan_no},1.00,{today + timedelta(days=1)},C-{ref}",
        ],
    )
    paid = await run("payments", str(feed))
    assert paid.returncode == 3 and "row 4" in paid.stderr and "paid_on" in paid.stderr, (
        paid.stdout + paid.stderr
    )
    with h.sessions() as session:
        stored = dict(session.execute(select(Payment.reference, Payment.paid_at)).all())
    assert stored == {
        f"A-{ref}": datetime.combine(yesterday, time(12), tzinfo=POLICY_CLOCK),
        f"B-{ref}": datetime.combine(yesterday, time(12), tzinfo=BRANCH_CLOCK),
    }
    for c in (case, far):
        await h.until(c.handle, lambda s: s.paid_fen == 10_000, "payment counted")

    # Cases the intake starts carry the configured policy: its clock and its quiet hours.
    loan_no = f"CP-{ref}"
    export = write(
        tmp_path / "export.csv",
        [
            HEADER_ZH,
            f"{loan_no},QX01,522401198001019876,王建国,13912345678,20000,9000,800,200,"
            f"{today - timedelta(days=40)},石门,否",
        ],
    )
    imported = await run("intake", str(export))
    assert imported.returncode == 0 and "cases started 1" in imported.stdout, imported.stderr
    started = h.client.get_workflow_handle(workflow_id(loan_no))
    h.started.append(started)
    history = await started.fetch_history()
    attributes = history.events[0].workflow_execution_started_event_attributes
    [case_input] = await DATA_CONVERTER.decode(attributes.input.payloads, [CaseInput])
    policy = case_input.policy
    assert (policy.timezone, policy.quiet_start, policy.quiet_end) == (ZONE, "22:30", "07:15")

    for c in (case, far, talk):
        await c.handle.cancel()
    await started.cancel()


async def test_the_pages_read_and_show_times_on_the_configured_clock(
    dev_env, sqlite_sessions, configured: Policy, tmp_path: Path
) -> None:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:

        async def temporal():  # type: ignore[no-untyped-def]
            return h.client

        app = create_app(
            h.sessions, temporal, WebhookConfig("0" * 32), WebConfig(h.task_queue, configured)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            today = await today_on(h, POLICY_CLOCK)
            case = await case_waiting_for_visit(h)
            far = await case_waiting_for_visit(h, branch="LS01")
            add_user(h, "sup", Role.SUPERVISOR, branches=["QX01", "LS01"])
            add_user(h, "office", Role.BACK_OFFICE)

            async def bearer(username: str) -> dict[str, str]:
                r = await http.post("/login", json={"username": username, "password": PASSWORD})
                assert r.status_code == 200, r.text
                return {"authorization": f"Bearer {r.json()['token']}"}

            sup = await bearer("sup")
            until = today + timedelta(days=10)
            for c, clock in ((case, POLICY_CLOCK), (far, BRANCH_CLOCK)):
                # A datetime-local field is the case's local time...
                held = await http.post(
                    f"/cases/{c.loan_no}/hold",
                    json={"until": f"{until}T18:00", "reason": "旱灾"},
                    headers={**sup, "accept": "application/json"},
                )
                assert held.status_code == 200 and held.json()["accepted"], held.text
                status = await h.until(c.handle, lambda s: s.hold is not None, "hold")
                assert status.hold.until == datetime.combine(until, time(18), tzinfo=clock)
                # ... and the case's page shows its times on the same clock.
                page = await http.get(f"/cases/{c.loan_no}", headers=sup)
                assert page.status_code == 200
                assert f"ON HOLD until {until} 18:00" in page.text, page.text[:2000]

            # The back office's payment upload: noon of the date on the loan's branch's clock.
            yesterday = today - timedelta(days=1)
            csv = (
                "贷款编号,金额,还款日期,流水号\n"
                f"{case.loan_no},100.00,{yesterday},WEB-A\n"
                f"{far.loan_no},100.00,{yesterday},WEB-B\n"
            )
            uploaded = await http.post(
                "/feeds",
                data={"kind": "payments"},
                files={"file": ("payments.csv", csv.encode(), "text/csv")},
                headers=await bearer("office"),
            )
            assert uploaded.status_code == 200 and "signalled 2" in uploaded.text, uploaded.text
            with h.sessions() as session:
                stored = dict(session.execute(select(Payment.reference, Payment.paid_at)).all())
            assert stored == {
                "WEB-A": datetime.combine(yesterday, time(12), tzinfo=POLICY_CLOCK),
                "WEB-B": datetime.combine(yesterday, time(12), tzinfo=BRANCH_CLOCK),
            }
            for c in (case, far):
                await h.until(c.handle, lambda s: s.paid_fen == 10_000, "payment counted")
            for c in (case, far):
                await c.handle.cancel()
