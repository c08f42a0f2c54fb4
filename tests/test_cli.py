"""The supervisor CLI against real cases on the dev server: its list and status agree with
the workflow's own Query, and its actions come back with the case's answer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from db.models import AuditEvent
from domain.money import yuan
from tests.harness import Harness, running_worker
from tests.web_support import case_waiting_for_visit

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def cli(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[tuple[Harness, object]]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "COLLECTION_DB_URL": str(sqlite_sessions.kw["bind"].url),
        "COLLECTION_DATA_DIR": str(tmp_path / "data"),
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        yield h, run


def borrower_today() -> date:
    """The borrowers' date now (the dev server runs on the wall clock)."""
    return datetime.now(SHANGHAI).date()


async def test_list_and_status_agree_with_the_workflows_query(cli) -> None:
    h, run = cli
    opened = borrower_today()  # the harness makes the loan 40 days overdue on this date
    case = await case_waiting_for_visit(h)
    status = await h.status(case.handle)

    shown = await run("status", case.loan_no)
    assert shown.returncode == 0, shown.stderr
    assert f"stage        {status.stage}" in shown.stdout
    assert f"collectors   {', '.join(status.collectors)}" in shown.stdout
    assert f"outstanding {yuan(status.outstanding_fen)} 元" in shown.stdout
    # Days past due count the borrower's days: 40, unless the borrower's midnight passed
    # while the test ran; then the Query, the status line and the list may each hold either.
    shown_dpd = int(shown.stdout.split("days past due ")[1].split()[0])

    for _ in range(50):  # visibility is eventually consistent
        listed = await run("list", "--stage", "FIELD_VISIT", "--branch", "QX01", "--limit", "500")
        line = next((x for x in listed.stdout.splitlines() if x.startswith(case.loan_no)), None)
        if line:
            break
        await asyncio.sleep(0.2)
    assert listed.returncode == 0 and line, listed.stdout + listed.stderr
    fields = line.split()
    assert fields[1:5] == [status.stage, status.branch, status.collectors[0], status.risk_tier]
    listed_dpd = int(line.split("dpd ")[1].split()[0])
    days = range(40, 40 + (borrower_today() - opened).days + 1)
    if len(days) == 1:
        assert shown_dpd == listed_dpd == status.days_past_due == 40
    else:
        assert {shown_dpd, listed_dpd, status.days_past_due} <= set(days)
    assert yuan(status.outstanding_fen) in line
    counts = listed.stdout.splitlines()[-1]
    assert "FIELD_VISIT=" in counts

    missing = await run("status", "NO-SUCH-LOAN")
    assert missing.returncode == 1 and "no case found" in missing.stderr
    bad = await run("list", "--branch", "QX01' OR '1'='1")
    assert bad.returncode == 2 and "branch:" in bad.stderr
    await case.handle.cancel()


async def test_actions_answer_with_the_cases_acceptance_or_its_reason(cli) -> None:
    h, run = cli
    case = await case_waiting_for_visit(h)
    refused = await run(
        "visit", case.loan_no, "--outcome", "MET", "--collectors", "QX02-C01", "--by", "李主任"
    )
    assert refused.returncode == 1
    assert "refused: collector_ids: QX02-C01 not assigned" in refused.stderr
    done = await run(
        "visit", case.loan_no, "--outcome", "MET",
        "--collectors", ",".join((await h.status(case.handle)).collectors),
        "--notes", "met at home", "--by", "李主任",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "accepted" in done.stdout and "visit 1 recorded: MET" in done.stdout
    await h.at_stage(case.handle, "NEGOTIATION")

    first_due = str(borrower_today() + timedelta(days=42))  # weeks ahead, whatever the date
    too_long = await run(
        "plan", case.loan_no, "--months", "119", "--first-due", first_due, "--by", "李主任"
    )
    assert too_long.returncode == 1 and "refused: installments: 119 installments" in too_long.stderr
    plan = await run(
        "plan", case.loan_no, "--months", "3", "--first-due", first_due,
        "--down-payment", "1,000.00", "--by", "李主任",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert "4 installments" in plan.stdout
    status = await h.until(case.handle, lambda s: s.agreement is not None, "agreement rendered")
    assert status.installments[0].amount_fen == 100_000

    wrong = await run(
        "sign", case.loan_no, "--version", "1", "--sha256", "0" * 64,
        "--collector", case.collector, "--place", "村委会", "--by", "李主任",
    )  # fmt: skip
    assert wrong.returncode == 1 and "sha256: does not match" in wrong.stderr
    signed = await run(
        "sign", case.loan_no, "--version", "1", "--sha256", status.agreement.sha256,
        "--collector", case.collector, "--place", "村委会", "--by", "李主任",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    await h.at_stage(case.handle, "FOLLOW_UP")

    with h.sessions() as session:
        trail = session.execute(
            select(AuditEvent.action, AuditEvent.outcome, AuditEvent.username)
            .where(AuditEvent.loan_no == case.loan_no)
            .order_by(AuditEvent.id)
        ).all()
    assert [(a, o) for a, o, _ in trail] == [
        ("report_visit", "REFUSED"),
        ("report_visit", "ACCEPTED"),
        ("propose_plan", "REFUSED"),
        ("propose_plan", "ACCEPTED"),
        ("confirm_signature", "REFUSED"),
        ("confirm_signature", "ACCEPTED"),
    ]
    assert {u for *_, u in trail} == {"李主任"}
    closed = await run(
        "close", case.loan_no, "--outcome", "WRITTEN_OFF", "--reason", "test", "--by", "李主任"
    )
    assert closed.returncode == 0
    assert (await case.handle.result()).outcome == "WRITTEN_OFF"


async def test_a_hold_for_a_whole_region_reaches_every_open_case_in_it(cli) -> None:
    h, run = cli
    county = [await case_waiting_for_visit(h, branch="LS01") for _ in range(3)]
    outside = await case_waiting_for_visit(h, branch="QX01")
    too_far, in_a_month = (str(borrower_today() + timedelta(days=d)) for d in (400, 30))
    held = await run(
        "hold", "--region", "临山县", "--until", too_far, "--reason", "洪灾", "--by", "李主任"
    )
    # The policy caps a hold at 180 days: every case refuses, with the reason, exit code 3.
    assert held.returncode == 3
    assert held.stderr.count("until: a hold may last at most 180 days") == 3
    held = await run(
        "hold", "--region", "临山县", "--until", in_a_month, "--reason", "洪灾", "--by", "李主任"
    )
    assert held.returncode == 0, held.stderr
    assert "region 临山县: 3 cases held, 0 refused" in held.stdout
    for case in county:
        status = await h.until(case.handle, lambda s: s.hold is not None, "hold")
        assert status.hold.reason == "洪灾" and status.hold.by == "李主任"
    assert (await h.status(outside.handle)).hold is None
    bad = await run("hold", "--region", "临山县", "--until", "soon", "--reason", "x", "--by", "y")
    assert bad.returncode == 2 and "--until" in bad.stderr
    for case in [*county, outside]:
        await case.handle.cancel()


async def test_waivers_from_the_cli_act_as_a_named_user_of_the_users_table(cli) -> None:
    """Role and name come from the users table row, never from what the caller types."""
    from domain.models import CloseRequest
    from service.users import Role
    from tests.web_support import add_user
    from workflows.collection import LoanCollectionWorkflow as WF

    h, run = cli
    case = await case_waiting_for_visit(h)
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup-li", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "sup-far", Role.BACK_OFFICE)  # sees no case
    # No role to claim on the command line any more.
    claimed = await run(
        "waiver", case.loan_no, "--interest", "500", "--reason", "flood",
        "--role", "BRANCH_HEAD", "--by", "anyone",
    )  # fmt: skip
    assert claimed.returncode == 2, claimed.stderr
    nobody = await run("waiver", case.loan_no, "--interest", "500", "--reason", "x", "--user", "zz")
    assert nobody.returncode == 1 and "user: no active user 'zz'" in nobody.stderr
    proposed = await run(
        "waiver", case.loan_no, "--interest", "500", "--reason", "flood", "--user", "mine"
    )
    assert proposed.returncode == 0 and "awaits a SUPERVISOR" in proposed.stdout, proposed.stderr
    as_collector = await run("decide-waiver", case.loan_no, "--seq", "1", "--approve",
                             "--user", "mine")  # fmt: skip
    assert as_collector.returncode == 1 and "role:" in as_collector.stderr
    elsewhere = await run("decide-waiver", case.loan_no, "--seq", "1", "--approve",
                          "--user", "sup-far")  # fmt: skip
    assert elsewhere.returncode == 1 and "loan_no: no case" in elsewhere.stderr
    decided = await run("decide-waiver", case.loan_no, "--seq", "1", "--approve",
                        "--user", "sup-li", "--reason", "checked")  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    status = await h.status(case.handle)
    assert [(w.proposed_by, w.decided_by) for w in status.waivers] == [(case.collector, "sup-li")]
    await case.handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test", "qa"))


async def test_legal_decisions_and_complaints_from_the_cli_as_a_named_user(cli) -> None:
    """Issue 15 review, item 2: the CLI acts as a named user; the service checks the role
    (a supervisor cannot decide a legal review) and the case checks the stage."""
    from domain.models import CloseRequest
    from service.users import Role
    from tests.web_support import add_user
    from workflows.collection import LoanCollectionWorkflow as WF

    h, run = cli
    case = await case_waiting_for_visit(h)
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup-li", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "legal-wang", Role.LEGAL, branches=["QX01"])
    decide = ("legal-decision", case.loan_no, "--decision", "APPROVE_ESCALATION", "--reason", "x")
    as_sup = await run(*decide, "--user", "sup-li")
    assert as_sup.returncode == 1 and "role:" in as_sup.stderr
    as_legal = await run(*decide, "--user", "legal-wang")
    assert as_legal.returncode == 1 and "stage:" in as_legal.stderr  # no review open
    recorded = await run(
        "complaint", case.loan_no, "--source", "VISIT", "--summary", "态度粗暴", "--user", "mine"
    )
    assert recorded.returncode == 0, recorded.stderr
    acked = await run("acknowledge-complaint", case.loan_no, "--number", "1", "--user", "sup-li")
    assert acked.returncode == 0, acked.stderr
    assert [c.acknowledged_by for c in (await h.status(case.handle)).complaints] == ["sup-li"]
    await case.handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test", "qa"))


async def test_a_payment_without_a_stage_change_shows_on_every_list_at_once(cli) -> None:
    """The real ways in read the case row's outstanding (collection-v5 publishes the
    OutstandingFen attribute only at a stage change): the dashboard and its JSON, the Excel
    export, `cli list` and the collector's own cases show the debt less the payment."""
    import io

    import httpx
    from openpyxl import load_workbook

    from service.users import Role
    from tests.harness import eventually
    from tests.test_pages import token
    from tests.web_support import add_user, app_for

    h, run = cli
    case = await case_waiting_for_visit(h)
    debt = (await h.status(case.handle)).debt_fen
    assert debt is not None
    await h.pay(case.handle, 300_000)
    status = await h.until(case.handle, lambda s: s.paid_fen == 300_000, "payment counted")
    assert status.stage == "FIELD_VISIT" and status.outstanding_fen == debt - 300_000
    left = debt - 300_000
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    transport = httpx.ASGITransport(app=app_for(h))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        sup, mine = await token(http, "sup"), await token(http, "mine")

        async def board() -> list[int | None]:
            r = await http.get("/dashboard?stage=FIELD_VISIT", headers=sup)
            return [c["outstanding_fen"] for c in r.json()["cases"] if c["loan_no"] == case.loan_no]

        # Visibility lists the case (eventually consistent); the amount is the row's.
        await eventually(board, "the case on the dashboard", timeout=20)
        await eventually(lambda: _eq(board(), [left]), f"the dashboard to show {left}")
        html = await http.get(
            "/dashboard?stage=FIELD_VISIT", headers={"authorization": sup["authorization"]}
        )
        assert html.status_code == 200 and yuan(left) in html.text
        xlsx = await http.get("/dashboard/cases.xlsx?stage=FIELD_VISIT", headers=sup)
        sheet = load_workbook(io.BytesIO(xlsx.content)).active
        row = next(r for r in sheet.iter_rows(values_only=True) if r[0] == case.loan_no)
        assert row[6] == left / 100  # yuan, to the fen
        mine_listed = (await http.get("/my", headers=mine)).json()["cases"]
        assert [c["outstanding_fen"] for c in mine_listed] == [left]
        page = await http.get("/my", headers={"authorization": mine["authorization"]})
        assert page.status_code == 200 and yuan(left) in page.text
    listed = await run("list", "--stage", "FIELD_VISIT", "--branch", "QX01", "--limit", "500")
    line = next((x for x in listed.stdout.splitlines() if x.startswith(case.loan_no)), "")
    assert f"outstanding {yuan(left):>12}" in line, listed.stdout + listed.stderr
    await case.handle.cancel()


async def _eq(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]
