"""Weak signal (issue 15, item 7), the server's side, on the dev server: an action a phone
sends with its own id is applied once even after the case continued as new; the time the
phone recorded is bounded by the policy (its clock skew ahead, its maximum age back) in the
service and again in the case's validators; the phone's location at a check-in goes to the
branch's supervisors only. The pages' side (the queue in headless Chromium):
tests/test_browser.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from db.models import AuditEvent, Visit
from domain import search_attributes as sa
from domain.models import VisitReport
from service.case_updates import UPDATE_ID, CaseActions
from service.converter import DATA_CONVERTER
from service.users import Principal, Role
from tests.conftest import binary
from tests.harness import Harness, running_worker
from tests.web_support import PASSWORD, WAITS_FOR_VISIT, add_user, app_for, case_waiting_for_visit
from workflows.collection import LoanCollectionWorkflow as WF

JSON = {"accept": "application/json"}


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
