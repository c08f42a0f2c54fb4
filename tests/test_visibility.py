"""What supervisors filter on in Temporal visibility while a case's activity keeps retrying
(collection-v5 upserts once the case is idle, but a new stage before the next activity)."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cases import CaseActivities
from activities.sms import SmsActivities
from db.models import Case, Loan
from domain import search_attributes as sa
from domain.models import CaseResult, PaymentPosted, PaymentRecord, SmsRequest, SmsResult
from domain.names import Activities as A
from domain.policy import Policy
from domain.stages import Stage
from service.case_record import MyCase
from service.portfolio import Filters, count_cases_per_stage, find_cases, with_next_actions
from tests.harness import eventually, running_worker
from tests.test_activities import new_loan, transition
from tests.test_debt_updates import raw_attributes
from tests.test_workflow_paths import DEBT

REAL_SEND_SMS = SmsActivities.send_sms
OUTAGE = threading.Event()  # set: the provider is down
ATTEMPTS: list[str] = []  # each send attempt's message key


class ProviderDown:
    """The SMS provider down while OUTAGE is set: every attempt fails and Temporal retries (a
    method: the SDK reads the argument's type after `self`)."""

    @activity.defn(name=A.SEND_SMS)
    def send_sms(self, req: SmsRequest) -> SmsResult:
        ATTEMPTS.append(req.key)
        if OUTAGE.is_set():
            raise ApplicationError("provider unavailable", type="ProviderDown")
        return REAL_SEND_SMS(self, req)  # type: ignore[arg-type]


async def test_a_new_stage_is_listed_while_its_first_sms_keeps_retrying(
    env, sqlite_sessions, tmp_path: Path, request, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case enters INITIAL_CONTACT and its first notice cannot go (the provider is
    down): a supervisor filtering on INITIAL_CONTACT finds it while the send retries, not
    under INVESTIGATION until the provider is back."""
    fast = request.config.getoption("--workflow-env") == "local"
    monkeypatch.setattr(SmsActivities, "send_sms", ProviderDown.send_sms)
    OUTAGE.set()
    ATTEMPTS.clear()
    try:
        async with running_worker(env, sqlite_sessions, tmp_path / "data", fast=fast) as h:
            _, handle = await h.start()
            await eventually(lambda: len(ATTEMPTS) >= 2, "the first notice retried", 30)
            status = await h.status(handle)
            assert status.stage == "INITIAL_CONTACT" and status.counters.sms_sent == 0
            attrs = await raw_attributes(handle)
            assert attrs[sa.STAGE.name] == "INITIAL_CONTACT"
            assert len(ATTEMPTS) >= 2 and (await h.status(handle)).counters.sms_sent == 0
            # The provider is back: the notice goes, and the case ends as usual.
            OUTAGE.clear()
            await h.until(handle, lambda s: s.counters.sms_sent == 1, "the notice sent", 30)
            await h.pay(handle, DEBT)
            result: CaseResult = await handle.result()
            assert result.outcome == "PAID_IN_FULL"
    finally:
        OUTAGE.clear()


# collection-v6: the next action on the case row, NextActionAt unset while the row has it.

NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)


class Executions:
    """Visibility holding some loans' executions, answering the queries the lists send: the
    NextActionAt bound of the "overdue" and "due today" filters, `WorkflowId IN (…)`,
    `Branch IN (…)`, `Branch=`, `CollectorId=`, `CollectionStage=` and
    `ExecutionStatus='Running'` (enough of the query language for service/portfolio.py)."""

    def __init__(self) -> None:
        self.runs: list[SimpleNamespace] = []

    def add(
        self,
        loan_no: str,
        next_action_at: datetime | None,
        closed: bool = False,
        collector: str = "C-QX-1",
        branch: str = "QX01",
    ) -> None:
        attrs: dict[str, list[object]] = {
            "CollectionStage": ["FOLLOW_UP"],
            "Branch": [branch],
            "CollectorId": [collector],
        }
        if next_action_at is not None:
            attrs["NextActionAt"] = [next_action_at]
        self.runs.append(
            SimpleNamespace(
                id=f"collection-{loan_no}",
                search_attributes=attrs,
                status=SimpleNamespace(name="COMPLETED" if closed else "RUNNING"),
                start_time=NOW - timedelta(days=30),
                close_time=NOW - HOUR if closed else None,
            )
        )

    def _matches(self, run: SimpleNamespace, query: str) -> bool:
        nxt = run.search_attributes.get("NextActionAt", [None])[0]
        for op, bound in re.findall(r"NextActionAt (<=?) '([^']+)'", query):
            limit = datetime.fromisoformat(bound)
            if nxt is None or not (nxt < limit if op == "<" else nxt <= limit):
                return False
        ids = re.search(r"WorkflowId IN \(([^)]*)\)", query)
        if ids and f"'{run.id}'" not in ids.group(1).split(", "):
            return False
        a = run.search_attributes
        branches = re.search(r"Branch IN \(([^)]*)\)", query)
        if branches and f"'{a['Branch'][0]}'" not in branches.group(1).split(", "):
            return False
        for name in ("Branch", "CollectorId", "CollectionStage"):
            for value in re.findall(rf"\b{name}='([^']*)'", query):
                if a.get(name, [None])[0] != value:
                    return False
        return "ExecutionStatus='Running'" not in query or run.status.name == "RUNNING"

    async def list_workflows(self, query: str, **kw: object) -> AsyncIterator[SimpleNamespace]:
        for run in self.runs:
            if self._matches(run, query):
                yield run

    async def count_workflows(self, query: str) -> SimpleNamespace:
        return SimpleNamespace(count=sum(self._matches(r, query) for r in self.runs))


def row_next_action(sessions, loan_no: str) -> tuple[datetime | None, datetime | None]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        case = session.scalar(select(Case).join(Loan).where(Loan.loan_no == loan_no))
        return case.next_action_at, case.next_action_stamp


async def test_the_due_filters_take_a_v6_cases_row_and_a_released_cases_attribute(sessions) -> None:
    """ "Overdue" and "due today" (dashboard, its export, the CLI) and the lists' next-action
    times: a collection-v6 case's from its case row (its NextActionAt unset), a released
    run's from its attribute, whatever its row holds (written at stage changes only, or
    nothing), and an attribute a v6 case set (a wait nothing wrote ahead) over its row."""
    acts = CaseActivities(sessions)
    vis = Executions()
    loans = {name: new_loan(sessions) for name in ("v6_late", "v6_later", "released", "bare",
                                                  "v6_set", "v6_closed")}  # fmt: skip

    def record(name: str, seq: int, at: datetime | None, stamp: datetime | None,
               stage: Stage = Stage.FOLLOW_UP) -> None:  # fmt: skip
        acts.record_transition(
            transition(loans[name], seq, stage, at=NOW - timedelta(days=2), next_action="x",
                       next_action_at=at, next_action_stamp=stamp)
        )  # fmt: skip

    stamp = NOW - timedelta(days=1)
    record("v6_late", 1, NOW - 2 * HOUR, stamp)  # overdue, on its row only
    vis.add(loans["v6_late"], None)
    record("v6_later", 1, NOW + timedelta(days=3), stamp)
    vis.add(loans["v6_later"], None)
    record("released", 1, NOW - 5 * HOUR, None)  # the stage change's, since replaced
    vis.add(loans["released"], NOW + timedelta(days=2))
    record("bare", 1, None, None)  # a released run before its first wait: no row value
    vis.add(loans["bare"], None)
    record("v6_set", 1, NOW - 3 * HOUR, stamp)  # the row's is older than the attribute's
    vis.add(loans["v6_set"], NOW + timedelta(days=4))
    record("v6_closed", 1, NOW - 4 * HOUR, stamp)
    record("v6_closed", 2, None, stamp + HOUR, Stage.PAID_IN_FULL)
    vis.add(loans["v6_closed"], None, closed=True)
    # A late write stamped before the row's is refused; a released transition has no stamp.
    late = PaymentRecord(loans["v6_later"], PaymentPosted("R-LATE", 1, NOW), True, 1, 999_999,
                         None, "y", NOW - 6 * HOUR, stamp - HOUR)  # fmt: skip
    acts.record_payment(late)
    assert row_next_action(sessions, loans["v6_later"])[0] == NOW + timedelta(days=3)
    assert row_next_action(sessions, loans["released"]) == (NOW - 5 * HOUR, None)
    assert row_next_action(sessions, loans["bare"]) == (None, None)

    async def found(**f: bool) -> dict[str, datetime | None]:
        rows = await find_cases(vis, Filters(**f), NOW, ("QX01",), Policy(), 50, sessions)  # type: ignore[arg-type]
        by_loan = {r.loan_no: r.next_action_at for r in rows}
        return {name: by_loan[no] for name, no in loans.items() if no in by_loan}

    overdue = {"v6_late": NOW - 2 * HOUR}
    assert await found(overdue_action=True) == overdue
    assert await found(due_today=True) == overdue
    assert await found(overdue_action=True, due_today=True) == overdue
    assert await found() == {
        "v6_late": NOW - 2 * HOUR,
        "v6_later": NOW + timedelta(days=3),
        "released": NOW + timedelta(days=2),
        "bare": None,
        "v6_set": NOW + timedelta(days=4),
        "v6_closed": None,
    }
    # Without the database (no case rows): the attributes alone, as before.
    rows = await find_cases(vis, Filters(overdue_action=True), NOW, None, Policy(), 50)  # type: ignore[arg-type]
    assert rows == []
    # The CLI's counts per stage follow the list; the limit holds.
    counts = await count_cases_per_stage(vis, Filters(overdue_action=True), NOW, None,  # type: ignore[arg-type]
                                         Policy(), sessions)  # fmt: skip
    assert counts == {"FOLLOW_UP": 1}
    record("v6_later", 2, NOW - HOUR, stamp + HOUR)  # now overdue too
    assert set(await found(overdue_action=True)) == {"v6_late", "v6_later"}
    one = await find_cases(vis, Filters(overdue_action=True), NOW, None, Policy(), 1, sessions)  # type: ignore[arg-type]
    assert len(one) == 1
    # The collector's page: the row's time for a v6 case, the attribute's for the others.
    cases = [
        MyCase(loans["v6_late"], "FOLLOW_UP", "", "", "", NOW - 2 * HOUR, None,
               next_action_stamp=stamp),
        MyCase(loans["released"], "FOLLOW_UP", "", "", "", NOW - 5 * HOUR, None),
        MyCase(loans["bare"], "FOLLOW_UP", "", "", "", None, None),
    ]  # fmt: skip
    await with_next_actions(vis, cases)  # type: ignore[arg-type]
    assert [c.next_action_at for c in cases] == [NOW - 2 * HOUR, NOW + timedelta(days=2), None]


async def test_the_collectors_page_takes_the_running_execution_not_an_earlier_ones(
    sessions,
) -> None:
    """A loan's case continued as new (or restarted): its closed execution kept a past
    NextActionAt, the running collection-v6 one has none (its row holds a future next
    action). The collector's page shows the row's future time, not "late", whatever order
    visibility lists the executions in."""
    acts = CaseActivities(sessions)
    loan = new_loan(sessions)
    later = NOW + timedelta(days=2)
    acts.record_transition(
        transition(loan, 1, Stage.FOLLOW_UP, at=NOW - timedelta(days=1), next_action="x",
                   next_action_at=later, next_action_stamp=NOW - timedelta(days=1))
    )  # fmt: skip
    for closed_first in (True, False):
        vis = Executions()
        if closed_first:
            vis.add(loan, NOW - 3 * HOUR, closed=True)
        vis.add(loan, None)
        if not closed_first:
            vis.add(loan, NOW - 3 * HOUR, closed=True)
        case = MyCase(loan, "FOLLOW_UP", "", "", "", later, None,
                      next_action_stamp=NOW - timedelta(days=1))  # fmt: skip
        await with_next_actions(vis, [case])  # type: ignore[arg-type]
        assert case.next_action_at == later, closed_first


async def test_a_v6_case_found_by_its_row_passes_the_other_filters_in_visibility(
    sessions,
) -> None:
    """ "Overdue" with a collector, stage or branch filter: a collection-v6 case whose row
    is overdue is listed only when its running execution passes the other filters (the
    database knows the due time, visibility the collector and the stage)."""
    acts = CaseActivities(sessions)
    vis = Executions()
    mine, theirs = new_loan(sessions), new_loan(sessions)
    for loan in (mine, theirs):
        acts.record_transition(
            transition(loan, 1, Stage.FOLLOW_UP, at=NOW - timedelta(days=1), next_action="x",
                       next_action_at=NOW - HOUR, next_action_stamp=NOW - timedelta(days=1))
        )  # fmt: skip
    vis.add(mine, None, collector="C-QX-1")
    vis.add(theirs, None, collector="C-QX-2")

    async def found(**f: object) -> set[str]:
        rows = await find_cases(vis, Filters(overdue_action=True, **f), NOW, ("QX01",),  # type: ignore[arg-type]
                                Policy(), 50, sessions)  # fmt: skip
        return {r.loan_no for r in rows}

    assert await found() == {mine, theirs}
    assert await found(collector="C-QX-1") == {mine}
    assert await found(collector="C-QX-2") == {theirs}
    assert await found(stage="NEGOTIATION") == set()
    assert await found(branch="QX02") == set()


async def test_the_limit_keeps_the_most_overdue_of_both_sources(sessions) -> None:
    """ "Overdue" with a limit (the CLI's --limit, the export's first rows): the most
    overdue cases, whether their time is a released run's attribute or a collection-v6
    case's row, soonest first."""
    acts = CaseActivities(sessions)
    vis = Executions()
    released, v6 = new_loan(sessions), new_loan(sessions)
    vis.add(released, NOW - HOUR)
    acts.record_transition(
        transition(v6, 1, Stage.FOLLOW_UP, at=NOW - timedelta(days=1), next_action="x",
                   next_action_at=NOW - 5 * HOUR, next_action_stamp=NOW - timedelta(days=1))
    )  # fmt: skip
    vis.add(v6, None)

    async def listed(limit: int) -> list[str]:
        rows = await find_cases(vis, Filters(overdue_action=True), NOW, None, Policy(), limit,  # type: ignore[arg-type]
                                sessions)  # fmt: skip
        return [r.loan_no for r in rows]

    assert await listed(1) == [v6]
    assert await listed(2) == [v6, released]
