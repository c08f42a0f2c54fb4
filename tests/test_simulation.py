"""The simulated portfolio (issue 16, item 6) on the dev server with the fast policy: the
simulated people act through the cases' own Updates and Signals, and the portfolio spreads
over paid, followed-up and escalated cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import PromiseToPay, Visit
from service.simulation import Simulator
from tests.harness import Harness, running_worker

WANTED = {"PAID_IN_FULL", "FOLLOW_UP", "LEGAL_ESCALATION"}


@pytest.fixture
async def h(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data", fast=True) as harness:
        yield harness


def test_choices_are_the_same_for_the_same_seed_and_loan() -> None:
    a = Simulator(None, [], None, seed=1)  # type: ignore[arg-type]
    b = Simulator(None, [], None, seed=1)  # type: ignore[arg-type]
    draws = [a.chance(f"L{n}", "visit:1") for n in range(50)]
    assert draws == [b.chance(f"L{n}", "visit:1") for n in range(50)]
    assert draws != [Simulator(None, [], None, seed=2).chance(f"L{n}", "visit:1")  # type: ignore[arg-type]
                     for n in range(50)]  # fmt: skip
    picks = {a.pick(f"L{n}", "v", {"MET": 1, "NOT_HOME": 1}) for n in range(50)}
    assert picks == {"MET", "NOT_HOME"}


async def test_a_simulated_portfolio_reaches_paid_follow_up_and_legal(h: Harness) -> None:
    loans = []
    for _ in range(16):
        spec, _handle = await h.start()
        loans.append(spec.loan_no)
    sim = Simulator(h.client, loans, h.policy, seed=16)
    await sim.run(150, enough=lambda seen: WANTED <= seen)
    assert WANTED <= sim.seen, (sim.seen, sim.actions, sim.refused)
    assert sim.actions["plan"] and sim.actions["payment"]
    assert any(k.startswith("visit ") for k in sim.actions)
    with h.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Visit))  # through the Updates
        promises = session.scalar(select(func.count()).select_from(PromiseToPay))
    assert promises == sum(v for k, v in sim.actions.items() if k.startswith("promise"))
