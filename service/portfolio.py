"""The portfolio as supervisors see it: lists from Temporal visibility, counts and caseloads.

The list of cases comes from visibility (the search attributes the workflow keeps current),
so the CLI, the dashboard and `temporal workflow list` agree on them, except the
outstanding amount: only the lists are current there. They take it from the database's case
row where it has one (exact after every payment), while a collection-v5 case updates its
OutstandingFen attribute (what `temporal workflow list` shows) only at stage changes and
at its end; and the next action's time, which a collection-v6 case keeps on its case row
(written by the activity before each wait) with its NextActionAt attribute unset: the lists,
their "overdue" and "due today" filters and the collector's page take the row's then, the
attribute's where it is set (a released run's, or a wait nothing wrote ahead). Counts per
stage and branch
and collectors' caseloads come from the database's case projection in one query each:
visibility cannot GROUP BY a custom search attribute.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.models import Case, Collector, Complaint, Loan
from domain.policy import Policy
from domain.stages import CLOSED_STAGES, RiskTier, Stage
from domain.timerules import days_past_due, end_of_local_day, local_date, start_of_local_day
from domain.training import TrainingState, training_state
from workflows.collection import LoanCollectionWorkflow

WORKFLOW_ID_PREFIX = "collection-"
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
OPEN_STAGES = [s for s in Stage if s not in CLOSED_STAGES]


class FilterError(ValueError):
    """A filter value that cannot be used; the message names the field."""


@dataclass
class Filters:
    stage: str | None = None
    branch: str | None = None
    collector: str | None = None
    risk: str | None = None
    min_dpd: int | None = None
    overdue_action: bool = False  # next action already due
    due_today: bool = False  # next action due by the end of today (borrower's calendar)

    def checked(self) -> Filters:
        if self.stage and self.stage not in Stage.__members__:
            raise FilterError(f"stage: {self.stage!r} is not one of {', '.join(Stage)}")
        if self.risk and self.risk not in RiskTier.__members__:
            raise FilterError(f"risk: {self.risk!r} is not one of {', '.join(RiskTier)}")
        for name in ("branch", "collector"):
            value = getattr(self, name)
            if value and not _CODE.match(value):
                raise FilterError(f"{name}: {value!r} is not a code (letters, digits, - _ .)")
        if self.min_dpd is not None and not 0 <= self.min_dpd <= 100_000:
            raise FilterError("min_dpd: a number of days from 0")
        return self


@dataclass
class CaseRow:
    loan_no: str
    stage: str
    branch: str
    collector: str
    risk_tier: str
    days_past_due: int | None
    outstanding_fen: int | None
    next_action_at: datetime | None
    running: bool


def filters_from_query(query: Mapping[str, str]) -> Filters:
    """The dashboard's filters from its query string (the same names as the form's fields);
    a FilterError names the field that cannot be used."""
    min_dpd = (query.get("min_dpd") or "").strip()
    if min_dpd and not min_dpd.isdigit():
        raise FilterError("min_dpd: a number of days from 0")
    return Filters(
        stage=query.get("stage") or None,
        branch=query.get("branch") or None,
        collector=query.get("collector") or None,
        risk=query.get("risk") or None,
        min_dpd=int(min_dpd) if min_dpd else None,
        overdue_action=query.get("overdue") == "1",
        due_today=query.get("due_today") == "1",
    ).checked()


def _in(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def visibility_query(
    filters: Filters,
    now: datetime,
    branches: tuple[str, ...] | None = None,
    policy: Policy | None = None,
) -> str:
    """The visibility query for `filters`, limited to `branches` (None: every branch).

    `policy`: the configured one, whose time zone says when "today" ends (`due_today`)."""
    f = filters.checked()
    parts = [f"WorkflowType='{LoanCollectionWorkflow.__name__}'"]
    if branches is not None:
        if not branches or not all(_CODE.match(b) for b in branches):
            parts.append("Branch='-'")  # nothing visible
        else:
            parts.append(f"Branch IN {_in(branches)}")
    if f.stage:
        parts.append(f"CollectionStage='{f.stage}'")
    if f.branch:
        parts.append(f"Branch='{f.branch}'")
    if f.collector:
        parts.append(f"CollectorId='{f.collector}'")
    if f.risk:
        parts.append(f"RiskTier='{f.risk}'")
    if f.min_dpd is not None:
        # At least N days past due: overdue before the start of the day after (today - N),
        # in the borrower's calendar; a strict "<" in UTC, which the SQL visibility stores
        # (it compares text, so an equal instant in another form would not match). A case a
        # released version began has only DaysPastDue (refreshed when it changed) until its
        # next run or the next export's debt update gives it the date.
        zone_policy = policy or Policy()
        day_after = local_date(now, zone_policy) - timedelta(days=int(f.min_dpd) - 1)
        before = start_of_local_day(day_after, zone_policy).astimezone(UTC)
        parts.append(
            f"(OverdueSince < '{before:%Y-%m-%dT%H:%M:%SZ}' OR DaysPastDue >= {int(f.min_dpd)})"
        )
    if f.overdue_action:
        parts.append(f"NextActionAt < '{now.isoformat()}'")
    if f.due_today:
        if policy is None:
            raise TypeError("visibility_query: due_today needs the policy (its time zone)")
        end = end_of_local_day(local_date(now, policy), policy)
        parts.append(f"NextActionAt <= '{end.isoformat()}'")
    if f.overdue_action or f.due_today:
        parts.append("ExecutionStatus='Running'")
    return " AND ".join(parts)


def _first(attrs: dict, name: str) -> object:  # type: ignore[type-arg]
    values = attrs.get(name) or [None]
    return values[0]


def _days_past_due(attrs: dict, now: datetime, policy: Policy) -> int | None:  # type: ignore[type-arg]
    """From the overdue date (collection-v4), else the released cases' stored count."""
    since = _first(attrs, "OverdueSince")
    if isinstance(since, datetime):
        return days_past_due(local_date(since, policy), now, policy)
    stored = _first(attrs, "DaysPastDue")
    return stored if isinstance(stored, int) else None


def outstanding_from_db(
    sessions: sessionmaker[Session], loan_nos: list[str]
) -> dict[str, tuple[int, datetime]]:
    """The case rows' outstanding amounts of these loans (those that have one) with the
    workflow time each is as of: one query for a page of rows (per 500 loans for an
    export's ten thousand)."""
    return case_row_facts(sessions, loan_nos)[0]


def case_row_facts(
    sessions: sessionmaker[Session], loan_nos: list[str]
) -> tuple[dict[str, tuple[int, datetime]], dict[str, tuple[datetime | None, datetime]]]:
    """The case rows' outstanding amounts (those that have one) and next actions' times
    (those a collection-v6 case wrote: with a stamp), each with the workflow time it is as
    of; one query per 500 loans."""
    amounts: dict[str, tuple[int, datetime]] = {}
    actions: dict[str, tuple[datetime | None, datetime]] = {}
    with sessions() as session:
        for start in range(0, len(loan_nos), 500):
            q = (
                select(
                    Loan.loan_no,
                    Case.outstanding_fen,
                    Case.outstanding_at,
                    Case.next_action_at,
                    Case.next_action_stamp,
                )
                .join(Case, Case.loan_id == Loan.id)
                .where(Loan.loan_no.in_(loan_nos[start : start + 500]))
            )
            for loan_no, fen, at, next_at, stamp in session.execute(q):
                if fen is not None and at is not None:
                    amounts[loan_no] = (fen, at)
                if stamp is not None:
                    actions[loan_no] = (None if next_at is None else _aware(next_at), stamp)
    return amounts, actions


def next_action_matches(
    filters: Filters, at: datetime | None, now: datetime, policy: Policy | None
) -> bool:
    """Whether a next action at `at` passes the "overdue" and "due today" filters (what
    `visibility_query` asks of NextActionAt)."""
    if at is None:
        return not (filters.overdue_action or filters.due_today)
    if filters.overdue_action and not at < now:
        return False
    if filters.due_today:
        zone_policy = policy or Policy()
        if at > end_of_local_day(local_date(now, zone_policy), zone_policy):
            return False
    return True


def due_from_db(
    sessions: sessionmaker[Session],
    filters: Filters,
    now: datetime,
    branches: tuple[str, ...] | None,
    policy: Policy | None,
) -> list[str]:
    """The loans of open cases whose row has a collection-v6 next action passing the
    "overdue" and "due today" filters, soonest first (their other filters: visibility's)."""
    q = (
        select(Loan.loan_no, Case.next_action_at)
        .join(Case, Case.loan_id == Loan.id)
        .where(
            Case.next_action_stamp.is_not(None),
            Case.next_action_at.is_not(None),
            Case.closed_at.is_(None),
        )
        .order_by(Case.next_action_at, Loan.loan_no)
    )
    if filters.overdue_action:
        q = q.where(Case.next_action_at < now)
    if filters.due_today:
        zone_policy = policy or Policy()
        q = q.where(
            Case.next_action_at <= end_of_local_day(local_date(now, zone_policy), zone_policy)
        )
    if branches is not None:
        q = q.where(Case.branch_code.in_(branches))
    if filters.branch:
        q = q.where(Case.branch_code == filters.branch)
    with sessions() as session:
        return [loan_no for loan_no, _at in session.execute(q)]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)  # SQLite gives naive UTC


def _within(at: datetime, started: datetime | None, closed: datetime | None) -> bool:
    """Whether the case row's amount (as of `at`) belongs to the execution that ran from
    `started` to `closed` (None: still running): the row is one per loan, visibility lists
    every execution (a terminated earlier generation, the runs continued as new). The
    running execution always takes it: it may have continued as new after the row's last
    amount (a long follow-up writes none at the start of a run), and a new generation
    clears the row when it opens. A closed one only when the amount is of its lifetime."""
    if started is None or closed is None:
        return True
    at = _aware(at)
    return _aware(started) <= at <= _aware(closed)


async def list_cases(
    client: Client,
    query: str,
    limit: int = 50,
    policy: Policy | None = None,
    now: datetime | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> list[CaseRow]:
    """`policy`: whose calendar counts days past due (the default policy's zone if None).
    `sessions`: the database whose case rows give the outstanding amounts, each to the one
    execution whose lifetime holds the row's time (the search attribute's value for the
    other executions, where a row has none, or without a database)."""
    policy = policy or Policy()
    now = now or datetime.now(UTC)
    rows = []
    lifetimes: list[tuple[datetime | None, datetime | None]] = []
    if limit <= 0:
        return rows
    async for wf in client.list_workflows(query, limit=limit, page_size=min(limit, 1000)):
        a = wf.search_attributes
        nxt = _first(a, "NextActionAt")
        rows.append(
            CaseRow(
                loan_no=wf.id.removeprefix(WORKFLOW_ID_PREFIX),
                stage=str(_first(a, "CollectionStage") or "-"),
                branch=str(_first(a, "Branch") or "-"),
                collector=str(_first(a, "CollectorId") or "-"),
                risk_tier=str(_first(a, "RiskTier") or "-"),
                days_past_due=_days_past_due(a, now, policy),
                outstanding_fen=_first(a, "OutstandingFen"),  # type: ignore[arg-type]
                next_action_at=nxt if isinstance(nxt, datetime) else None,
                running=wf.status is not None and wf.status.name == "RUNNING",
            )
        )
        lifetimes.append((getattr(wf, "start_time", None), getattr(wf, "close_time", None)))
    if sessions is not None and rows:
        loan_nos = [r.loan_no for r in rows]
        exact, actions = await asyncio.to_thread(case_row_facts, sessions, loan_nos)
        for r, (started, closed) in zip(rows, lifetimes, strict=True):
            found = exact.get(r.loan_no)
            if found is not None and _within(found[1], started, closed):
                r.outstanding_fen = found[0]
            # collection-v6: NextActionAt unset while the row has the next action.
            action = actions.get(r.loan_no)
            if r.next_action_at is None and action is not None:
                if _within(action[1], started, closed):
                    r.next_action_at = action[0]
    return rows


async def find_cases(
    client: Client,
    filters: Filters,
    now: datetime,
    branches: tuple[str, ...] | None = None,
    policy: Policy | None = None,
    limit: int = 50,
    sessions: sessionmaker[Session] | None = None,
) -> list[CaseRow]:
    """The cases passing `filters` (the dashboard, its export, the CLI): `list_cases` of
    `visibility_query`, and with the "overdue" or "due today" filter and a database, the
    running collection-v6 cases whose case row's next action passes it (their NextActionAt
    is unset): found in the database, their other filters checked in visibility; the two
    merged soonest (most overdue) first, then cut to `limit`. The database half is the most
    urgent v6 cases; the visibility half is the `limit` cases its query lists first (its
    list has no order by NextActionAt, as before collection-v6), so with more matches than
    `limit` the released runs' most overdue may be past the cut: ask for a larger limit."""
    rows = await list_cases(
        client, visibility_query(filters, now, branches, policy), limit, policy, now, sessions
    )
    if sessions is None or not (filters.overdue_action or filters.due_today):
        return rows
    due = await asyncio.to_thread(due_from_db, sessions, filters, now, branches, policy)
    seen = {r.loan_no for r in rows}
    due = [loan_no for loan_no in due if loan_no not in seen]
    others = replace(filters, overdue_action=False, due_today=False)
    base = f"{visibility_query(others, now, branches, policy)} AND ExecutionStatus='Running'"
    found: list[CaseRow] = []  # `due` is soonest first: its first `limit` that pass do
    for start in range(0, len(due), 200):
        if len(found) >= limit:
            break
        ids = [f"{WORKFLOW_ID_PREFIX}{loan_no}" for loan_no in due[start : start + 200]]
        chunk = ", ".join(f"'{i}'" for i in ids if _CODE.match(i))
        if not chunk:
            continue
        query = f"{base} AND WorkflowId IN ({chunk})"
        for r in await list_cases(client, query, len(ids), policy, now, sessions):
            # A row whose NextActionAt is set is judged by it (the query above).
            if r.running and r.loan_no not in seen:
                if next_action_matches(filters, r.next_action_at, now, policy):
                    seen.add(r.loan_no)
                    found.append(r)
    merged = rows + found
    merged.sort(key=lambda r: (r.next_action_at is None, r.next_action_at or now, r.loan_no))
    return merged[:limit]


async def count_cases_per_stage(
    client: Client,
    filters: Filters,
    now: datetime,
    branches: tuple[str, ...] | None = None,
    policy: Policy | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> dict[str, int]:
    """Cases per stage passing `filters` but the stage: visibility's counts, plus with the
    "overdue" or "due today" filter the collection-v6 cases `find_cases` adds."""
    others = replace(filters, stage=None)
    if sessions is None or not (filters.overdue_action or filters.due_today):
        return await counts_per_stage(client, visibility_query(others, now, branches, policy))
    listed = await find_cases(client, others, now, branches, policy, 100_000, sessions)
    found = Counter(r.stage for r in listed)
    return {s.value: found[s.value] for s in Stage if found[s.value]}


async def counts_per_stage(client: Client, query: str) -> dict[str, int]:
    """Cases per stage matching `query`: one count query per stage (visibility)."""
    counts = {}
    for stage in Stage:
        n = await client.count_workflows(f"{query} AND CollectionStage='{stage}'")
        if n.count:
            counts[stage.value] = n.count
    return counts


def stage_branch_counts(
    sessions: sessionmaker[Session], branches: tuple[str, ...] | None
) -> dict[tuple[str, str], int]:
    """Cases per (stage, branch) from the case projection, in one GROUP BY."""
    q = select(Case.stage, Case.branch_code, func.count()).group_by(Case.stage, Case.branch_code)
    if branches is not None:
        q = q.where(Case.branch_code.in_(branches))
    with sessions() as session:
        return {(stage, branch): n for stage, branch, n in session.execute(q)}


@dataclass
class Caseload:
    collector_id: str
    name: str
    branch: str
    open_cases: int
    capacity: int
    training_expires_on: date | None = None  # the safety training's validity; None: unknown
    training_due: bool = False  # expired, expiring within the policy's window, or none


def mark_training(
    loads: list[Caseload], today: Callable[[str], date], window_days: int
) -> list[Caseload]:
    """Flag the collectors whose training has expired or expires within the policy's window
    (`training_warning_days`) of their branch's `today(branch)` (service/training.py
    `branch_today`); those with none recorded are flagged too (the dashboard lists them on
    their own, the daily reminder texts them to the supervisors)."""
    for load in loads:
        state = training_state(load.training_expires_on, today(load.branch), window_days)
        load.training_due = state != TrainingState.VALID
    return loads


def caseloads(sessions: sessionmaker[Session], branches: tuple[str, ...] | None) -> list[Caseload]:
    """Open cases per active collector (as first or second collector) against capacity."""
    open_case = Case.closed_at.is_(None)
    load = (
        select(func.count())
        .where(
            open_case,
            or_(Case.primary_collector == Collector.id, Case.second_collector == Collector.id),
        )
        .correlate(Collector)
        .scalar_subquery()
    )
    q = select(Collector, load).where(Collector.active.is_(True)).order_by(Collector.id)
    if branches is not None:
        q = q.where(Collector.branch_code.in_(branches))
    with sessions() as session:
        return [
            Caseload(c.id, c.name, c.branch_code, n, c.capacity, c.training_expires_on)
            for c, n in session.execute(q)
        ]


@dataclass
class ComplaintCount:
    """Complaints of a branch about one collector ("" when none was named or assigned)."""

    branch: str
    collector_id: str
    total: int = 0
    open: int = 0
    overdue: int = 0  # a deadline passed (acknowledgement or resolution)


def complaint_counts(
    sessions: sessionmaker[Session], branches: tuple[str, ...] | None
) -> list[ComplaintCount]:
    """Per branch and collector: every complaint, those still open, those escalated."""
    q = select(
        Complaint.branch_code,
        Complaint.collectors,
        Complaint.status,
        Complaint.ack_escalated_at.is_not(None) | Complaint.resolve_escalated_at.is_not(None),
    )
    if branches is not None:
        q = q.where(Complaint.branch_code.in_(branches))
    counts: dict[tuple[str, str], ComplaintCount] = {}
    with sessions() as session:
        for branch, collectors, status, overdue in session.execute(q):
            for collector in (collectors or "").split(",") or [""]:
                c = counts.setdefault((branch, collector), ComplaintCount(branch, collector))
                c.total += 1
                c.open += status != "RESOLVED"
                c.overdue += bool(overdue)
    return [counts[k] for k in sorted(counts)]


@dataclass
class UrgentAlert:
    loan_no: str
    branch: str
    at: datetime
    detail: str
    task_id: int = 0  # a supervisor may close it once the case cannot acknowledge it


def urgent_alerts(sessions: sessionmaker[Session], branches: tuple[str, ...]) -> list[UrgentAlert]:
    """Safety alerts that reached nobody by SMS (no supervisor nor head with a mobile: the
    task marked URGENT by activities/safety.py), until someone acknowledges the alert (its
    tasks are then done): the dashboard's banner. However old: nobody has answered them.
    Not those the case can no longer acknowledge (service/alert_tasks.stale)."""
    from db.models import Loan, Task
    from domain.safety import URGENT
    from service.alert_tasks import stale

    q = (
        select(
            Loan.loan_no,
            Case.branch_code,
            Task.created_at,
            Task.detail,
            Task.id,
            Task.key,
            Case.generation,
            Case.closed_at,
        )
        .join(Case, Case.id == Task.case_id)
        .join(Loan, Loan.id == Case.loan_id)
        .where(
            Task.kind == "SAFETY_ALERT",
            Task.status == "OPEN",
            Task.detail.startswith(URGENT),
            Case.branch_code.in_(branches),
        )
        .order_by(Task.created_at.desc())
    )
    with sessions() as session:
        return [
            UrgentAlert(loan, branch, at, detail, task_id)
            for loan, branch, at, detail, task_id, key, generation, closed in session.execute(q)
            if not stale(key, loan, generation, closed is not None, detail)
        ]


# What a collector does next in each stage (the case page's Query has the exact wording).
STAGE_TODO = {
    "INVESTIGATION": "调查 investigation",
    "INITIAL_CONTACT": "电话联系 phone contact",
    "FIELD_VISIT": "上门拜访 visit",
    "NEGOTIATION": "商定还款方案 agree a plan",
    "AGREEMENT_SIGNING": "签署协议 collect the signature",
    "FOLLOW_UP": "跟进还款 follow up the installments",
    "ON_HOLD": "暂停 on hold",
    "LEGAL_REVIEW": "法务审查 legal review",
}


async def with_next_actions(client: Client, cases: list) -> None:  # type: ignore[type-arg]
    """Fill each case's next action time from visibility, which a released run keeps exact
    (its case row is written at stage changes only); a collection-v6 case's from its row
    (`next_action_stamp` set) while its NextActionAt is unset."""
    by_id = {f"{WORKFLOW_ID_PREFIX}{c.loan_no}": c for c in cases}
    for c in cases:
        c.next_action = STAGE_TODO.get(c.stage, c.stage)
    ids = list(by_id)
    for start in range(0, len(ids), 200):
        chunk = ", ".join(f"'{i}'" for i in ids[start : start + 200] if _CODE.match(i))
        if not chunk:
            continue
        # The running executions only: a closed one (a run continued as new, an earlier
        # generation) keeps the NextActionAt of its time, which a v6 run has unset.
        query = f"WorkflowId IN ({chunk}) AND ExecutionStatus='Running'"
        async for wf in client.list_workflows(query):
            if getattr(wf, "close_time", None) is not None:
                continue
            case = by_id.get(wf.id)
            nxt = _first(wf.search_attributes, "NextActionAt")
            if case is not None:
                stage = _first(wf.search_attributes, "CollectionStage")
                case.stage = str(stage or case.stage)
                case.next_action = STAGE_TODO.get(case.stage, case.stage)
                if isinstance(nxt, datetime):
                    case.next_action_at = nxt
                elif getattr(case, "next_action_stamp", None) is None:
                    case.next_action_at = None
                # else collection-v6: the row's (NextActionAt unset while the row has it)
