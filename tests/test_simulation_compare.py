"""The what-if (issue 16): one simulated portfolio under two strategy files, side by side.

It runs on throwaway SQLite databases and an embedded dev server of its own, never the
configured ones; both arms load the same loan numbers (each into its own database and
namespace), so a file's champion/challenger split and the simulated people's draws are
borrower i's in both arms; each arm has collectors enough of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cli.main import main
from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.models import Borrower, Case, Collector, Loan
from db.seed import COLLECTOR_CAPACITY, demo_specs
from domain.models import AgreementRef, CaseStatus, Counters, HistoryEntry, InstallmentStatus
from domain.models import Promise as PromiseView
from domain.policy import fast_policy
from domain.stages import CLOSED_STAGES, Stage
from domain.strategy import in_challenger, load_strategy
from service.simulation import Simulator
from service.what_if import (
    APART,
    MAX_LOANS,
    ArmSetup,
    WhatIf,
    run_what_if,
    to_csv,
    to_json,
    to_text,
    what_if_specs,
)
from service.what_if_sandbox import collectors_per_branch

ROOT = Path(__file__).resolve().parent.parent

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
# A file with its own champion/challenger split: half the cases of every segment go to C.
SPLIT = (
    'version = "split"\n[treatments.T]\n[treatments.C]\ndays_until_first_visit = 1000\n'
    "offer_promises = false\n"
    + SEGMENTS.replace(
        'treatment = "T"', 'treatment = "T"\nchallenger = "C"\nchallenger_percent = 50'
    )
)


SAME = ("branch", "id_number", "name", "phone", "outstanding_principal_fen", "interest_fen",
        "penalty_fen", "overdue_since", "remote", "hostile", "disaster_affected")  # fmt: skip


def _today() -> date:
    return datetime.now(UTC).date()


def _arms(tmp_path: Path, a: str, b: str) -> list[ArmSetup]:
    (tmp_path / "a.toml").write_text(a)
    (tmp_path / "b.toml").write_text(b)
    return [
        ArmSetup(label, str(tmp_path / name), load_strategy(tmp_path / name))
        for label, name in (("A", "a.toml"), ("B", "b.toml"))
    ]


def test_both_arms_load_the_same_loan_numbers_in_every_run() -> None:
    specs = demo_specs(30, _today())
    loaded = what_if_specs(specs)
    assert [s.loan_no for s in loaded] == [f"WHATIF{n:04d}" for n in range(1, 31)]
    assert [s.loan_no for s in what_if_specs(specs)] == [s.loan_no for s in loaded]
    for x, y in zip(specs, loaded, strict=True):  # otherwise the demo's borrowers and loans
        assert [getattr(x, k) for k in SAME] == [getattr(y, k) for k in SAME]
    # So a file's 50 % split of a borrower is the same in both arms, and it is a split.
    split = [in_challenger(s.loan_no, "OTHER", 50) for s in loaded]
    assert 5 < sum(split) < 25
    with pytest.raises(ValueError, match=f"loans: at most {MAX_LOANS}"):
        what_if_specs(demo_specs(MAX_LOANS + 1, _today()))


def test_each_arm_has_collectors_enough_for_the_largest_team_of_every_case() -> None:
    policy = fast_policy()
    team = max(policy.visit_team_size, policy.hostile_visit_team_size)
    for count in (1, 8, 40, MAX_LOANS):
        specs = what_if_specs(demo_specs(count, _today()))
        per_branch = collectors_per_branch(specs, policy)
        most = max(Counter(s.branch for s in specs).values())
        assert per_branch >= team  # a hostile borrower's team, even for one case
        assert per_branch * COLLECTOR_CAPACITY >= team * most, count
    # 100 loans, 34 in a branch, a team of 3 each: 102 places, more than 3 collectors hold.
    assert collectors_per_branch(what_if_specs(demo_specs(100, _today())), policy) == 3
    assert collectors_per_branch(what_if_specs(demo_specs(100, _today())),
                                 fast_policy(hostile_visit_team_size=4)) == 4  # fmt: skip


# ---------------------------------------------------------------- the draws, without a server


class _Handle:
    def __init__(self, log: list[tuple[str, str, Any]], wid: str) -> None:
        self.log, self.wid = log, wid

    async def execute_update(self, update: Any, arg: Any) -> None:
        self.log.append((self.wid, update.__name__, _timeless(arg)))

    async def signal(self, sig: Any, arg: Any) -> None:
        self.log.append((self.wid, sig.__name__, _timeless(arg)))


class _Client:
    """Records what the simulated people do to each case, instead of a server."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []

    def get_workflow_handle(self, wid: str) -> _Handle:
        return _Handle(self.log, wid)


def _timeless(value: Any) -> Any:
    """What was done, without the clock it was done at."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)  # type: ignore[arg-type]
    if isinstance(value, dict):
        return tuple(sorted((k, _timeless(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_timeless(v) for v in value)
    return None if isinstance(value, datetime | date) else value


def _statuses(loan: str) -> list[CaseStatus]:
    """A case through every stage where the simulated people draw."""
    now = datetime.now(UTC)
    team = ["QX01-C01", "QX01-C02"]

    def at(stage: Stage, **kw: Any) -> CaseStatus:
        base: dict[str, Any] = dict(
            loan_no=loan, branch="QX01", stage=stage, stage_since=now - timedelta(seconds=3),
            next_action="", next_action_at=None, collectors=team, risk_tier="LOW",
            strategy="OTHER/CHAMPION", team_required=True, debt_fen=300_000, paid_fen=0,
            outstanding_fen=300_000, days_past_due=40, plan_number=None, installments=[],
            agreement=None, signed_version=None, hold=None, opted_out=False,
            counters=Counters(sms_sent=1), history=[], policy_version="fast", run=1,
            team_size=2,
        )  # fmt: skip
        base.update(kw)
        return CaseStatus(**base)

    due = now + timedelta(milliseconds=300)
    return [
        at(Stage.INITIAL_CONTACT),
        *[
            at(Stage.FIELD_VISIT, next_action="visit report", counters=Counters(visits=n))
            for n in range(4)
        ],  # fmt: skip
        at(
            Stage.NEGOTIATION,
            counters=Counters(visits=1),
            history=[HistoryEntry(now, "visit", "PROMISED_TO_PAY")],
        ),  # fmt: skip
        at(Stage.NEGOTIATION, counters=Counters(visits=2)),
        *[
            at(Stage.AGREEMENT_SIGNING, plan_number=1, agreement=AgreementRef(v, "ab" * 32, 1))
            for v in (1, 2, 3)
        ],  # fmt: skip
        *[at(Stage.LEGAL_REVIEW, stage_since=now + timedelta(seconds=n)) for n in range(3)],
        *[
            at(
                Stage.FOLLOW_UP,
                plan_number=1,
                installments=[InstallmentStatus(n, due, 100_000, 0, "DUE")],
            )
            for n in (1, 2, 3)
        ],
        *[
            at(Stage.FOLLOW_UP, promises=[PromiseView(n, 150_000, _today(), "CALL", "c", now, 0)])
            for n in (1, 2, 3)
        ],  # fmt: skip
    ]


async def test_a_borrower_draws_and_acts_the_same_in_both_arms_whatever_else_is_open() -> None:
    """Borrower WHATIF0002's draws and what the people do with it are the same in arm A,
    where two other cases act before and after it, and in arm B, where it acts alone (the
    others closed there): a draw keyed on the clock, the order of the round or anything of
    the arm instead of (seed, loan number, step) fails this."""
    loans = [s.loan_no for s in what_if_specs(demo_specs(3, _today()))]
    me = loans[1]
    client_a, client_b = _Client(), _Client()
    sim_a = Simulator(client_a, loans, fast_policy(), seed=16)  # type: ignore[arg-type]
    sim_b = Simulator(client_b, loans, fast_policy(), seed=16)  # type: ignore[arg-type]
    for n, mine in enumerate(_statuses(me)):
        for loan in loans:  # A: every case, the others first and last
            await sim_a.act(loan, _statuses(loan)[n] if loan != me else mine)
        await asyncio.sleep(0.01)
        await sim_b.act(me, mine)  # B: only this one
    drawn_a = {k: v for k, v in sim_a.drawn.items() if k[0] == me}
    assert drawn_a == sim_b.drawn
    steps = {step.split(":")[0] for _, step in sim_b.drawn}
    assert steps >= {"notice", "visit", "sign", "legal", "plan1", "promise"}, steps
    wid = f"collection-{me}"
    assert [x for x in client_a.log if x[0] == wid] == client_b.log
    assert {name for _, name, _ in client_b.log} >= {"report_visit", "propose_plan"}
    # Different borrowers draw differently: the check compares something.
    assert len({sim_a.chance(loan, "notice") for loan in loans}) == 3


def _row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return line[len(name) :].split()


def _sessions(result: WhatIf, arm: str):  # type: ignore[no-untyped-def]
    assert result.kept is not None
    return session_factory(make_engine(f"sqlite:///{result.kept / arm / 'collection.db'}"))


async def test_a_what_if_shows_a_late_first_visit_and_no_promises(tmp_path: Path) -> None:
    arms = _arms(tmp_path, STANDARD, LATE)
    specs = demo_specs(8, _today())
    result = await run_what_if(arms, specs, fast_policy(), seconds=20, seed=16, keep_in=tmp_path)
    a, b = result.arms
    assert a.loans == b.loans  # the same loan numbers, each arm in its own database

    def facts(arm: str) -> list[tuple]:
        with _sessions(result, arm)() as session:
            rows = session.execute(
                select(Loan, Borrower, Case)
                .join(Borrower, Borrower.id == Loan.borrower_id)
                .join(Case, Case.loan_id == Loan.id)
                .order_by(Loan.loan_no)
            ).all()
            assert len(rows) == len(specs)  # nothing else in an arm's database
            return [
                (loan.loan_no, loan.debt_fen, loan.overdue_since, borrower.phone, case.segment,
                 case.strategy_version, case.stage)
                for loan, borrower, case in rows
            ]  # fmt: skip

    fa, fb = facts("A"), facts("B")
    # The same borrowers in both arms: loans, amounts, days overdue, phones and segments.
    assert [f[:5] for f in fa] == [f[:5] for f in fb]
    assert {f[5] for f in fa} == {"standard"} and {f[5] for f in fb} == {"late-no-promises"}
    assert all(f[6] in {s.value for s in CLOSED_STAGES} for f in fa + fb)  # nothing left open
    assert result.left_open == 0
    # Collectors of its own for every case in each arm.
    assert (a.unassigned, a.short_of_collectors, b.unassigned, b.short_of_collectors) == (
        0, 0, 0, 0,
    )  # fmt: skip
    # What the strategies did differs, and the report says so.
    assert a.visits > 0 and b.visits == 0, (a, b)
    assert not any("offers no promises" in k for k in a.refused)
    if a.actions.get("promise (CALL)"):
        assert any("offers no promises" in k for k in b.refused), b.refused
    text = to_text(result)
    assert _row(text, "上门外访 visits") == [str(a.visits), "0", f"-{a.visits}"], text
    assert _row(text, "案件 cases") == ["8", "8", "+0"], text
    assert _row(text, "未分配催收员 never assigned a collector") == ["0", "0", "+0"], text
    assert "回收率 recovery" in text and "承诺兑现率 promise-kept rate" in text
    assert "样本太少" in text  # 8 cases an arm: no verdict on the recovery difference
    assert "不是预测" in text and "not a forecast" in text
    assert "b.toml (版本 version late-no-promises)" in text
    assert APART in text
    report = json.loads(to_json(result))
    assert [arm["visits"] for arm in report["arms"]] == [a.visits, 0]
    assert "not a forecast" in report["note"] and report["environment"] == APART
    csv_visits = next(line for line in to_csv(result).splitlines() if line.startswith("上门"))
    assert csv_visits == f"上门外访 visits,{a.visits},0,-{a.visits}"


async def test_a_file_against_itself_splits_every_borrower_alike_in_both_arms(
    tmp_path: Path,
) -> None:
    """A file with its own 50 % champion/challenger split, compared with itself: borrower i
    is in the same segment and arm in A and in B (the split hashes the loan number, and the
    arms share it), so the file's split adds no difference of its own."""
    arms = _arms(tmp_path, SPLIT, SPLIT)
    result = await run_what_if(
        arms, demo_specs(10, _today()), fast_policy(), seconds=8, seed=16, keep_in=tmp_path
    )
    a, b = result.arms
    # Every case assessed (2 s was too short for 20 cases on a loaded 2-core CI machine).
    unassessed = [k for arm in (a, b) for k, v in arm.choices.items() if v.endswith("/")]
    assert not unassessed, unassessed
    by_borrower = [(a.choices[x], b.choices[y]) for x, y in zip(a.loans, b.loans, strict=True)]
    assert len(by_borrower) == 10 and all(x == y for x, y in by_borrower), by_borrower
    arms_seen = {choice.split("/")[1] for choice in a.choices.values()}
    assert arms_seen == {"CHAMPION", "CHALLENGER"}  # a split to compare, not all one arm
    assert (
        a.challenger == b.challenger == sum(c.endswith("/CHALLENGER") for c in a.choices.values())
    )
    assert _row(to_text(result), "挑战组 challenger cases (the file's own split)") == [
        str(a.challenger), str(b.challenger), "+0",
    ]  # fmt: skip


def test_a_what_if_never_touches_the_configured_database_or_temporal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """COLLECTION_DB_URL names a database (already migrated, as a real one is) and
    TEMPORAL_ADDRESS a server that is not there: the what-if runs all the same, on its own,
    and leaves that database without a synthetic loan, case or collector."""
    real = f"sqlite:///{tmp_path / 'real.db'}"
    upgrade(real)
    monkeypatch.setenv("COLLECTION_DB_URL", real)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # its throwaway directory
    (tmp_path / "a.toml").write_text(STANDARD)
    argv = ["simulate", "--compare", str(tmp_path / "a.toml"), str(tmp_path / "a.toml"),
            "--loans", "3", "--minutes", "0.03", "--format", "json"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert [arm["cases"] for arm in report["arms"]] == [3, 3]
    assert "COLLECTION_DB_URL" in report["environment"] and "COLLECTION_DB_URL" in out.err
    with session_factory(make_engine(real))() as session:
        assert session.scalar(select(func.count(Loan.id))) == 0
        assert session.scalar(select(func.count(Case.id))) == 0
        assert session.scalar(select(func.count(Collector.id))) == 0
    assert list((tmp_path / "tmp").iterdir()) == []  # its databases removed


async def test_a_what_if_cut_short_closes_its_cases_before_its_workers_stop(
    tmp_path: Path,
) -> None:
    """Cancelled (a Ctrl-C) while its cases run: every case of both arms is closed by the
    still running workers (the databases, kept here, say CANCELLED), then the cancel goes on."""
    arms = _arms(tmp_path, STANDARD, STANDARD)
    run = asyncio.create_task(
        run_what_if(arms, demo_specs(4, _today()), fast_policy(), seconds=300, keep_in=tmp_path)
    )

    def started(db: Path) -> int:
        """Cases past their investigation in an arm's database (0 while it is made)."""
        engine = make_engine(f"sqlite:///{db}")
        try:
            with session_factory(engine)() as session:
                query = select(func.count(Case.id)).where(Case.stage != "INVESTIGATION")
                return session.scalar(query) or 0
        except OperationalError:  # still being migrated
            return 0
        finally:
            engine.dispose()

    deadline = time.monotonic() + 30
    while True:
        dbs = list(tmp_path.glob("what-if-*/*/collection.db"))
        if len(dbs) == 2 and all(started(db) == 4 for db in dbs):
            break
        assert time.monotonic() < deadline and not run.done(), "the cases did not start"
        await asyncio.sleep(0.2)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    for db in dbs:
        with session_factory(make_engine(f"sqlite:///{db}"))() as session:
            stages = session.scalars(select(Case.stage)).all()
        assert stages == ["CANCELLED"] * 4, (db, stages)


def test_ctrl_c_ends_a_what_if_with_exit_code_130_and_removes_what_it_made(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.toml").write_text(STANDARD)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "simulate", "--compare", str(tmp_path / "a.toml"),
         str(tmp_path / "a.toml"), "--loans", "2", "--minutes", "5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("what-if-*/temporal-server.log")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(3)  # the cases started
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    assert out == b""  # no report
    assert "interrupted" in err.decode()
    assert list(tmp_path.glob("what-if-*")) == []  # its databases and server's log removed


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--format", "json"], "error: --format: only with --compare"),
        (["--compare", "{tmp}/nope.toml", "{tmp}/late.toml"], "error: --compare {tmp}/nope.toml:"),
        (["--compare", "{tmp}/late.toml", "{tmp}/bad.toml"],
         "error: --compare {tmp}/bad.toml: treatments.T.first_visit: unknown key"),
        (["--compare", "{tmp}/gbk.toml", "{tmp}/late.toml"],
         "error: --compare {tmp}/gbk.toml: gbk.toml: not UTF-8 text"),
        (["--compare", "{tmp}/late.toml", "{tmp}/late.toml", "--loans", "101"],
         "error: --loans: 1 to 100 with --compare, got 101 (both arms run at once"),
    ],
)  # fmt: skip
def test_bad_compare_arguments_are_refused_before_anything_starts(
    argv: list[str], error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "late.toml").write_text(LATE)
    (tmp_path / "gbk.toml").write_bytes(("# 试点\n" + LATE).encode("gbk"))
    (tmp_path / "bad.toml").write_text(
        STANDARD.replace("[treatments.T]", "[treatments.T]\nfirst_visit = 1")
    )
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["simulate", *args]) == 2
    assert capsys.readouterr().err.startswith(error.replace("{tmp}", str(tmp_path)))
