"""Weak signal (issue 15, item 7), the server's side, on the dev server: an action a phone
sends with its own id is applied once even after the case continued as new; the time the
phone recorded is bounded by the policy (its clock skew ahead, its maximum age back) in the
service and again in the case's validators; the phone's location at a check-in goes to the
branch's supervisors only. The pages' side (the queue in headless Chromium):
tests/test_browser.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.cases import CaseActivities
from db.models import AuditEvent, SmsOutbox, Visit
from domain import search_attributes as sa
from domain.human_input import Refused
from domain.models import (
    AlertAck,
    AppliedOp,
    CaseInput,
    CaseState,
    CheckIn,
    CheckOut,
    ComplaintAction,
    LiftHold,
    PromiseRequest,
    TrainingCheck,
    VisitReport,
)
from domain.names import Activities as A
from domain.phone_actions import (
    OP_ID_REFUSED,
    OP_ID_REUSED,
    clock_corrected,
    phone_update_id,
    pruned,
    request_digest,
)
from domain.policy import Policy
from domain.stages import Stage
from service.case_updates import UPDATE_ID, CaseActions
from service.converter import DATA_CONVERTER
from service.users import Principal, Role
from tests.conftest import binary
from tests.harness import Harness, eventually, running_worker
from tests.web_support import PASSWORD, WAITS_FOR_VISIT, add_user, app_for, case_waiting_for_visit
from workflows.collection import LoanCollectionWorkflow
from workflows.collection import LoanCollectionWorkflow as WF

JSON = {"accept": "application/json"}
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
async def short_runs() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own that suggests a new run once a run has 20 events: a case
    continues as new at the end of every stage's step (a visit report that moves it on)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=20",
        ],
    )
    yield env
    await env.shutdown()


@asynccontextmanager
async def serve(
    env: WorkflowEnvironment, sessions: sessionmaker[Session], tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    """A worker and the app (its JSON API over HTTP) on `env`."""
    async with running_worker(env, sessions, tmp_path / "data") as h:
        transport = httpx.ASGITransport(app=app_for(h))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


@pytest.fixture
async def web(dev_env, sqlite_sessions, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with serve(dev_env, sqlite_sessions, tmp_path) as pair:
        yield pair


@pytest.fixture
async def web_short_runs(short_runs, sqlite_sessions, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with serve(short_runs, sqlite_sessions, tmp_path) as pair:
        yield pair


async def token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**JSON, "authorization": f"Bearer {r.json()['token']}"}


def visits(h: Harness) -> int:
    with h.sessions() as session:
        return session.scalar(select(func.count()).select_from(Visit)) or 0


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def test_a_visit_sent_again_after_the_case_continued_as_new_is_applied_once(
    web_short_runs,
) -> None:
    """Temporal answers a repeated Update id with its first answer within one run only: the
    case keeps the phone's ids across continue-as-new and answers a repeat as the first time
    (accepted: the page takes it off its queue), without a second visit."""
    h, http = web_short_runs
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    mine = await token(http, "zhang")
    run = (await h.status(case.handle)).run
    visit = {"outcome": "MET", "teammates": case.team, "op_id": "visit-op-0001",
             "visited_at": iso(datetime.now(UTC))}  # fmt: skip
    first = await http.post(f"/cases/{case.loan_no}/visit", json=visit, headers=mine)
    assert first.status_code == 200 and first.json()["message"] == "visit 1 recorded: MET"
    status = await h.until(
        case.handle, lambda s: s.stage == "NEGOTIATION" and s.run > run, "a new run"
    )
    again = await http.post(f"/cases/{case.loan_no}/visit", json=visit, headers=mine)
    assert again.status_code == 200, again.text
    assert again.json()["accepted"] and again.json()["message"].startswith("visit 1 recorded")
    assert "already applied" in again.json()["message"]
    status = await h.status(case.handle)
    assert status.counters.visits == 1 and status.stage == "NEGOTIATION"
    assert visits(h) == 1
    other = await http.post(  # another action, with an id of its own, is applied
        f"/cases/{case.loan_no}/visit", json={**visit, "op_id": "visit-op-0002"}, headers=mine
    )
    assert other.json()["message"] == "visit 2 recorded: MET", other.text
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_the_phones_recorded_time_is_bounded_by_the_policy(web) -> None:
    """A phone's action is refused, naming the field, when the time it recorded is more than
    the policy's clock skew ahead or older than its maximum age: by the service (the JSON
    API, as the pages send it) and by the case's own validator (the Update of a phone's id)."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    mine = await token(http, "zhang")
    now = datetime.now(UTC)
    url = f"/cases/{case.loan_no}/visit"
    visit = {"outcome": "MET", "teammates": case.team, "op_id": "visit-op-0010"}
    ahead = await http.post(url, json={**visit, "visited_at": iso(now + timedelta(minutes=20))},
                            headers=mine)  # fmt: skip
    assert ahead.status_code == 409
    assert ahead.json()["message"].startswith("visited_at: more than 10 minutes ahead")
    stale = await http.post(url, json={**visit, "visited_at": iso(now - timedelta(hours=49))},
                            headers=mine)  # fmt: skip
    assert stale.status_code == 409
    assert stale.json()["message"].startswith("visited_at: recorded more than 48 hours ago")
    with h.sessions() as session:
        outcomes = session.scalars(
            select(AuditEvent.outcome).where(
                AuditEvent.loan_no == case.loan_no, AuditEvent.action == "report_visit"
            )
        )
        assert list(outcomes) == ["REFUSED", "REFUSED"]

    # The case's validator, for a phone's Update that did not come through the service.
    for at, why in (
        (now + timedelta(minutes=20), "visited_at: more than 10 minutes ahead"),
        (now - timedelta(hours=49), "visited_at: recorded more than 48 hours ago"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await case.handle.execute_update(
                WF.report_visit, VisitReport("MET", case.team, at), id=f"phone-direct-{at:%H%M%S}"
            )
        assert e.value.cause.message.startswith(why), e.value.cause  # type: ignore[union-attr]
    assert (await h.status(case.handle)).counters.visits == 0

    # Both bounds are the case's policy's.
    strict = WAITS_FOR_VISIT.with_overrides({"offline_clock_skew_minutes": 1})
    spec, handle = await h.start(strict)
    team = (await h.at_stage(handle, "FIELD_VISIT", timeout=30)).collectors
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.report_visit, VisitReport("MET", team, now + timedelta(minutes=5)), id="phone-5m"
        )
    assert e.value.cause.message.startswith("visited_at: more than 1 minutes ahead")  # type: ignore[union-attr]
    ok = await handle.execute_update(
        WF.report_visit, VisitReport("MET", team, datetime.now(UTC)), id="phone-now"
    )
    assert ok.message == "visit 1 recorded: MET"
    await h.pay(handle, 1_000_000)
    await handle.result()
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_the_service_bounds_the_time_itself_and_knows_a_repeat(web) -> None:
    """The service checks the phone's time on its own (its configured policy may be
    stricter than the case's), and an action the case applied already (its answer lost,
    now too old to pass) is answered as applied, not refused."""
    h, _ = web
    case = await case_waiting_for_visit(h)
    who = Principal("zhang", Role.COLLECTOR, ("QX01",), case.collector)
    acts = CaseActions(h.client, h.sessions, h.policy)
    strict = CaseActions(
        h.client, h.sessions, h.policy.with_overrides({"offline_max_age_hours": 0})
    )
    token = UPDATE_ID.set("visit-op-0100")
    try:
        first = await acts.report_visit(who, case.loan_no, "MET", case.team, datetime.now(UTC))
        assert first.accepted and first.message == "visit 1 recorded: MET"
        again = await strict.report_visit(
            who, case.loan_no, "MET", case.team, datetime.now(UTC) - timedelta(minutes=1)
        )
        assert again.accepted and "already applied" in again.message
        # The same id with another request is not that action: refused on its time.
        other = await strict.report_visit(
            who, case.loan_no, "NOT_HOME", case.team, datetime.now(UTC) - timedelta(minutes=1)
        )
        assert not other.accepted and other.message.startswith("visited_at: recorded more")
    finally:
        UPDATE_ID.reset(token)
    token = UPDATE_ID.set("visit-op-0101")
    try:
        late = await strict.report_visit(
            who, case.loan_no, "MET", case.team, datetime.now(UTC) - timedelta(minutes=1)
        )
    finally:
        UPDATE_ID.reset(token)
    assert not late.accepted  # the case's policy (48 hours) would have taken it
    assert late.message.startswith("visited_at: recorded more than 0 hours ago")
    assert (await h.status(case.handle)).counters.visits == 1
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_the_check_in_location_goes_to_the_branchs_supervisors_only(web) -> None:
    """The status Query (every role's page and JSON) has no location; the supervisor's and
    the branch head's page and JSON have it, the collector's and legal's do not."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "head", Role.BRANCH_HEAD, branches=["QX01"])
    add_user(h, "legal", Role.LEGAL, branches=["QX01"])
    mine = await token(http, "zhang")
    checked = await http.post(
        f"/cases/{case.loan_no}/check-in",
        json={"teammates": case.team, "latitude": "29.123456", "longitude": "117.654321"},
        headers=mine,
    )
    assert checked.status_code == 200, checked.text
    url = f"/cases/{case.loan_no}"
    for name in ("zhang", "legal"):
        headers = await token(http, name)
        answer = await http.get(url, headers=headers)
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["status"]["visit"]["collector_ids"] == case.team
        assert "visit_location" not in answer.json()
        page = await http.get(url, headers={"authorization": headers["authorization"]})
        for shown in (answer.text, page.text):
            assert "29.12" not in shown and "117.65" not in shown, name
    for name in ("sup", "head"):
        headers = await token(http, name)
        answer = (await http.get(url, headers=headers)).json()
        assert answer["visit_location"] == {"latitude": 29.123456, "longitude": 117.654321}
        assert "latitude" not in answer["status"]["visit"]
        page = await http.get(url, headers={"authorization": headers["authorization"]})
        assert "签到位置 check-in location: 29.1235, 117.6543" in page.text
    out = await http.post(
        f"/cases/{case.loan_no}/check-out",
        json={"teammates": case.team, "outcome": "MET"},
        headers=mine,
    )
    assert out.status_code == 200, out.text
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


# ---------------------------------------------------------------- the cold review's findings


async def history_failures(h: Harness, workflow_id: str) -> list[str]:
    """The failed workflow tasks of the case's current run (a handler that raised)."""
    failed = []
    handle = h.client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed.append(event.workflow_task_failed_event_attributes.failure.message)
    return failed


async def test_a_reused_op_id_never_skips_the_cases_rules(web_short_runs) -> None:
    """Weak signal review, finding 1: after the case continued as new, the op id of an
    applied visit sent with another action is no repeat: the pages and the service take an
    op_id on a phone's action only (refused naming op_id elsewhere), and the case takes the
    same Update id for a repeat only with the same Update and request; everything else is
    refused, and nothing jams the case (a handler never meets a number it does not know)."""
    h, http = web_short_runs
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    mine, sup = await token(http, "zhang"), await token(http, "sup")
    run = (await h.status(case.handle)).run
    visit = {"outcome": "MET", "teammates": case.team, "op_id": "visit-op-0001",
             "visited_at": iso(datetime.now(UTC))}  # fmt: skip
    first = await http.post(f"/cases/{case.loan_no}/visit", json=visit, headers=mine)
    assert first.status_code == 200, first.text
    await h.until(case.handle, lambda s: s.stage == "NEGOTIATION" and s.run > run, "a new run")

    url = f"/cases/{case.loan_no}"
    far = datetime.now(UTC).date() + timedelta(days=3650)
    promise = {"amount": "99999999", "due_date": far.isoformat(), "source": "VISIT",
               "op_id": "visit-op-0001"}  # fmt: skip
    answer = await http.post(f"{url}/promise", json=promise, headers=mine)
    assert answer.status_code == 409, answer.text  # its own id: the rules apply
    assert answer.json()["message"].startswith("amount_fen: 99,999,999.00 yuan is more")
    for who, action, body in (
        (mine, "acknowledge-complaint", {"number": "99"}),
        (sup, "hold", {"until": far.isoformat(), "reason": "flood"}),
        (sup, "close", {"outcome": "CANCELLED", "reason": "x"}),
    ):
        answer = await http.post(f"{url}/{action}", json={**body, "op_id": "visit-op-0001"},
                                 headers=who)  # fmt: skip
        assert answer.status_code == 409, (action, answer.text)
        assert answer.json()["message"] == OP_ID_REFUSED, action

    # Straight to the case with the visit's own Update id: a repeat only of that visit.
    visit_id = phone_update_id("report_visit", "zhang", "visit-op-0001")
    now = datetime.now(UTC)
    for update, arg in (
        (WF.record_promise, PromiseRequest(9_999_999_900, far, "VISIT", case.collector)),
        (WF.acknowledge_complaint, ComplaintAction(99, "zhang")),
        (WF.report_visit, VisitReport("NOT_HOME", case.team, now)),  # the same Update, another
    ):
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await case.handle.execute_update(update, arg, id=visit_id)
        assert e.value.cause.message == OP_ID_REUSED, update  # type: ignore[union-attr]
    again = await http.post(f"{url}/visit", json=visit, headers=mine)
    assert again.json()["accepted"] and "already applied" in again.json()["message"]
    status = await h.status(case.handle)
    assert status.promises == [] and status.hold is None and status.counters.visits == 1
    assert status.stage == "NEGOTIATION"
    assert await history_failures(h, case.handle.id) == []
    with h.sessions() as session:
        refused = session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.loan_no == case.loan_no, AuditEvent.detail == OP_ID_REFUSED
            )
        )
        assert sorted(refused) == ["acknowledge-complaint", "close", "hold"]
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_a_handler_refuses_what_is_gone_without_failing_the_case() -> None:
    """Weak signal review, finding 1: the validators refuse an alert, a complaint or a hold
    that is not open; should a handler still meet one gone (two Updates accepted in one
    workflow task), it fails its own Update (ApplicationError), never the workflow task (a
    StopIteration or an assertion would fail it on every retry: the case jammed)."""
    now = datetime.now(UTC)
    s = CaseState("L1", "QX01", Policy(), Stage.NEGOTIATION, now, now)
    case = LoanCollectionWorkflow(CaseInput("L1", "QX01", Policy(), state=s))
    for handler, field in (
        (case.safety.acknowledge(AlertAck(1, "sup")), "alert_no: 1 is not an open alert"),
        (case.complaints.acknowledge(ComplaintAction(1, "sup")), "number: 1 is not an open"),
        (case.complaints.resolve(ComplaintAction(1, "sup", "已处理")), "number: 1 is not an open"),
    ):
        with pytest.raises(ApplicationError) as e:
            await handler
        assert e.value.message.startswith(field) and e.value.non_retryable
    with pytest.raises(ApplicationError) as e:
        case.lift_hold(LiftHold("sup", "flood over"))
    assert e.value.message == "stage: the case is not on hold"


async def test_an_op_id_reused_by_another_user_or_action_is_applied_as_its_own(web) -> None:
    """Weak signal review, finding 2: the Update id holds the action and the user, so the
    same op id from another user or with another action gets an Update of its own (applied,
    answered and audited as itself), never the first one's cached answer; the case's answer
    for an applied action (the service's check of a late repeat) is the same user's and
    action's only."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    mine, sup = await token(http, "zhang"), await token(http, "sup")
    url = f"/cases/{case.loan_no}"
    called = datetime.now(UTC)
    call = {"outcome": "NO_ANSWER", "op_id": "call-op-0001", "called_at": iso(called)}
    first = await http.post(f"{url}/call", json=call, headers=mine)
    assert first.json()["message"].startswith("call recorded: NO_ANSWER; 1 unanswered"), first.text
    until = str(called.date() + timedelta(days=60))
    hold = await http.post(f"{url}/hold", json={"until": until, "reason": "flood",
                           "op_id": "call-op-0001"}, headers=sup)  # fmt: skip
    assert hold.status_code == 409 and hold.json()["message"] == OP_ID_REFUSED
    theirs = await http.post(f"{url}/call", json={**call, "collector_id": case.collector},
                             headers=sup)  # fmt: skip
    assert theirs.json()["message"].startswith("call recorded: NO_ANSWER; 2 unanswered"), (
        theirs.text
    )
    visit = {"outcome": "MET", "teammates": case.team, "op_id": "call-op-0001",
             "visited_at": iso(datetime.now(UTC))}  # fmt: skip
    other = await http.post(f"{url}/visit", json=visit, headers=mine)
    assert other.json()["message"] == "visit 1 recorded: MET", other.text
    again = await http.post(f"{url}/call", json=call, headers=mine)  # a true repeat
    assert again.json() == first.json()
    status = await h.status(case.handle)
    assert (
        status.hold is None and status.counters.visits == 1 and status.unanswered_calls_today == 2
    )

    strict = CaseActions(
        h.client, h.sessions, h.policy.with_overrides({"offline_max_age_hours": 0})
    )
    token_ = UPDATE_ID.set("call-op-0001")
    try:  # too old to apply: answered as applied only for zhang's own call
        late = await strict.record_call(
            Principal("li", Role.SUPERVISOR, ("QX01",)), case.loan_no, "NO_ANSWER",
            case.collector, called - timedelta(minutes=1),
        )  # fmt: skip
        own = await strict.record_call(
            Principal("zhang", Role.COLLECTOR, ("QX01",), case.collector), case.loan_no,
            "NO_ANSWER", case.collector, called - timedelta(minutes=1),
        )  # fmt: skip
        held = await strict.hold(  # the service itself: no op id off the phone's actions
            Principal("sup", Role.SUPERVISOR, ("QX01",)), case.loan_no,
            datetime.now(UTC) + timedelta(days=3), "flood",
        )  # fmt: skip
    finally:
        UPDATE_ID.reset(token_)
    assert not late.accepted and late.message.startswith("called_at: recorded more than 0 hours")
    assert own.accepted and "already applied" in own.message
    assert not held.accepted and held.message == OP_ID_REFUSED
    with h.sessions() as session:
        lines = session.execute(
            select(AuditEvent.username, AuditEvent.action, AuditEvent.outcome, AuditEvent.detail)
            .where(AuditEvent.loan_no == case.loan_no, AuditEvent.username == "sup")
            .order_by(AuditEvent.id)
        ).all()
    assert [(u, a, o) for u, a, o, _ in lines] == [
        ("sup", "hold", "REFUSED"),
        ("sup", "record_call", "ACCEPTED"),
        ("sup", "hold", "REFUSED"),
    ]
    assert "2 unanswered" in lines[1][3]
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_contact_rules_judge_the_time_on_the_servers_clock(web) -> None:
    """Weak signal review, finding 6: a phone 10 minutes slow records a call made after the
    calling hours' end as 10 minutes before it; the page sends the phone's clock at sending
    (`sent_at`), so the service puts the call at its true time (server's now less how long
    ago the phone recorded it), and the night rule refuses it; the case's record says the
    phone's clock was off. The calling hours end 5 minutes before now, whatever the hour."""
    h, http = web
    local_now = datetime.now(UTC).astimezone(h.policy.timezone_info())
    end = local_now - timedelta(minutes=5)
    hours = {"contact_window_start": f"{end - timedelta(hours=12):%H:%M}",
             "contact_window_end": f"{end:%H:%M}"}  # fmt: skip
    spec, handle = await h.start(WAITS_FOR_VISIT.with_overrides(hours))
    status = await h.until(handle, lambda s: bool(s.collectors), "collectors assigned")
    add_user(h, "zhang", Role.COLLECTOR, collector_id=status.collectors[0])
    mine = await token(http, "zhang")
    url = f"/cases/{spec.loan_no}/call"
    phone = datetime.now(UTC) - timedelta(minutes=10)  # the phone's clock, 10 minutes slow
    call = {"outcome": "NO_ANSWER", "called_at": iso(phone), "op_id": "call-op-0200"}
    late = await http.post(url, json={**call, "sent_at": iso(phone)}, headers=mine)
    assert late.status_code == 409, late.text
    assert late.json()["message"].startswith("called_at: no calls or visits between")
    with h.sessions() as session:
        line = session.scalar(
            select(AuditEvent.detail).where(
                AuditEvent.loan_no == spec.loan_no, AuditEvent.action == "record_call"
            )
        )
    assert line is not None and "phone clock 10 min slow" in line, line
    # Without the phone's clock at sending, its recorded time is all there is to judge.
    trusted = await http.post(url, json={**call, "op_id": "call-op-0201"}, headers=mine)
    assert trusted.status_code == 200, trusted.text
    assert (await h.status(handle)).unanswered_calls_today == 1
    await h.pay(handle, 1_000_000)
    await handle.result()


def test_the_phones_clock_at_sending_puts_the_recorded_time_on_the_servers() -> None:
    """domain/phone_actions.clock_corrected: true time = now - (sent_at - recorded), bounded
    (sent after recorded, at most offline_max_age_hours later), a note beyond the skew."""
    policy = Policy()
    now = datetime.now(UTC)
    phone = now - timedelta(minutes=12)  # the phone's clock, 12 minutes slow
    recorded = phone - timedelta(hours=2)  # queued two hours on the phone
    report = CheckOut(VisitReport("MET", ["QX01-C01"], recorded))
    fixed, note = clock_corrected(policy, report, phone, now)
    assert fixed.report.visited_at == now - timedelta(hours=2)
    assert "phone clock 12 min slow" in note and "手机时间慢12分钟" in note
    ahead = clock_corrected(policy, report, phone + timedelta(minutes=30), now)[1]
    assert "phone clock 18 min fast" in ahead
    assert clock_corrected(policy, report, now, now + timedelta(seconds=2))[1] == ""  # on time
    with pytest.raises(Refused, match="^sent_at: before visited_at"):
        clock_corrected(policy, report, recorded - timedelta(seconds=1), now)
    with pytest.raises(Refused, match="^visited_at: recorded more than 48 hours ago"):
        clock_corrected(policy, report, recorded + timedelta(hours=49), now)
    promise = PromiseRequest(100_000, now.date(), "CALL", "QX01-C01")
    assert clock_corrected(policy, promise, phone, now) == (promise, "")


def test_applied_phone_actions_are_forgotten_once_too_old_to_come_again() -> None:
    """Weak signal review, 7: the case forgets an applied action once a repeat would be
    refused on its recorded time anyway (offline_max_age_hours plus the skew), and keeps at
    most a count of them; one kept before times were is kept by count only."""
    policy = Policy()
    now = datetime.now(UTC)
    keep = timedelta(hours=policy.offline_max_age_hours, minutes=policy.offline_clock_skew_minutes)
    ops = [
        AppliedOp("phone-old", "x", at=now - keep - timedelta(seconds=1)),
        AppliedOp("phone-legacy", "x"),
        AppliedOp("phone-edge", "x", at=now - keep),
        AppliedOp("phone-new", "x", at=now),
    ]
    assert [o.op_id for o in pruned(ops, now, policy, 200)] == [
        "phone-legacy", "phone-edge", "phone-new",
    ]  # fmt: skip
    assert [o.op_id for o in pruned(ops, now, policy, 2)] == ["phone-edge", "phone-new"]


def test_a_repeat_is_the_same_action_and_request_its_time_aside() -> None:
    """The digest a repeat is known by: the request as the phone sent it, not its recorded
    time (corrected on each send by the phone's clock); a check-out is its visit report."""
    now = datetime.now(UTC)
    report = VisitReport("MET", ["QX01-C01", "QX01-C02"], now, "面谈")
    assert request_digest(report) == request_digest(replace(report, visited_at=now - HOUR))
    assert request_digest(report) != request_digest(replace(report, outcome="NOT_HOME"))
    assert request_digest(CheckOut(report, "x")) == request_digest(report)
    assert phone_update_id("record_call", "zhang", "op-12345678") != phone_update_id(
        "record_call", "li", "op-12345678"
    )
    assert phone_update_id("record_call", "zhang", "op-12345678") != phone_update_id(
        "report_visit", "zhang", "op-12345678"
    )


async def test_a_call_for_helps_location_reaches_the_supervisors_and_heads_only(web) -> None:
    """Weak signal review, 7: the phone's location at "need help" goes into the alert's task
    (the supervisors' and heads') and onto their case page and JSON; not into what the
    collector or legal see (the status Query, the page, the timeline), the audit trail, the
    case's history or the staff texts."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"], mobile="13800000001")
    add_user(h, "head", Role.BRANCH_HEAD, branches=["QX01"])
    add_user(h, "legal", Role.LEGAL, branches=["QX01"])
    mine = await token(http, "zhang")
    url = f"/cases/{case.loan_no}"
    helped = await http.post(
        f"{url}/help", headers=mine,
        json={"latitude": "29.123456", "longitude": "117.654321", "notes": "被围堵"},
    )  # fmt: skip
    assert helped.status_code == 200, helped.text
    task = await eventually(lambda: alert_task(h, case.loan_no), "the supervisor's task")
    assert task.assignees == "supervisor:QX01"
    assert "求助位置 location: 29.12346, 117.65432" in task.detail
    for name in ("sup", "head"):
        headers = await token(http, name)
        answer = (await http.get(url, headers=headers)).json()
        assert answer["alert_locations"] == [
            {"number": 1, "latitude": 29.123456, "longitude": 117.654321}
        ]
        assert answer["locations_unavailable"] is False
        assert "29.12" not in str(answer["status"])
        page = await http.get(url, headers={"authorization": headers["authorization"]})
        assert "求助位置 location: 29.1235, 117.6543" in page.text
    for name in ("zhang", "legal"):
        headers = await token(http, name)
        answer = await http.get(url, headers=headers)
        assert "alert_locations" not in answer.json() and "29.12" not in answer.text
        page = await http.get(url, headers={"authorization": headers["authorization"]})
        assert "29.12" not in page.text and "117.65" not in page.text
    with h.sessions() as session:
        audits = list(session.scalars(select(AuditEvent.detail)))
        texts = list(
            session.scalars(select(SmsOutbox.body).where(SmsOutbox.purpose == "staff_alert"))
        )
    assert texts and audits
    assert not [t for t in [*audits, *texts] if "29.12" in (t or "") or "117.65" in (t or "")]
    assert "29.12" not in str((await h.status(case.handle)).history)
    await case.handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup"))
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


async def test_a_case_that_cannot_say_where_leaves_the_supervisors_page_up(
    web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weak signal review, 7: a location Query that fails (not only an RPC error: a failed
    or rejected Query) leaves the supervisor's page up, saying the location is unavailable,
    and the service's check of a late repeat answers a refusal instead of failing."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    checked = await http.post(
        f"/cases/{case.loan_no}/check-in", headers=await token(http, "zhang"),
        json={"teammates": case.team, "latitude": "29.123456", "longitude": "117.654321"},
    )  # fmt: skip
    assert checked.status_code == 200, checked.text
    asked = WorkflowHandle.query

    async def failing(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        if getattr(query, "__name__", query) in ("visit_location", "alert_locations", "applied_op"):
            raise WorkflowQueryFailedError("the query's handler failed")
        return await asked(self, query, *args, **kwargs)

    monkeypatch.setattr(WorkflowHandle, "query", failing)
    headers = await token(http, "sup")
    url = f"/cases/{case.loan_no}"
    answer = await http.get(url, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["locations_unavailable"] is True
    assert answer.json()["visit_location"] is None
    page = await http.get(url, headers={"authorization": headers["authorization"]})
    assert page.status_code == 200
    assert "位置暂不可用" in page.text and "location unavailable" in page.text
    strict = CaseActions(
        h.client, h.sessions, h.policy.with_overrides({"offline_max_age_hours": 0})
    )
    token_ = UPDATE_ID.set("call-op-0300")
    try:
        late = await strict.record_call(
            Principal("zhang", Role.COLLECTOR, ("QX01",), case.collector), case.loan_no,
            "NO_ANSWER", case.collector, datetime.now(UTC) - timedelta(minutes=1),
        )  # fmt: skip
    finally:
        UPDATE_ID.reset(token_)
    assert not late.accepted and late.message.startswith("called_at: recorded more than 0 hours")
    monkeypatch.undo()
    await case.handle.execute_update(
        WF.check_out, CheckOut(VisitReport("MET", case.team, datetime.now(UTC)))
    )
    await h.pay(case.handle, 1_000_000)
    await case.handle.result()


def alert_task(h: Harness, loan_no: str):  # type: ignore[no-untyped-def]
    from db.models import Case, Loan, Task

    with h.sessions() as session:
        return session.scalar(
            select(Task)
            .join(Case, Case.id == Task.case_id)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Loan.loan_no == loan_no, Task.kind == "SAFETY_ALERT")
            .order_by(Task.id)
        )


def urgent_task(session: Session, case_id: int, key: str, kind: str, status: str = "OPEN") -> None:
    from db.models import Task
    from domain.safety import URGENT

    number = key.split(":alert:")[1].split(":")[0]
    session.add(
        Task(
            key=key, case_id=case_id, kind="SAFETY_ALERT", assignees="head:QX01",
            due_at=datetime.now(UTC), created_at=datetime.now(UTC), status=status,
            detail=f"{URGENT} 安全警报 alert {number} ({kind}): 外访小组",
        )
    )  # fmt: skip


def test_the_urgent_banner_leaves_out_alerts_no_case_can_acknowledge(sessions) -> None:
    """Weak signal review, finding 5: an alert of an earlier generation of the case (its run
    terminated, started again), or a hostile visit's alert on a closed case (which ends
    without waiting for it), is off the banner; a closed case's call for help is not (the
    case waits for its acknowledgement before it ends)."""
    from db.models import Case
    from db.repository import case_for_loan
    from db.seed import add_loan
    from service.portfolio import urgent_alerts
    from tests.harness import loan_spec

    now = datetime.now(UTC)
    with sessions.begin() as session:
        running, closed = (loan_spec(), loan_spec())
        for spec, generation, closed_at in ((running, "g2", None), (closed, "g1", now)):
            case: Case = case_for_loan(session, add_loan(session, spec), now)
            case.generation, case.closed_at = generation, closed_at
            session.flush()
            first, second = (("g1", "HELP"), ("g2", "HELP")) if closed_at is None else (
                ("g1", "HOSTILE"), ("g1", "HELP"))  # fmt: skip
            urgent_task(session, case.id, f"{spec.loan_no}:{first[0]}:alert:1:BRANCH_HEAD",
                        first[1])  # fmt: skip
            urgent_task(session, case.id, f"{spec.loan_no}:{second[0]}:alert:2:BRANCH_HEAD",
                        second[1])  # fmt: skip
    shown = {
        (a.loan_no, a.detail.split("alert ")[1][:1]) for a in urgent_alerts(sessions, ("QX01",))
    }
    assert shown == {(running.loan_no, "2"), (closed.loan_no, "2")}


async def test_a_supervisor_closes_an_urgent_alert_its_case_can_no_longer_acknowledge(web) -> None:
    """Weak signal review, finding 5: an urgent alert whose run was terminated stays on the
    banner until a supervisor or branch head of the case's branch closes its task, with a
    reason; refused while the case can still acknowledge it, for another branch and without
    a reason; every attempt audited."""
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "zhang", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])  # no mobile: nobody is texted
    add_user(h, "far", Role.SUPERVISOR, branches=["LS01"])
    sup, far, mine = [await token(http, n) for n in ("sup", "far", "zhang")]
    helped = await http.post(f"/cases/{case.loan_no}/help", json={}, headers=mine)
    assert helped.status_code == 200, helped.text

    async def banner() -> list[dict]:  # type: ignore[type-arg]
        return (await http.get("/dashboard", headers=sup)).json()["urgent_alerts"]

    shown = await eventually_async(banner, "the urgent banner")
    assert [a["loan_no"] for a in shown] == [case.loan_no]
    close = f"/alerts/{shown[0]['task_id']}/close"
    page = await http.get("/dashboard", headers={"authorization": sup["authorization"]})
    assert f'action="{close}"' in page.text
    answer = await http.post(close, json={"reason": "已联系上"}, headers=sup)
    assert answer.status_code == 409
    assert answer.json()["message"].startswith("alert_no: alert 1 is still open on the case")
    answer = await http.post(close, json={"reason": "已联系上"}, headers=far)
    assert answer.status_code == 409 and answer.json()["message"].startswith("role:")
    assert (await http.post(close, json={"reason": "x"}, headers=mine)).status_code == 404

    await case.handle.terminate("operator: a bad deploy")
    answer = await http.post(close, json={}, headers=sup)
    assert answer.status_code == 409 and answer.json()["message"].startswith("reason:")
    answer = await http.post(close, json={"reason": "组长已电话确认平安"}, headers=sup)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"].startswith("alert 1's task closed")
    assert await banner() == []
    again = await http.post(close, json={"reason": "x"}, headers=sup)
    assert again.status_code == 409 and "closed already" in again.json()["message"]
    with h.sessions() as session:
        from db.models import Task

        assert set(session.scalars(select(Task.status).where(Task.kind == "SAFETY_ALERT"))) == {
            "DONE"
        }
        lines = session.execute(
            select(AuditEvent.username, AuditEvent.outcome)
            .where(AuditEvent.action == "close_alert_task")
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(line) for line in lines] == [
        ("sup", "REFUSED"), ("far", "REFUSED"), ("sup", "REFUSED"), ("sup", "ACCEPTED"),
        ("sup", "REFUSED"),
    ]  # fmt: skip


async def eventually_async(check, what: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return value


TRAINING_CHECK_GATE = threading.Event(), threading.Event()  # (entered, released)
REAL_TRAINING_CHECK = CaseActivities.check_visit_training


class SlowTraining:
    """The training check, held until the test releases it (a method: the SDK reads the
    argument's type after `self`)."""

    @activity.defn(name=A.CHECK_VISIT_TRAINING)
    def check_visit_training(self, check: TrainingCheck) -> None:
        entered, release = TRAINING_CHECK_GATE
        entered.set()
        release.wait(30)
        return REAL_TRAINING_CHECK(self, check)  # type: ignore[arg-type]


async def test_a_check_in_that_waited_on_its_training_check_is_refused_once_the_case_is_paid(
    dev_env, sqlite_sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote case's check-in waits on the training check (an activity). The case is paid
    in full meanwhile: the check-in is refused on the case as it is then, and the case ends
    with no team out (before, the visit was set on the closing case and no alert could fire)."""
    entered, release = TRAINING_CHECK_GATE
    entered.clear(), release.clear()
    monkeypatch.setattr(CaseActivities, "check_visit_training", SlowTraining.check_visit_training)
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        case = await case_waiting_for_visit(h, remote=True)
        request = CheckIn(case.team, datetime.now(UTC), by=case.collector)
        checking = asyncio.create_task(case.handle.execute_update(WF.check_in, request))
        assert await asyncio.to_thread(entered.wait, 30)
        status = await h.status(case.handle)
        await h.pay(case.handle, status.outstanding_fen)
        await h.until(case.handle, lambda s: s.stage == Stage.PAID_IN_FULL, "paid in full")
        release.set()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await checking
        assert refused.value.cause.message.startswith("stage: no visit is expected")  # type: ignore[union-attr]
        result = await case.handle.result()
        assert result.outcome == "PAID_IN_FULL"
        assert (await h.status(case.handle)).visit is None
