"""Outcome reports on a constructed portfolio with known answers (issue 16, item 4)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from cli.main import main as cli_main
from domain.models import PromiseRequest, WaiverProposal
from domain.outcomes import (
    CaseOutcome,
    bucket_history,
    bucket_of,
    compare_arms,
    month_ends,
    outcomes,
    parse_buckets,
    roll_rates,
)
from service.outcomes import build_report
from service.outcomes import portfolio as portfolio_of
from tests.harness import Harness, running_worker
from tests.test_workflow_paths import DEBT, SHANGHAI
from workflows.collection import LoanCollectionWorkflow as WF

D = date
FIRST, LAST = D(2026, 1, 1), D(2026, 3, 31)


def portfolio() -> list[CaseOutcome]:
    a = CaseOutcome("A", "B1", "C1", "S", "CHAMPION", D(2026, 1, 11), D(2026, 1, 15), 100_000,
                    promises=["BROKEN"], first_contact_on=D(2026, 1, 16),
                    visits=[("C1", D(2026, 2, 1))])  # fmt: skip
    b = CaseOutcome("B", "B1", "C2", "S", "CHALLENGER", D(2026, 1, 1), D(2026, 1, 1), 200_000,
                    closed_on=D(2026, 2, 10), paid_in_full=True,
                    payments=[(D(2026, 2, 10), 200_000)], promises=["KEPT"],
                    first_contact_on=D(2026, 1, 3),
                    visits=[("C2", D(2026, 1, 20)), ("C2", D(2026, 2, 5))])  # fmt: skip
    c = CaseOutcome("C", "B2", "C1", "S", "CHAMPION", D(2025, 12, 1), D(2026, 1, 1), 300_000,
                    closed_on=D(2026, 3, 15), payments=[(D(2026, 1, 20), 30_000)],
                    promises=["KEPT", "BROKEN"], visits=[("C1", D(2026, 3, 1))])  # fmt: skip
    return [a, b, c]


def test_buckets_and_their_configuration() -> None:
    assert [bucket_of(d) for d in (0, 1, 30, 31, 60, 61, 90, 91, 180, 181, 900)] == [
        "CURRENT", "M1", "M1", "M2", "M2", "M3", "M3", "M4", "M4", "M5+", "M5+",
    ]  # fmt: skip
    two = parse_buckets("EARLY:1-60,LATE:61-")
    assert [bucket_of(d, two) for d in (1, 60, 61)] == ["EARLY", "EARLY", "LATE"]
    with pytest.raises(ValueError, match="must start at day 31"):
        parse_buckets("M1:1-30,M2:32-")


def test_bucket_history_and_roll_rates_month_over_month() -> None:
    ends = month_ends(FIRST, LAST)
    assert ends == [D(2026, 1, 31), D(2026, 2, 28), D(2026, 3, 31)]
    history = bucket_history(portfolio(), ends)
    assert history == {
        "A": ["M1", "M2", "M3"],
        "B": ["M1", "CURRENT", "CURRENT"],  # cured in February
        "C": ["M3", "M3", "CLOSED"],  # to legal in March
    }
    rolls = [
        (r.month, r.from_bucket, r.to_bucket, r.cases, r.rate) for r in roll_rates(history, ends)
    ]
    assert rolls == [
        (D(2026, 1, 31), "M1", "CURRENT", 1, 0.5),
        (D(2026, 1, 31), "M1", "M2", 1, 0.5),
        (D(2026, 1, 31), "M3", "M3", 1, 1.0),
        (D(2026, 2, 28), "M2", "M3", 1, 1.0),
        (D(2026, 2, 28), "M3", "CLOSED", 1, 1.0),
    ]


def test_recovery_cure_promise_contact_and_visit_rates_per_branch() -> None:
    b1, b2 = outcomes(portfolio(), "branch", FIRST, LAST)
    assert (b1.group, b1.cases, b1.debt_fen, b1.collected_fen) == ("B1", 2, 300_000, 200_000)
    assert b1.recovery_rate == pytest.approx(2 / 3) and b1.cure_rate == 0.5
    assert (b1.promises_kept, b1.promises_broken, b1.promise_kept_rate) == (1, 1, 0.5)
    assert b1.median_days_to_first_contact == 1.5
    weeks = 90 / 7
    assert b1.visits == 3 and b1.visits_per_collector_week == pytest.approx(3 / (2 * weeks))
    assert (b2.recovery_rate, b2.cure_rate, b2.median_days_to_first_contact) == (0.1, 0.0, None)
    by_collector = {g.group: g for g in outcomes(portfolio(), "collector", FIRST, LAST)}
    assert by_collector["C1"].visits == 2 and by_collector["C1"].cases == 2
    by_arm = {g.group: g.recovery_rate for g in outcomes(portfolio(), "arm", FIRST, LAST)}
    assert by_arm == {"CHALLENGER": 1.0, "CHAMPION": pytest.approx(30_000 / 400_000)}


def test_the_challengers_recovery_is_compared_with_a_confidence_interval() -> None:
    [cmp] = compare_arms(portfolio())
    assert (cmp.champion_cases, cmp.challenger_cases) == (2, 1)
    assert cmp.champion_recovery == pytest.approx(0.05) and cmp.challenger_recovery == 1.0
    assert cmp.difference == pytest.approx(0.95)
    # One challenger case has no variance: its interval means nothing, whatever it says.
    assert cmp.low == pytest.approx(0.95 - 1.96 * 0.05) and not cmp.beyond_noise
    assert cmp.verdict.startswith("too few cases")
    # Thirty a side that recover differently do differ beyond noise.
    apart = [CaseOutcome(f"L{n}{arm}", "B1", "C1", "S", arm, D(2026, 1, 1), D(2026, 1, 1), 100,
                         payments=[(D(2026, 1, 2), (80 if arm == "CHALLENGER" else 40) + n % 5)])
             for n in range(30) for arm in ("CHAMPION", "CHALLENGER")]  # fmt: skip
    [cmp] = compare_arms(apart)
    assert cmp.beyond_noise and cmp.verdict == "beyond noise"
    assert not compare_arms(apart[:-2])[0].beyond_noise  # 29 challenger cases: too few
    # Two arms that recover alike do not differ beyond noise.
    same = [CaseOutcome(f"L{n}", "B1", "C1", "S", arm, D(2026, 1, 1), D(2026, 1, 1), 100,
                        payments=[(D(2026, 1, 2), 50 + (n % 3) * 10)])
            for n in range(30) for arm in ("CHAMPION", "CHALLENGER")]  # fmt: skip
    assert not compare_arms(same)[0].beyond_noise


# ---------------------------------------------------------------- from the database


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def test_the_report_reads_real_cases_and_the_command_writes_csv_and_xlsx(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    today = (await h.now()).astimezone(SHANGHAI).date()
    await handle.execute_update(
        WF.record_promise, PromiseRequest(400_000, today + timedelta(days=2), "CALL", "QX01-C01")
    )
    await h.pay(handle, 400_000)
    await h.until(handle, lambda s: s.counters.promises_kept == 1, "promise kept")
    await h.pay(handle, DEBT - 400_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    other, open_case = await h.start()
    await h.until(open_case, lambda s: s.counters.sms_sent >= 1, "first notice")
    # The server's clock may have moved on while the first case ran: today is now.
    today = (await h.now()).astimezone(SHANGHAI).date()
    cases = {c.loan_no: c for c in portfolio_of(h.sessions, h.policy)}
    paid = cases[spec.loan_no]
    assert paid.paid_in_full and paid.paid_fen == DEBT and paid.promises == ["KEPT"]
    assert paid.first_contact_on is not None and paid.arm == "CHAMPION"
    report = build_report(list(cases.values()), today - timedelta(days=60), today)
    [branch] = [g for g in report.groups if g.group_by == "branch"]
    assert (branch.cases, branch.cure_rate, branch.promise_kept_rate) == (2, 0.5, 1.0)
    assert branch.recovery_rate == 0.5
    assert report.history[other.loan_no][-1] == "M2"  # 40 days past due

    url = str(h.sessions.kw["bind"].url)
    monkeypatch.setenv("COLLECTION_DB_URL", url)
    out = tmp_path / "outcomes.csv"
    assert cli_main(["report", "outcomes", "--out", str(out)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    assert rows[0][:8] == ["group_by", "group", "cases", "debt_fen", "collected_fen",
                           "recovery_rate", "cured", "cure_rate"]  # fmt: skip
    assert ["branch", "QX01", "2", str(2 * DEBT), str(DEBT), "0.5", "1", "0.5"] == rows[1][:8]
    assert ["roll_month", "roll_from_bucket", "roll_to_bucket", "roll_cases", "roll_rate"] in rows
    book = tmp_path / "outcomes.xlsx"
    assert cli_main(["report", "outcomes", "--format", "xlsx", "--out", str(book)]) == 0
    sheets = load_workbook(book).sheetnames
    assert sheets == ["outcomes", "roll_rates", "bucket_history", "champion_challenger"]
    assert cli_main(["report", "outcomes", "--format", "xlsx"]) == 2  # a workbook needs --out
    assert cli_main(["report", "outcomes", "--buckets", "M1:2-30,M2:31-"]) == 2
    # A user with no branches sees no rows, not every branch's.
    assert portfolio_of(h.sessions, h.policy, []) == []
    await open_case.terminate("test over")


async def test_recovery_is_measured_against_the_debt_at_entry_not_after_waivers(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    await h.advance(3.2)
    await h.at_stage(handle, "FIELD_VISIT")
    await handle.execute_update(
        WF.propose_waiver,
        WaiverProposal("WAIVER", "QX01-C01", "COLLECTOR", "flood", penalty_fen=20_000),
    )
    await h.pay(handle, DEBT - 20_000)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    [case] = portfolio_of(h.sessions, h.policy)
    assert (case.debt_fen, case.paid_fen, case.waived_fen) == (DEBT, DEBT - 20_000, 20_000)
    today = (await h.now()).astimezone(SHANGHAI).date()
    [branch] = [g for g in outcomes([case], "branch", today - timedelta(days=30), today)]
    assert branch.recovery_rate == pytest.approx((DEBT - 20_000) / DEBT)
    assert branch.waived_fen == 20_000 and branch.cured == 1
