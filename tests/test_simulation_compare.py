"""The what-if (issue 16): one simulated portfolio under two strategy files on the dev
server, side by side. The two arms have their own loan numbers and borrower rows, but
borrower i draws the same numbers in both, so what differs is what the strategy did."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.main import main
from db.models import Borrower, Case, Loan
from db.seed import demo_specs
from domain.policy import fast_policy
from domain.stages import CLOSED_STAGES
from domain.strategy import load_strategy
from service.simulation import Simulator
from service.what_if import (
    ArmSetup,
    arm_specs,
    borrower_keys,
    run_what_if,
    to_csv,
    to_json,
    to_text,
)

SEGMENTS = """
[[segments]]
name = "HIGH"
risk_tiers = ["HIGH"]
treatment = "T"
[[segments]]
name = "OTHER"
treatment = "T"
"""
# A: the policy's own timing (the first visit three policy days after the notice).
STANDARD = 'version = "standard"\n[treatments.T]\n' + SEGMENTS
# B: no promises to pay, and the first visit a thousand policy days after the notice.
LATE = (
    'version = "late-no-promises"\n[treatments.T]\ndays_until_first_visit = 1000\n'
    "offer_promises = false\n" + SEGMENTS
)


SAME = ("branch", "name", "phone", "outstanding_principal_fen", "interest_fen", "penalty_fen",
        "overdue_since", "remote", "hostile", "disaster_affected")  # fmt: skip


def _today():  # type: ignore[no-untyped-def]
    return datetime.now(UTC).date()


def test_borrower_i_draws_the_same_under_both_arms_loan_numbers() -> None:
    specs = demo_specs(30, _today())
    a, b = arm_specs(specs, "A", "0102030405"), arm_specs(specs, "B", "0102030405")
    loans_a, loans_b = [s.loan_no for s in a], [s.loan_no for s in b]
    assert not set(loans_a) & set(loans_b)  # two cases, two workflow ids per borrower
    assert len({s.id_number for s in a + b}) == 60  # each arm its own borrower rows
    assert all(len(s.id_number) == 18 and s.id_number.isdigit() for s in a + b)
    for x, y in zip(a, b, strict=True):  # otherwise the same borrower and loan
        assert [getattr(x, k) for k in SAME] == [getattr(y, k) for k in SAME]
    sim_a = Simulator(None, loans_a, None, seed=3, borrowers=borrower_keys(loans_a))  # type: ignore[arg-type]
    sim_b = Simulator(None, loans_b, None, seed=3, borrowers=borrower_keys(loans_b))  # type: ignore[arg-type]
    steps = ["notice", "legal:1"]
    for la, lb in zip(loans_a, loans_b, strict=True):
        w_a, w_b = sim_a.who(la), sim_b.who(lb)
        assert w_a == w_b
        for step in [*steps, f"{w_a}:visit:1", f"{w_a}:promise:2", f"{w_a}:plan1:inst:3"]:
            assert sim_a.chance(la, step) == sim_b.chance(lb, step)
        weights = {"MET": 1.0, "NOT_HOME": 1.0, "MOVED": 1.0}
        assert sim_a.pick(la, f"{w_a}:visit:2", weights) == sim_b.pick(
            lb, f"{w_b}:visit:2", weights
        )
    # Different borrowers draw differently, and keyed by loan number the arms would too.
    assert len({sim_a.chance(loan, "notice") for loan in loans_a}) == 30
    by_loan_a, by_loan_b = (
        Simulator(None, loans_a, None, seed=3),
        Simulator(None, loans_b, None, seed=3),
    )  # type: ignore[arg-type]
    assert [by_loan_a.chance(x, "notice") for x in loans_a] != [
        by_loan_b.chance(y, "notice") for y in loans_b
    ]


def _row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return line[len(name) :].split()


async def test_a_what_if_shows_a_late_first_visit_and_no_promises(
    dev_env, sqlite_sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "standard.toml").write_text(STANDARD)
    (tmp_path / "late.toml").write_text(LATE)
    arms = [
        ArmSetup(label, str(tmp_path / name), load_strategy(tmp_path / name))
        for label, name in (("A", "standard.toml"), ("B", "late.toml"))
    ]
    specs = demo_specs(8, _today())
    result = await run_what_if(
        dev_env.client, sqlite_sessions, tmp_path / "data", arms, specs, fast_policy(),
        seconds=20, seed=16,
    )  # fmt: skip
    a, b = result.arms
    # The same borrowers in both arms: amounts, days overdue, phones and segments.
    with sqlite_sessions() as session:

        def facts(loans: list[str]) -> list[tuple]:
            rows = session.execute(
                select(Loan, Borrower, Case)
                .join(Borrower, Borrower.id == Loan.borrower_id)
                .join(Case, Case.loan_id == Loan.id)
                .where(Loan.loan_no.in_(loans))
                .order_by(Loan.loan_no)
            ).all()
            assert len(rows) == len(specs)
            return [
                (loan.debt_fen, loan.overdue_since, borrower.phone, borrower.id, case.segment,
                 case.strategy_version, case.stage)
                for loan, borrower, case in rows
            ]  # fmt: skip

        fa, fb = facts(a.loans), facts(b.loans)
    assert [f[:3] + f[4:5] for f in fa] == [f[:3] + f[4:5] for f in fb]
    assert not {f[3] for f in fa} & {f[3] for f in fb}  # but their own borrower rows
    assert {f[5] for f in fa} == {"standard"} and {f[5] for f in fb} == {"late-no-promises"}
    assert all(f[6] in {s.value for s in CLOSED_STAGES} for f in fa + fb)  # nothing left open
    assert result.left_open == 0
    # The same draws: both arms' simulated borrowers drew by position, not by loan number.
    sim_a, sim_b = result.simulators
    common = sim_a.drawn.keys() & sim_b.drawn.keys()
    assert len({who for who, step in common if step == "notice"}) >= len(specs) // 2, common
    assert all(sim_a.drawn[k] == sim_b.drawn[k] for k in common)
    # What the strategies did differs, and the report says so.
    assert a.visits > 0 and b.visits == 0, (a, b)
    assert not any("offers no promises" in k for k in a.refused)
    if a.actions.get("promise (CALL)"):
        assert any("offers no promises" in k for k in b.refused), b.refused
    text = to_text(result)
    assert _row(text, "上门外访 visits") == [str(a.visits), "0", f"-{a.visits}"], text
    assert _row(text, "案件 cases") == ["8", "8", "+0"], text
    assert "回收率 recovery" in text and "承诺兑现率 promise-kept rate" in text
    assert "样本太少" in text  # 8 cases an arm: no verdict on the recovery difference
    assert "不是预测" in text and "not a forecast" in text
    assert "late.toml (版本 version late-no-promises)" in text
    report = json.loads(to_json(result))
    assert [arm["visits"] for arm in report["arms"]] == [a.visits, 0]
    assert "not a forecast" in report["note"]
    csv_visits = next(line for line in to_csv(result).splitlines() if line.startswith("上门"))
    assert csv_visits == f"上门外访 visits,{a.visits},0,-{a.visits}"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--format", "json"], "error: --format: only with --compare"),
        (["--compare", "{tmp}/nope.toml", "{tmp}/late.toml"], "error: --compare {tmp}/nope.toml:"),
        (["--compare", "{tmp}/late.toml", "{tmp}/bad.toml"],
         "error: --compare {tmp}/bad.toml: treatments.T.first_visit: unknown key"),
        (["--compare", "{tmp}/late.toml", "{tmp}/late.toml", "--loans", "1000"],
         "error: --loans: 1 to 999 with --compare"),
    ],
)  # fmt: skip
def test_bad_compare_arguments_are_refused_before_anything_starts(
    argv: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "late.toml").write_text(LATE)
    (tmp_path / "bad.toml").write_text(
        STANDARD.replace("[treatments.T]", "[treatments.T]\nfirst_visit = 1")
    )
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["simulate", *args]) == 2
    assert capsys.readouterr().err.startswith(error.replace("{tmp}", str(tmp_path)))
