"""Simulated borrowers and collectors (issue 16, item 6): a portfolio that moves by itself.

Each round reads every open case's status Query and does what a person would do next,
through the same Updates and Signals as the pages and the CLI: the borrower pays after the
first notice, promises (and keeps or breaks the promise), is met, not at home, refuses,
turns hostile or has moved; the collectors report visits, record promises, propose plans,
have them signed; the borrower pays installments or misses them. Every choice is drawn once
per case and step from a random generator seeded by (seed, loan number, step), so the same
seed and portfolio make the same choices; with the fast policy (a policy day is a second)
the portfolio spreads over every stage within a few minutes. The borrower is the loan number:
a what-if (service/what_if.py) gives borrower i the same loan number in both arms, so they
draw the same numbers in both. Nothing else (the time, the order the cases act in, which
other cases are still open) goes into a draw.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from domain.models import (
    CaseStatus,
    LegalDecisionRequest,
    PaymentPosted,
    PlannedInstallment,
    PlanProposal,
    PromiseRequest,
    SignatureConfirmation,
    VisitReport,
)
from domain.money import split_evenly
from domain.names import workflow_id
from domain.policy import Policy
from domain.stages import LegalDecision
from domain.timerules import local_date
from workflows.collection import LoanCollectionWorkflow as WF


@dataclass
class Behaviour:
    """How the simulated people act: probabilities per decision."""

    pay_after_notice: float = 0.1
    promise_on_call: float = 0.25
    keep_promise: float = 0.6
    visit_outcomes: dict[str, float] = field(
        default_factory=lambda: {
            "MET": 0.35,
            "PROMISED_TO_PAY": 0.15,
            "NOT_HOME": 0.2,
            "REFUSED": 0.1,
            "HOSTILE": 0.05,
            "MOVED": 0.15,
        }
    )
    sign: float = 0.9
    pay_installment: float = 0.85


@dataclass
class Simulator:
    client: Client
    loans: list[str]
    policy: Policy
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int = 16
    done: set[str] = field(default_factory=set)  # steps taken, by key
    actions: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)  # every stage a case was in at a round
    drawn: dict[tuple[str, str], float] = field(default_factory=dict)  # (loan, step)
    legal_reviews: Counter[str] = field(default_factory=Counter)  # per loan, seen so far
    round_seconds: list[float] = field(default_factory=list)  # how long each round took

    def chance(self, loan_no: str, step: str) -> float:
        """The same number for the same (seed, loan, step): a run can be repeated."""
        value = random.Random(zlib.crc32(f"{self.seed}:{loan_no}:{step}".encode())).random()
        self.drawn[loan_no, step] = value
        return value

    def pick(self, loan_no: str, step: str, weights: dict[str, float]) -> str:
        draw, total = self.chance(loan_no, step) * sum(weights.values()), 0.0
        for name, weight in weights.items():
            total += weight
            if draw < total:
                return name
        return next(reversed(weights))

    async def run(
        self,
        seconds: float,
        interval: float = 0.5,
        enough: Callable[[set[str]], bool] | None = None,
    ) -> Counter[str]:
        """Act on the portfolio for `seconds` (or until `enough(stages seen)`); the cases'
        stages at the end."""
        end = asyncio.get_running_loop().time() + seconds
        stages: Counter[str] = Counter()
        while asyncio.get_running_loop().time() < end:
            began = asyncio.get_running_loop().time()
            stages = await self.round()
            self.round_seconds.append(asyncio.get_running_loop().time() - began)
            self.seen |= set(stages)
            if enough is not None and enough(self.seen):
                break
            if all(s in ("PAID_IN_FULL", "LEGAL_ESCALATION", "WRITTEN_OFF", "CANCELLED")
                   for s in stages.elements()):  # fmt: skip
                break
            await asyncio.sleep(interval)
        return stages

    async def round(self) -> Counter[str]:
        statuses = await asyncio.gather(*(self._status(n) for n in self.loans))
        stages: Counter[str] = Counter()
        acting = []
        for loan_no, status in zip(self.loans, statuses, strict=True):
            if status is None:
                continue
            stages[str(status.stage)] += 1
            acting.append(self._act(loan_no, status))
        # The cases at once: a round lasts as long as its slowest Update, not their sum (on
        # the fast policy a second is a policy day; a slow round means people acting days
        # late). A busy worker still slows it: see what_if's lag line.
        await asyncio.gather(*acting)
        return stages

    async def _act(self, loan_no: str, status: CaseStatus) -> None:
        try:
            await self.act(loan_no, status)
        except WorkflowUpdateFailedError as e:
            self.refused[str(getattr(e.cause, "message", e.cause))[:60]] += 1
        except RPCError:
            pass  # closed meanwhile

    async def _status(self, loan_no: str) -> CaseStatus | None:
        handle = self.client.get_workflow_handle(workflow_id(loan_no))
        try:
            return await handle.query(WF.status)
        except RPCError:
            return None

    def _once(self, key: str) -> bool:
        if key in self.done:
            return False
        self.done.add(key)
        return True

    async def _pay(self, loan_no: str, amount: int, ref: str) -> None:
        handle = self.client.get_workflow_handle(workflow_id(loan_no))
        await handle.signal(
            WF.payment_posted, PaymentPosted(f"SIM-{ref}", amount, datetime.now(UTC), "simulation")
        )
        self.actions["payment"] += 1

    async def act(self, loan_no: str, s: CaseStatus) -> None:
        b, handle = self.behaviour, self.client.get_workflow_handle(workflow_id(loan_no))
        now = datetime.now(UTC)
        outstanding = s.outstanding_fen or 0
        day = timedelta(seconds=self.policy.day_seconds)
        promise = s.promises[-1] if s.promises else None
        if promise is not None and promise.status == "OPEN":
            key = f"{loan_no}:promise:{promise.seq}"
            if self._once(key) and self.chance(loan_no, f"promise:{promise.seq}") < b.keep_promise:
                await self._pay(loan_no, promise.amount_fen, key)
            return
        stage = str(s.stage)
        if stage == "INITIAL_CONTACT" and s.counters.sms_sent and self._once(f"{loan_no}:notice"):
            draw = self.chance(loan_no, "notice")
            if draw < b.pay_after_notice:
                await self._pay(loan_no, outstanding, f"{loan_no}:notice")
            elif draw < b.pay_after_notice + b.promise_on_call and s.collectors:
                await self._promise(loan_no, s, "CALL")
        elif stage == "FIELD_VISIT" and s.next_action == "visit report" and s.collectors:
            n = s.counters.visits + 1
            if self._once(f"{loan_no}:visit:{n}"):
                outcome = self.pick(loan_no, f"visit:{n}", b.visit_outcomes)
                team = s.collectors[: max(1, s.team_size)]
                await handle.execute_update(
                    WF.report_visit, VisitReport(outcome, team, now, "simulated visit", team[0])
                )
                self.actions[f"visit {outcome}"] += 1
        elif stage == "NEGOTIATION" and s.collectors:
            visits = s.counters.visits
            if self._once(f"{loan_no}:negotiate:{visits}:{s.counters.broken_promises}"):
                last = next((e.detail for e in reversed(s.history) if e.kind == "visit"), "")
                if "PROMISED_TO_PAY" in last and self._once(f"{loan_no}:visit-promise:{visits}"):
                    await self._promise(loan_no, s, "VISIT")
                    return
                count = 3
                items = [
                    PlannedInstallment(now + day * 5 * (k + 1), a)
                    for k, a in enumerate(split_evenly(outstanding, count))
                ]
                await handle.execute_update(
                    WF.propose_plan, PlanProposal(items, s.collectors[0], notes="simulated")
                )
                self.actions["plan"] += 1
        elif stage == "AGREEMENT_SIGNING" and s.agreement and s.collectors:
            version = s.agreement.version
            if s.agreement.plan_number == s.plan_number and self._once(f"{loan_no}:sign:{version}"):
                if self.chance(loan_no, f"sign:{version}") < b.sign:
                    await handle.execute_update(
                        WF.confirm_signature,
                        SignatureConfirmation(
                            s.agreement.version, s.agreement.sha256, s.collectors[0], now, "村委会"
                        ),
                    )
                    self.actions["signature"] += 1
        elif stage == "LEGAL_REVIEW" and self._once(f"{loan_no}:legal:{s.stage_since}"):
            # The branch's legal reviewer (role LEGAL) decides the dead end: mostly to court.
            # Drawn by the how-many-th review of this case, not its time: repeatable.
            self.legal_reviews[loan_no] += 1
            decision = LegalDecision.APPROVE_ESCALATION
            if self.chance(loan_no, f"legal:{self.legal_reviews[loan_no]}") < 0.2:
                decision = LegalDecision.RECOMMEND_WRITE_OFF
            await handle.execute_update(
                WF.legal_decision,
                LegalDecisionRequest(decision, "simulated-legal", "simulated review", role="LEGAL"),
            )
            self.actions[f"legal {decision}"] += 1
        elif stage == "FOLLOW_UP":
            for inst in s.installments:
                if inst.status in ("DUE", "OVERDUE", "UPCOMING") and inst.due_at - now < day:
                    step = f"plan{s.plan_number}:inst:{inst.seq}"
                    key = f"{loan_no}:{step}"
                    if self._once(key) and self.chance(loan_no, step) < b.pay_installment:
                        await self._pay(loan_no, inst.amount_fen - inst.covered_fen, key)
                    break

    async def _promise(self, loan_no: str, s: CaseStatus, source: str) -> None:
        amount = max(1, (s.outstanding_fen or 0) // 2)
        due = local_date(datetime.now(UTC), self.policy) + timedelta(days=1)
        handle = self.client.get_workflow_handle(workflow_id(loan_no))
        await handle.execute_update(
            WF.record_promise, PromiseRequest(amount, due, source, s.collectors[0], "simulated")
        )
        self.actions[f"promise ({source})"] += 1
