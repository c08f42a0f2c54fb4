"""A what-if before a policy change (issue 16): one simulated portfolio under two strategy
files at the same time, then the outcomes side by side with the difference B−A.

It runs apart from everything real (service/what_if_sandbox.py): each arm its own throwaway
SQLite database and Temporal namespace on an embedded dev server of its own, never
COLLECTION_DB_URL or TEMPORAL_ADDRESS. The same borrowers (amounts, days overdue,
segments, phones ...) are loaded into both arms under the same loan numbers: a strategy
file's own champion/challenger split hashes the loan number, and the simulated people draw
by it (seed, loan number, step), so borrower i is split alike and makes the same choice at
the same step in both arms, in every run with the same seed: what differs is what the
strategies made happen. Each arm has its own branches and collectors (the same in both),
its own worker on its own task queue whose assessment takes the arm's strategy, given to
the activities, not through the environment. Texts are recorded, never sent. At the end, or
on an error or a Ctrl-C, the open cases are closed while the workers still run (those that
do not close in time are terminated); then the server stops and the directory goes.

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
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import distinct, exists, func, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.sms_gateway import RecordingGateway
from db.models import Assignment, Case, Loan, Task, Visit
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
from domain.stages import Stage, TaskKind
from domain.strategy import Strategy
from domain.timerules import local_date
from service.case_start import start_case
from service.outcomes import portfolio
from service.simulation import Simulator
from service.what_if_sandbox import ArmPlace, sandbox
from service.worker_factory import build_worker
from workflows.collection import LoanCollectionWorkflow as WF

ARMS = ("A", "B")
# Both arms run at once on this machine, and the simulated people act on every open case
# each round: with more loans a round takes longer than a policy day (a second) and they
# act days late, so the comparison would say more about the machine than the strategies.
MAX_LOANS = 100
LOAN_PREFIX = "WHATIF"
NOTE = (
    "注意：模拟是基于模拟行为的假设推演，不是预测。"
    "A simulation is a what-if on simulated behaviour, not a forecast: the simulated "
    "borrowers act by fixed probabilities (service/simulation.py), not as real borrowers will."
)
APART = (
    "独立运行：使用临时 SQLite 数据库和内嵌 Temporal 开发服务器，结束后删除，"
    "不使用 COLLECTION_DB_URL 和 TEMPORAL_ADDRESS。"
    "Ran apart: throwaway SQLite databases and an embedded Temporal dev server of its own, "
    "removed at the end; COLLECTION_DB_URL and TEMPORAL_ADDRESS are not used."
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
    challenger: int = 0  # cases the file's own split put in a segment's challenger arm
    unassigned: int = 0  # cases that never had a collector
    short_of_collectors: int = 0  # cases that asked a supervisor for (more) collectors
    choices: dict[str, str] = field(default_factory=dict)  # loan -> "segment/arm"


@dataclass
class WhatIf:
    seed: int
    seconds: float
    borrowers: int
    arms: list[ArmResult]
    difference: ArmComparison | None  # B − A of the mean per-case recovery, 95 % CI
    left_open: int = 0  # cases that did not close at the end and were terminated
    day_seconds: int = 1  # the policy day the people's rounds are measured against
    simulators: list[Simulator] = field(default_factory=list, repr=False)
    kept: Path | None = None  # the run's directory when kept (keep_in), else removed


def what_if_specs(specs: Sequence[LoanSpec]) -> list[LoanSpec]:
    """The portfolio each arm loads into its own database: the same loan numbers in both
    (WHATIF0001 ...), and in every run, so the split and the draws are borrower i's."""
    if len(specs) > MAX_LOANS:
        raise ValueError(f"loans: at most {MAX_LOANS} for a what-if, got {len(specs)}")
    return [replace(s, loan_no=f"{LOAN_PREFIX}{n + 1:04d}") for n, s in enumerate(specs)]


async def run_what_if(
    arms: Sequence[ArmSetup],
    specs: Sequence[LoanSpec],
    policy: Policy,
    seconds: float,
    seed: int = 16,
    task_queue: str = "collection",
    keep_in: Path | None = None,
) -> WhatIf:
    """Load the portfolio into each arm's throwaway database, run both arms at the same
    time for `seconds` (or until every case closed), read the outcomes, close what is still
    open; `keep_in`: keep the run's directory there (tests read its databases)."""
    loan_specs = what_if_specs(specs)
    loans = [s.loan_no for s in loan_specs]
    labels = [arm.label for arm in arms]
    async with sandbox(labels, loan_specs, policy, keep_in) as box:
        for place in box.arms:
            with place.sessions.begin() as session:
                for spec in loan_specs:
                    add_loan(session, spec)
        async with contextlib.AsyncExitStack() as stack:
            queues = []
            for arm, place in zip(arms, box.arms, strict=True):
                queue = f"{task_queue}-what-if-{box.run_id}-{arm.label}"
                executor = stack.enter_context(ThreadPoolExecutor(max_workers=8))
                worker = build_worker(
                    place.client, queue, place.sessions, place.data_dir,
                    gateway=RecordingGateway(), executor=executor, policy=policy,
                    strategy=arm.strategy,
                )  # fmt: skip
                await stack.enter_async_context(worker)
                queues.append(queue)
            sims = [Simulator(place.client, list(loans), policy, seed=seed) for place in box.arms]
            try:
                # Interleaved, so neither arm's cases get a head start.
                for spec in loan_specs:
                    for place, queue in zip(box.arms, queues, strict=True):
                        await start_case(
                            place.client, queue, spec.loan_no, spec.branch, policy, "what-if"
                        )
                await asyncio.gather(*(sim.run(seconds) for sim in sims))
                results = read_arms(box.arms, policy, arms, sims)
            except BaseException:
                # An error or a Ctrl-C: close what is open while the workers still run.
                await to_the_end(close_arms(box.arms, loans, timeout=10))
                raise
            left_open = await to_the_end(close_arms(box.arms, loans))
        kept = box.directory if keep_in is not None else None
    cases = [
        replace(c, segment="what-if", arm="CHAMPION" if i == 0 else "CHALLENGER")
        for i, arm_cases in enumerate(results[1])
        for c in arm_cases
    ]
    comparisons = compare_arms(cases, MIN_ARM_CASES)
    return WhatIf(
        seed, seconds, len(specs), results[0], comparisons[0] if comparisons else None,
        left_open, policy.day_seconds, sims, kept,
    )  # fmt: skip


T = TypeVar("T")


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even if this task is cancelled meanwhile (a Ctrl-C): closing
    the cases needs the workers, which stop once we return. Cancelled, we still wait, then
    pass the cancellation on. (A second Ctrl-C stops asyncio itself: that cancels `work`.)"""
    task = asyncio.ensure_future(work)
    interrupted = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return result


def read_arms(
    places: Sequence[ArmPlace],
    policy: Policy,
    arms: Sequence[ArmSetup],
    sims: Sequence[Simulator],
) -> tuple[list[ArmResult], list[list[CaseOutcome]]]:
    """Each arm's outcomes from its database: recovery against the debt at entry, promises,
    visit reports, the stage each case is in, the file's split, cases without collectors."""
    today = local_date(datetime.now(UTC), policy)
    out: list[ArmResult] = []
    per_arm: list[list[CaseOutcome]] = []
    for arm, place, sim in zip(arms, places, sims, strict=True):
        loans = set(sim.loans)
        cases = [c for c in portfolio(place.sessions, policy) if c.loan_no in loans]
        per_arm.append(cases)
        with place.sessions() as session:
            stages = Counter(
                dict(session.execute(select(Case.stage, func.count()).group_by(Case.stage)).all())
            )
            visits = session.scalar(select(func.count(Visit.id)))
            choices = {
                loan_no: f"{segment}/{strategy_arm}"
                for loan_no, segment, strategy_arm in session.execute(
                    select(Loan.loan_no, Case.segment, Case.strategy_arm).join(
                        Case, Case.loan_id == Loan.id
                    )
                )
            }
            unassigned = session.scalar(
                select(func.count(Case.id)).where(~exists().where(Assignment.case_id == Case.id))
            )
            short = session.scalar(
                select(func.count(distinct(Task.case_id))).where(
                    Task.kind == TaskKind.ASSIGN_COLLECTOR.value
                )
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
                challenger=sum(c.endswith("/CHALLENGER") for c in choices.values()),
                unassigned=unassigned or 0,
                short_of_collectors=short or 0,
                choices=choices,
            )
        )
    return out, per_arm


async def close_arms(
    places: Sequence[ArmPlace], loans: Sequence[str], timeout: float = 60.0
) -> int:
    """Close every arm's open cases; how many did not close in time (terminated instead)."""
    left = await asyncio.gather(*(close_open(p.client, loans, timeout) for p in places))
    return sum(left)


async def close_open(client: Client, loans: Sequence[str], timeout: float = 60.0) -> int:
    """Cancel every case still open and wait for it to close (while the workers still run);
    a case that does not close in time is terminated. How many did not close in time."""
    request = CloseRequest("CANCELLED", "模拟结束 what-if simulation ended", "what-if")

    async def close(loan_no: str) -> bool:
        handle = client.get_workflow_handle(workflow_id(loan_no))
        # Refused: closed already (or never started); no answer in time: terminated below.
        with contextlib.suppress(WorkflowUpdateFailedError, RPCError, TimeoutError):
            await asyncio.wait_for(handle.execute_update(WF.close_case, request), timeout)
        try:
            await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            with contextlib.suppress(RPCError):
                await handle.terminate("what-if ended: the case did not close in time")
            return False
        except Exception:  # failed, terminated or never started: not running all the same
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
    add("挑战组 challenger cases (the file's own split)", "count", [a.challenger for a in arms])
    add("未分配催收员 never assigned a collector", "count", [a.unassigned for a in arms])
    add("缺催收员 short of collectors", "count", [a.short_of_collectors for a in arms])
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
        f"  {w.borrowers} 位借款人 borrowers, each in both arms under the same loan number "
        f"(the same draws, the same challenger split); seed {w.seed}; {w.seconds / 60:.3g} "
        "minutes at the fast policy (a policy day is a second)",
        f"  {APART}",
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
        lines.append(f"未能关闭 not closed at the end: {w.left_open} cases (terminated)")
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
    out.writerow(["运行环境 environment", APART])
    return buf.getvalue()


def to_json(w: WhatIf) -> str:
    d = w.difference
    data = {
        "note": NOTE,
        "environment": APART,
        "seed": w.seed,
        "minutes": w.seconds / 60,
        "borrowers": w.borrowers,
        "arms": [
            {k: v for k, v in vars(a).items() if k not in ("loans", "choices")} for a in w.arms
        ],
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
