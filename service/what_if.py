"""A what-if before a policy change (issue 16): one simulated portfolio under two strategy
files at the same time, then the outcomes side by side with the difference B−A.

The same borrowers (amounts, days overdue, segments, phones ...) are loaded once per arm
under the arm's own loan numbers (a case's workflow id is its loan's) and its own borrower
rows (a hostile visit or an opt-out in one arm must not reach the other). Each arm has its
own worker on its own task queue whose assessment takes the arm's strategy, given to the
activities, not through the environment. The simulated people draw their choices by the
borrower's position in the portfolio, so borrower i makes the same choice at the same step
in both arms: what differs is what the strategies made happen. Texts are recorded, never
sent. At the end the arms' open cases are cancelled (no worker polls their task queues
afterwards, and open cases would hold the collectors' capacity).

A simulation is a what-if on simulated behaviour, not a forecast.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import statistics
import unicodedata
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.sms_gateway import RecordingGateway
from db.models import Case, Loan, Visit
from db.seed import LoanSpec, add_loan
from domain.labels import label
from domain.models import CloseRequest
from domain.money import yuan
from domain.names import workflow_id
from domain.outcomes import (
    MIN_ARM_CASES,
    ArmComparison,
    CaseOutcome,
    compare_arms,
    outcomes,
    percent,
)
from domain.policy import Policy
from domain.stages import Stage
from domain.strategy import Strategy
from domain.timerules import local_date
from service.case_start import start_case
from service.outcomes import portfolio
from service.simulation import Simulator
from service.worker_factory import build_worker
from workflows.collection import LoanCollectionWorkflow as WF

ARMS = ("A", "B")
MAX_BORROWERS = 999  # the arms' synthetic ID numbers carry the position in three digits
NOTE = (
    "注意：模拟是基于模拟行为的假设推演，不是预测。"
    "A simulation is a what-if on simulated behaviour, not a forecast: the simulated "
    "borrowers act by fixed probabilities (service/simulation.py), not as real borrowers will."
)
PAIRED_NOTE = (
    "区间把两组当作独立样本（未利用同一借款人配对），偏保守。"
    "The interval treats the arms as independent samples: conservative for paired borrowers."
)


@dataclass(frozen=True)
class ArmSetup:
    label: str  # A or B
    path: str  # the strategy file as given
    strategy: Strategy


@dataclass
class ArmResult:
    label: str
    path: str
    version: str
    loans: list[str]
    cases: int
    paid_in_full: int
    debt_fen: int  # at entry
    collected_fen: int
    recovery_rate: float  # collected / debt at entry
    promises_kept: int
    promises_broken: int
    promise_kept_rate: float | None
    visits: int  # visit reports filed
    stages: dict[str, int]
    actions: dict[str, int]
    refused: dict[str, int]
    round_seconds: float = 0.0  # how long a round of the simulated people took, on average


@dataclass
class WhatIf:
    seed: int
    seconds: float
    borrowers: int
    arms: list[ArmResult]
    difference: ArmComparison | None  # B − A of the mean per-case recovery, 95 % CI
    left_open: int = 0  # cases that did not close at the end (should be none)
    day_seconds: int = 1  # the policy day the people's rounds are measured against
    simulators: list[Simulator] = field(default_factory=list, repr=False)


def arm_specs(specs: Sequence[LoanSpec], arm: str, stamp: str) -> list[LoanSpec]:
    """One arm's copy of the portfolio: the same borrowers and loans under the arm's loan
    numbers (SIM<stamp><arm><position>) and ID numbers (18 digits like a real one, so every
    log masks them; unique per run, arm and position: each arm its own borrower rows)."""
    if len(specs) > MAX_BORROWERS:
        raise ValueError(f"loans: at most {MAX_BORROWERS} for a what-if, got {len(specs)}")
    digit = ARMS.index(arm) + 1
    return [
        replace(
            s,
            loan_no=f"SIM{stamp}{arm}{n:04d}",
            id_number=f"{s.id_number[:6]}{stamp[-8:]}{digit}{n:03d}",
        )
        for n, s in enumerate(specs)
    ]


def borrower_keys(loans: Sequence[str]) -> dict[str, str]:
    """Loan number -> the borrower's position: the key both arms' draws are seeded by."""
    return {loan: f"borrower-{n:04d}" for n, loan in enumerate(loans)}


async def run_what_if(
    client: Client,
    sessions: sessionmaker[Session],
    data_dir: Path,
    arms: Sequence[ArmSetup],
    specs: Sequence[LoanSpec],
    policy: Policy,
    seconds: float,
    seed: int = 16,
    task_queue: str = "collection",
    stamp: str | None = None,
) -> WhatIf:
    """Load the portfolio once per arm, run both arms at the same time for `seconds` (or
    until every case closed), read the outcomes, cancel what is still open."""
    stamp = stamp or datetime.now(UTC).strftime("%m%d%H%M%S")
    portfolios = [arm_specs(specs, arm.label, stamp) for arm in arms]
    with sessions.begin() as session:
        for specs_of_arm in portfolios:
            for spec in specs_of_arm:
                add_loan(session, spec)
    async with contextlib.AsyncExitStack() as stack:
        queues = []
        for arm in arms:
            queue = f"{task_queue}-what-if-{stamp}-{arm.label}"
            executor = stack.enter_context(ThreadPoolExecutor(max_workers=8))
            worker = build_worker(
                client, queue, sessions, data_dir, gateway=RecordingGateway(),
                executor=executor, policy=policy, strategy=arm.strategy,
            )  # fmt: skip
            await stack.enter_async_context(worker)
            queues.append(queue)
        # Interleaved, so neither arm's cases get a head start.
        for n in range(len(specs)):
            for queue, specs_of_arm in zip(queues, portfolios, strict=True):
                spec = specs_of_arm[n]
                await start_case(client, queue, spec.loan_no, spec.branch, policy, "what-if")
        sims = [
            Simulator(client, [s.loan_no for s in p], policy, seed=seed,
                      borrowers=borrower_keys([s.loan_no for s in p]))
            for p in portfolios
        ]  # fmt: skip
        await asyncio.gather(*(sim.run(seconds) for sim in sims))
        results = read_arms(sessions, policy, arms, sims)
        left_open = await close_open(client, [loan for sim in sims for loan in sim.loans])
    cases = [
        replace(c, segment="what-if", arm="CHAMPION" if i == 0 else "CHALLENGER")
        for i, arm_cases in enumerate(results[1])
        for c in arm_cases
    ]
    comparisons = compare_arms(cases, MIN_ARM_CASES)
    return WhatIf(
        seed, seconds, len(specs), results[0], comparisons[0] if comparisons else None,
        left_open, policy.day_seconds, sims,
    )  # fmt: skip


def read_arms(
    sessions: sessionmaker[Session],
    policy: Policy,
    arms: Sequence[ArmSetup],
    sims: Sequence[Simulator],
) -> tuple[list[ArmResult], list[list[CaseOutcome]]]:
    """Each arm's outcomes from the database: recovery against the debt at entry, promises,
    visit reports, and the stage each case is in."""
    everything = portfolio(sessions, policy)
    today = local_date(datetime.now(UTC), policy)
    out: list[ArmResult] = []
    per_arm: list[list[CaseOutcome]] = []
    for arm, sim in zip(arms, sims, strict=True):
        loans = set(sim.loans)
        cases = [c for c in everything if c.loan_no in loans]
        per_arm.append(cases)
        with sessions() as session:
            stages = Counter(
                dict(
                    session.execute(
                        select(Case.stage, func.count())
                        .join(Loan, Loan.id == Case.loan_id)
                        .where(Loan.loan_no.in_(loans))
                        .group_by(Case.stage)
                    ).all()
                )
            )
            visits = session.scalar(
                select(func.count(Visit.id))
                .join(Case, Case.id == Visit.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no.in_(loans))
            )
        rows = outcomes([replace(c, segment=arm.label) for c in cases], "segment", today, today)
        g = rows[0] if rows else None
        out.append(
            ArmResult(
                label=arm.label,
                path=arm.path,
                version=arm.strategy.version,
                loans=list(sim.loans),
                cases=len(cases),
                paid_in_full=g.cured if g else 0,
                debt_fen=g.debt_fen if g else 0,
                collected_fen=g.collected_fen if g else 0,
                recovery_rate=g.recovery_rate if g else 0.0,
                promises_kept=g.promises_kept if g else 0,
                promises_broken=g.promises_broken if g else 0,
                promise_kept_rate=g.promise_kept_rate if g else None,
                visits=visits or 0,
                stages=dict(stages),
                actions=dict(sim.actions),
                refused=dict(sim.refused),
                round_seconds=statistics.fmean(sim.round_seconds) if sim.round_seconds else 0.0,
            )
        )
    return out, per_arm


async def close_open(client: Client, loans: Sequence[str], timeout: float = 60.0) -> int:
    """Cancel every case still open and wait for it to close (while the workers still run);
    how many did not close in time."""
    request = CloseRequest("CANCELLED", "模拟结束 what-if simulation ended", "what-if")

    async def close(loan_no: str) -> bool:
        handle = client.get_workflow_handle(workflow_id(loan_no))
        with contextlib.suppress(WorkflowUpdateFailedError, RPCError):  # closed already
            await handle.execute_update(WF.close_case, request)
        try:
            await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            return False
        except Exception:  # failed or terminated meanwhile: closed all the same
            return True
        return True

    closed = await asyncio.gather(*(close(loan) for loan in loans))
    return closed.count(False)


# ---------------------------------------------------------------- the comparison, written


def _stages(w: WhatIf) -> list[str]:
    seen = {s for arm in w.arms for s in arm.stages}
    return [s.value for s in Stage if s.value in seen] + sorted(seen - {s.value for s in Stage})


@dataclass(frozen=True)
class Row:
    name: str  # Chinese first
    kind: str  # count, rate or fen
    values: list[object]  # one per arm
    diff: object  # B − A, None when a value is missing


def rows(w: WhatIf) -> list[Row]:
    """The comparison's measures with raw values; the writers format them."""
    out: list[Row] = []

    def add(name: str, kind: str, values: list[object]) -> None:
        a, b = values[0], values[-1]
        missing = a is None or b is None
        out.append(Row(name, kind, values, None if missing else b - a))  # type: ignore[operator]

    arms = w.arms
    add("案件 cases", "count", [a.cases for a in arms])
    add("全额还款 paid in full", "count", [a.paid_in_full for a in arms])
    add("入案欠款 debt at entry", "fen", [a.debt_fen for a in arms])
    add("已回收 collected", "fen", [a.collected_fen for a in arms])
    add("回收率 recovery", "rate", [a.recovery_rate for a in arms])
    add("承诺兑现 promises kept", "count", [a.promises_kept for a in arms])
    add("承诺违约 promises broken", "count", [a.promises_broken for a in arms])
    add("承诺兑现率 promise-kept rate", "rate", [a.promise_kept_rate for a in arms])
    add("上门外访 visits", "count", [a.visits for a in arms])
    for stage in _stages(w):
        add(f"阶段 stage: {label(stage)}", "count", [a.stages.get(stage, 0) for a in arms])
    return out


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _shown(kind: str, value: object, diff: bool = False) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        assert isinstance(value, float)
        return f"{value * 100:+.1f} pp" if diff else percent(value)
    assert isinstance(value, int)
    if kind == "fen":
        return ("+" if diff and value > 0 else "") + yuan(value)
    return f"{value:+d}" if diff else str(value)


def verdict(d: ArmComparison) -> str:
    if not d.enough_cases:
        need = max(2, d.min_cases)
        return f"样本太少，无法判断 too few cases (每组至少 {need} 例 at least {need} per arm)"
    return "差异超出随机波动 beyond noise" if d.beyond_noise else "差异在随机波动内 within noise"


def to_text(w: WhatIf) -> str:
    lines = [
        "模拟对比（假设推演）What-if: one simulated portfolio under two strategy files",
        *(f"  {a.label} = {a.path} (版本 version {a.version})" for a in w.arms),
        f"  {w.borrowers} 位借款人 borrowers, each in both arms (the same draws); "
        f"seed {w.seed}; {w.seconds / 60:.3g} minutes at the fast policy (a policy day is a "
        "second)",
        "",
    ]
    table = [("指标 measure", *[a.label for a in w.arms], "差 B−A")]
    for r in rows(w):
        name = f"{r.name} (元 yuan)" if r.kind == "fen" else r.name
        shown = [_shown(r.kind, v) for v in r.values]
        table.append((name, *shown, "" if r.diff is None else _shown(r.kind, r.diff, diff=True)))
    widths = [max(_width(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        lines.append("  ".join(_pad(cell, widths[i]) for i, cell in enumerate(r)).rstrip())
    lines.append("")
    d = w.difference
    if d is None:
        lines.append("回收率差 recovery B−A: - (an arm has no case with a debt)")
    else:
        lines.append(
            f"回收率差（每案平均）recovery B−A, mean per case: {d.difference * 100:+.1f} pp, "
            f"95% 置信区间 CI {d.low * 100:+.1f} … {d.high * 100:+.1f} pp: {verdict(d)}"
        )
        lines.append(PAIRED_NOTE)
    for a in w.arms:
        done = ", ".join(f"{k} {v}" for k, v in sorted(a.actions.items())) or "-"
        lines.append(f"{a.label} 模拟动作 simulated actions: {done}")
        if a.refused:
            shown = ", ".join(f"{k} ({v})" for k, v in sorted(a.refused.items()))
            lines.append(f"{a.label} 被拒绝 refused by the case: {shown}")
    if w.left_open:
        lines.append(f"未能关闭 not closed at the end: {w.left_open} cases")
    slowest = max(a.round_seconds for a in w.arms)
    if slowest > w.day_seconds:
        lines.append(
            f"滞后 lag: 模拟的人平均每 {slowest:.1f} 秒才行动一轮，"
            f"而一个政策日为 {w.day_seconds} 秒，他们晚了几天才还款、兑现承诺；"
            "减少 --loans 结果更真实。The simulated people acted "
            f"every {slowest:.1f} s (a policy day is {w.day_seconds} s), days late: fewer --loans "
            "give a truer picture."
        )
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def to_csv(w: WhatIf) -> str:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["指标 measure", *[f"{a.label} {a.path}" for a in w.arms], "差 B−A"])
    for r in rows(w):
        cells = [round(v, 4) if isinstance(v, float) else ("" if v is None else v)
                 for v in (*r.values, r.diff)]  # fmt: skip
        out.writerow([f"{r.name} (fen)" if r.kind == "fen" else r.name, *cells])
    d = w.difference
    if d is not None:
        out.writerow(
            ["回收率差（每案平均）recovery B−A mean per case", "", "", round(d.difference, 4)]
        )
        out.writerow(["95% 置信区间下限 CI low", "", "", round(d.low, 4)])
        out.writerow(["95% 置信区间上限 CI high", "", "", round(d.high, 4)])
        out.writerow(["结论 verdict", "", "", verdict(d)])
    out.writerow(["注意 note", NOTE])
    return buf.getvalue()


def to_json(w: WhatIf) -> str:
    d = w.difference
    data = {
        "note": NOTE,
        "seed": w.seed,
        "minutes": w.seconds / 60,
        "borrowers": w.borrowers,
        "arms": [{k: v for k, v in vars(a).items() if k != "loans"} for a in w.arms],
        "recovery_difference": None
        if d is None
        else {
            "mean_per_case_b_minus_a": d.difference,
            "ci95_low": d.low,
            "ci95_high": d.high,
            "a_cases": d.champion_cases,
            "b_cases": d.challenger_cases,
            "enough_cases": d.enough_cases,
            "beyond_noise": d.beyond_noise,
            "verdict": verdict(d),
            "interval": PAIRED_NOTE,
        },
        "left_open": w.left_open,
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


FORMATS = {"text": to_text, "csv": to_csv, "json": to_json}
