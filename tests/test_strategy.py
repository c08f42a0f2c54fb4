"""Strategies as data (issue 16, item 3): the file, its errors, the segment a case falls
in, the challenger arm by loan number, and a running case that keeps its treatment."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Case, Loan
from domain import search_attributes as sa
from domain.policy import Policy
from domain.strategy import (
    DEFAULT_STRATEGY_FILE,
    SegmentFacts,
    StrategyError,
    in_challenger,
    load_strategy,
    parse_strategy,
)
from tests.harness import Harness, running_worker
from tests.test_debt_updates import raw_attributes
from tests.test_workflow_paths import DEBT, tasks

FACTS = SegmentFacts("L1", 40, DEBT, "LOW", False, False, 0)


def test_the_default_file_names_todays_strategies() -> None:
    s = load_strategy()
    assert s.version == "default-2026-12"
    for tier, name in [("LOW", "REMIND_AND_PLAN"), ("MEDIUM", "VISIT_AND_PLAN"),
                       ("HIGH", "TEAM_VISIT")]:  # fmt: skip
        facts = SegmentFacts("L1", 40, DEBT, tier, False, False, 0)
        choice = s.choose(facts)
        assert (choice.treatment.name, choice.arm) == (name, "CHAMPION")
        assert choice.treatment.policy_overrides(Policy()) == {}
    flooded = SegmentFacts("L1", 40, DEBT, "HIGH", False, True, 0)
    assert s.choose(flooded).treatment.name == "HARDSHIP_RESTRUCTURE"


def _with(change: str) -> dict:
    return tomllib.loads(DEFAULT_STRATEGY_FILE.read_text() + change)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('[treatments.X]\nsms_per_weak = 3\n', "treatments.X.sms_per_weak: unknown key"),
        ('[treatments.X]\ndays_until_first_visit = -1\n', "treatments.X.days_until_first_visit"),
        ('[treatments.X]\npromise_broken_next = "COURT"\n', "treatments.X.promise_broken_next"),
        ('[[segments]]\nname = "Z"\ntreatment = "NOPE"\n', "segments[4].treatment: unknown"),
        ('[[segments]]\nname = "Z"\ntreatment = "TEAM_VISIT"\nchallenger_percent = 120\n'
         'challenger = "VISIT_AND_PLAN"\n', "segments[4].challenger_percent: at most 100"),
        ('[[segments]]\nname = "Z"\ntreatment = "TEAM_VISIT"\nmin_dpd = 90\n',
         "segments[4]: the last segment takes every case"),
        ('[[segments]]\nname = "LOW"\ntreatment = "TEAM_VISIT"\n', "segments[4].name: 'LOW'"),
        ('[[segments]]\nname = "Z"\ntreatment = "TEAM_VISIT"\nrisk = 1\n', "segments[4].risk:"),
    ],
)  # fmt: skip
def test_a_bad_strategy_file_is_refused_naming_the_key(extra: str, error: str) -> None:
    with pytest.raises(StrategyError) as e:
        parse_strategy(_with(extra))
    assert str(e.value).startswith(error), str(e.value)


def test_a_strategy_file_not_in_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    # Saved by an editor in GBK (the Chinese comment and description), not UTF-8.
    text = DEFAULT_STRATEGY_FILE.read_text().replace("[treatments.", "# 试点方案\n[treatments.", 1)
    (tmp_path / "pilot.toml").write_bytes(text.encode("gbk"))
    with pytest.raises(StrategyError) as e:
        load_strategy(tmp_path / "pilot.toml")
    assert str(e.value).startswith("pilot.toml: not UTF-8"), str(e.value)
    assert "save it as UTF-8" in str(e.value)


def test_the_challenger_arm_is_stable_for_a_loan_number_and_near_its_share() -> None:
    loans = [f"QX{n:06d}" for n in range(2000)]
    first = [in_challenger(loan, "M2", 20) for loan in loans]
    assert first == [in_challenger(loan, "M2", 20) for loan in loans]  # the same every time
    assert 0.17 < sum(first) / len(first) < 0.23
    assert not any(in_challenger(loan, "M2", 0) for loan in loans)
    assert all(in_challenger(loan, "M2", 100) for loan in loans)


CHALLENGER = """
version = "pilot-2026-12"
[treatments.STANDARD]
[treatments.FAST_VISIT]
days_until_first_visit = 1
offer_settlements = false
[[segments]]
name = "M2"
min_dpd = 31
max_dpd = 60
treatment = "STANDARD"
challenger = "FAST_VISIT"
challenger_percent = 100
[[segments]]
name = "OTHER"
treatment = "STANDARD"
"""


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, monkeypatch) -> AsyncIterator[Harness]:
    path = tmp_path / "pilot.toml"
    path.write_text(CHALLENGER)
    monkeypatch.setenv("COLLECTION_STRATEGY_FILE", str(path))
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def test_a_challenger_case_keeps_its_treatment_its_arm_is_searchable(h: Harness) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from domain.models import WaiverProposal
    from workflows.collection import LoanCollectionWorkflow as WF

    spec, handle = await h.start()  # 40 days past due: segment M2
    status = await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    assert (status.strategy_version, status.segment, status.strategy_arm) == (
        "pilot-2026-12", "M2", "CHALLENGER",
    )  # fmt: skip
    assert status.strategy == "FAST_VISIT"
    await h.advance(1.2)  # the challenger visits after one day, not three
    await h.at_stage(handle, "FIELD_VISIT")
    assert "VISIT" in tasks(h, spec.loan_no)
    assert (await raw_attributes(handle))[sa.STRATEGY.name] == "M2/CHALLENGER"
    with h.sessions() as session:
        row = session.scalars(
            select(Case).join(Loan, Loan.id == Case.loan_id).where(Loan.loan_no == spec.loan_no)
        ).one()
        assert (row.strategy_version, row.segment, row.strategy_arm) == (
            "pilot-2026-12", "M2", "CHALLENGER",
        )  # fmt: skip
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.propose_waiver, WaiverProposal("SETTLEMENT", "QX01-C01", "COLLECTOR", "x",
                                              settle_fen=900_000)
        )  # fmt: skip
    assert "offers no settlements" in str(e.value.cause)
    await h.pay(handle, DEBT)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
