"""Staff safety on visits (issue 15): check-in, check-out, the alert ladder (supervisor, then
branch head, until acknowledged), "need help", a hostile visit's team of three, and alerts
that fire on time although the worker was stopped during the visit.

Time-skipping server only: these walk hours of a day, not policy days."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import AuditEvent, Case, Collector, Loan, SmsOutbox, Task, User
from domain.models import (
    AlertAck,
    CheckIn,
    CheckOut,
    HelpRequest,
    LiftHostileTeam,
    Reassignment,
    VisitReport,
)
from service.worker_factory import build_worker
from tests.harness import Harness, eventually, running_worker
from tests.test_workflow_paths import to_field_visit
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000
SUPERVISOR_MOBILE = "+8613800000001"
HEAD_MOBILE = "+8613800000002"
# The default policy: a visit is expected to last 2 hours, then 30 minutes' grace; the
# branch head 30 minutes after the supervisor.
ALERT_AFTER = timedelta(hours=2, minutes=30)
HEAD_AFTER = timedelta(minutes=30)


@pytest.fixture(autouse=True)
def time_skipping_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("walks the hours of a visit: time-skipping server only")


def add_staff(h: Harness) -> None:
    now = datetime.now(UTC)
    with h.sessions.begin() as session:
        for name, role, mobile in (
            ("sup-qx01", "SUPERVISOR", SUPERVISOR_MOBILE),
            ("head-qx01", "BRANCH_HEAD", HEAD_MOBILE),
        ):
            session.add(
                User(
                    username=name, display_name=name, password_hash="x", role=role,
                    branches="QX01", active=True, created_at=now, mobile=mobile,
                )
            )  # fmt: skip


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        add_staff(harness)
        yield harness


def _rows(h: Harness, loan_no: str, model, *where):  # type: ignore[no-untyped-def]
    with h.sessions() as session:
        return list(
            session.scalars(
                select(model)
                .join(Case, Case.id == model.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no, *where)
                .order_by(model.id)
            )
        )


def alert_tasks(h: Harness, loan_no: str) -> list[Task]:
    return _rows(h, loan_no, Task, Task.kind == "SAFETY_ALERT")


def staff_texts(h: Harness, loan_no: str) -> list[SmsOutbox]:
    return _rows(h, loan_no, SmsOutbox, SmsOutbox.purpose == "staff_alert")


def audit(h: Harness, loan_no: str) -> list[str]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.loan_no == loan_no)
                .order_by(AuditEvent.id)
            )
        )


async def check_in(h: Harness, handle: WorkflowHandle, ids: list[str] | None = None):  # type: ignore[no-untyped-def]
    status = await h.status(handle)
    request = CheckIn(ids or status.collectors, await h.now(), by=status.collectors[0])
    return await handle.execute_update(WF.check_in, request)


async def check_out(h: Harness, handle: WorkflowHandle, outcome: str = "MET"):  # type: ignore[no-untyped-def]
    status = await h.status(handle)
    report = VisitReport(outcome, status.collectors, await h.now(), "在家中面谈")
    return await handle.execute_update(WF.check_out, CheckOut(report))


async def close(h: Harness, handle: WorkflowHandle) -> None:
    await h.pay(handle, DEBT)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"


async def test_no_check_out_alerts_the_supervisor_then_the_head_until_acknowledged(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    arrived = await h.now()
    accepted = await check_in(h, handle)
    assert "签到成功" in accepted.message
    status = await h.status(handle)
    assert status.visit is not None and status.visit.collector_ids == status.collectors

    await h.env.sleep(ALERT_AFTER - timedelta(minutes=5))
    assert alert_tasks(h, spec.loan_no) == []  # not before the expected time plus grace

    await h.env.sleep(timedelta(minutes=6))
    tasks = await eventually(lambda: alert_tasks(h, spec.loan_no), "the supervisor's alert")
    assert tasks[0].assignees == "supervisor:QX01" and "OVERDUE" in tasks[0].detail
    assert abs(tasks[0].created_at - (arrived + ALERT_AFTER)) < timedelta(minutes=1)
    texts = await eventually(lambda: staff_texts(h, spec.loan_no), "the supervisor's SMS")
    assert [t.to_number for t in texts] == [SUPERVISOR_MOBILE]
    assert texts[0].borrower_id is None  # a staff text: no borrower's caps count it
    assert "安全警报" in texts[0].body and "王建国" not in texts[0].body
    status = await h.status(handle)
    assert [(a.number, a.kind, a.level) for a in status.alerts] == [(1, "OVERDUE", "SUPERVISOR")]

    await h.env.sleep(HEAD_AFTER + timedelta(minutes=1))
    await eventually(lambda: len(alert_tasks(h, spec.loan_no)) == 2, "the branch head's alert")
    assert alert_tasks(h, spec.loan_no)[1].assignees == "head:QX01"
    await eventually(lambda: len(staff_texts(h, spec.loan_no)) == 2, "the head's SMS")
    assert staff_texts(h, spec.loan_no)[1].to_number == HEAD_MOBILE

    ack = await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01", "已联系上"))
    assert ack.number == 1
    assert (await h.status(handle)).alerts == []
    await h.env.sleep(timedelta(hours=3))
    assert len(alert_tasks(h, spec.loan_no)) == 2  # acknowledged: nothing more
    actions = audit(h, spec.loan_no)
    assert actions.count("safety_alert") == 2
    assert "check_in" in actions and "alert_acknowledged" in actions

    # The team checks out late, with the visit's report, recorded as report_visit does.
    out = await check_out(h, handle, "MET")
    assert "visit 1 recorded: MET" in out.message
    await h.at_stage(handle, "NEGOTIATION")
    assert (await h.status(handle)).visit is None
    await close(h, handle)


async def test_a_check_out_in_time_raises_no_alert(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await check_in(h, handle)
    await h.env.sleep(timedelta(hours=1))
    await check_out(h, handle, "NOT_HOME")
    await h.env.sleep(timedelta(hours=4))
    assert alert_tasks(h, spec.loan_no) == []
    assert (await h.status(handle)).alerts == []
    await close(h, handle)


async def test_a_remote_village_gets_a_longer_visit(h: Harness) -> None:
    spec, handle = await h.start(remote=True)
    await to_field_visit(h, handle)
    await check_in(h, handle)
    await h.env.sleep(timedelta(hours=3))  # a village visit would be overdue by now
    assert alert_tasks(h, spec.loan_no) == []
    await h.env.sleep(timedelta(hours=2))  # 4 hours and the grace
    await eventually(lambda: alert_tasks(h, spec.loan_no), "the remote visit's alert")
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    await check_out(h, handle)
    await close(h, handle)


async def test_need_help_alerts_at_once(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await check_in(h, handle)
    status = await h.status(handle)
    answer = await handle.execute_update(
        WF.need_help, HelpRequest(status.collectors[0], await h.now(), "借款人家属围堵")
    )
    assert "已通知主管" in answer.message
    tasks = await eventually(lambda: alert_tasks(h, spec.loan_no), "the help alert")
    assert "HELP" in tasks[0].detail and "围堵" in tasks[0].detail
    await eventually(lambda: staff_texts(h, spec.loan_no), "the supervisor's SMS")
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    await check_out(h, handle)
    await close(h, handle)


async def test_a_hostile_visit_alerts_and_later_visits_need_three_until_lifted(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    before = await to_field_visit(h, handle)
    assert before.team_size == 2
    await check_in(h, handle)
    await check_out(h, handle, "HOSTILE")
    tasks = await eventually(lambda: alert_tasks(h, spec.loan_no), "the hostile alert")
    assert "HOSTILE" in tasks[0].detail
    status = await h.until(handle, lambda s: len(s.collectors) == 3, "a team of three")
    assert status.hostile_team and status.team_size == 3
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await check_in(h, handle, status.collectors[:2])
    assert "collector_ids" in str(refused.value.cause) and "3" in str(refused.value.cause)
    await check_in(h, handle)  # the three of them
    await check_out(h, handle, "NOT_HOME")
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    lifted = await handle.execute_update(
        WF.lift_hostile_team, LiftHostileTeam("sup-qx01", "借款人已道歉，村委会陪同")
    )
    assert "team of 2" in lifted.message
    assert "hostile_team_lifted" in audit(h, spec.loan_no)
    await close(h, handle)


async def test_visits_in_progress_and_acknowledgements_are_checked(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    status = await h.status(handle)
    report = VisitReport("MET", status.collectors, await h.now())
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WF.check_out, CheckOut(report))
    assert "check in first" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WF.check_in, CheckIn(status.collectors[:1], await h.now()))
    assert refused.value.cause.message.startswith("collector_ids:")
    await check_in(h, handle)
    for request, field in (
        (CheckIn(status.collectors, await h.now()), "visit"),
        (CheckIn(status.collectors[:1], await h.now()), "visit"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(WF.check_in, request)
        assert refused.value.cause.message.startswith(f"{field}:")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WF.acknowledge_alert, AlertAck(7, "sup-qx01"))
    assert refused.value.cause.message.startswith("alert_no:")
    await check_out(h, handle)
    await close(h, handle)


async def test_the_alert_fires_on_time_after_the_worker_was_stopped_during_the_visit(
    env, sqlite_sessions, tmp_path: Path
) -> None:
    task_queue = f"tq-{uuid.uuid4()}"
    data = tmp_path / "data"
    h = Harness(env, env.client, task_queue, sqlite_sessions, data)
    add_staff(h)
    # No workflow cache: the first worker leaves no sticky queue behind, which the
    # time-skipping server would wait out in real time; every task replays the history.
    async with build_worker(env.client, task_queue, sqlite_sessions, data, max_cached_workflows=0):
        spec, handle = await h.start()
        await to_field_visit(h, handle)
        arrived = await h.now()
        await check_in(h, handle)
    # No worker while the team is in the village: the timer is the server's.
    await env.sleep(timedelta(hours=2))
    assert alert_tasks(h, spec.loan_no) == []
    async with build_worker(env.client, task_queue, sqlite_sessions, data):  # a new worker
        await env.sleep(timedelta(minutes=31))
        tasks = await eventually(lambda: alert_tasks(h, spec.loan_no), "the alert")
        assert abs(tasks[0].created_at - (arrived + ALERT_AFTER)) < timedelta(minutes=1)
        await eventually(lambda: staff_texts(h, spec.loan_no), "the supervisor's SMS")
        await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
        await check_out(h, handle)
        await close(h, handle)


def test_the_staff_alert_text_is_registered_and_clean() -> None:
    from activities.sms_templates import check_registry, load_registry, registration_texts
    from activities.texts import environment, render_sms
    from domain.wording import forbidden_phrases

    check_registry(load_registry(), ["aliyun"], "zh")  # raises naming a missing purpose
    registered = registration_texts(load_registry(), "aliyun", "zh")["staff_alert"]
    assert "${no}" in registered and "${detail}" in registered
    for language in ("zh", "en"):
        text = render_sms(
            environment(autoescape=False), language, "staff_alert", cooperative="青溪信用社",
            loan_tail="1234", alert_no="2", detail="外访小组请求支援",
        )  # fmt: skip
        assert forbidden_phrases(text) == [] and "1234" in text and "2" in text


def _worker_process(dev_env, db_url: str, data: Path, tq: str):  # type: ignore[no-untyped-def]
    """The real worker (worker.py) as a process of its own, to be killed (SIGKILL)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_PROVIDER"))}
    env.update(
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=tq, COLLECTION_DB_URL=db_url, COLLECTION_DATA_DIR=str(data),
        WORKER_PDF_PROCESSES="0",
    )  # fmt: skip
    log = (data.parent / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb")
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault_worker"], cwd=root, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_a_killed_worker_does_not_delay_the_alert(
    dev_env, sqlite_sessions, tmp_path: Path
) -> None:
    """The real dev server and a worker process killed (SIGKILL) right after the check-in;
    another starts; the alert is raised at check-in + expected + grace, to the second."""
    import asyncio
    import signal

    from domain.policy import fast_policy

    db_url = str(sqlite_sessions.kw["bind"].url)
    data, tq = tmp_path / "data", f"tq-{uuid.uuid4()}"
    policy = fast_policy(
        visit_expected_seconds=16, visit_overdue_grace_seconds=4,
        visit_deadline_seconds=600, alert_head_after_seconds=600,
    )  # fmt: skip
    h = Harness(dev_env, dev_env.client, tq, sqlite_sessions, data, timedelta(seconds=1), policy)
    add_staff(h)
    first = _worker_process(dev_env, db_url, data, tq)
    second = None
    try:
        spec, handle = await h.start()
        status = await h.at_stage(handle, "FIELD_VISIT", timeout=60)
        accepted = await handle.execute_update(
            WF.check_in, CheckIn(status.collectors, datetime.now(UTC))
        )
        arrived = next(e.at for e in reversed((await h.status(handle)).history)
                       if e.detail.startswith(f"check-in {accepted.number}"))  # fmt: skip
        first.send_signal(signal.SIGKILL)  # the team is in the village, the worker dies
        first.wait(timeout=10)
        await asyncio.sleep(2)
        second = _worker_process(dev_env, db_url, data, tq)
        tasks = await eventually(lambda: alert_tasks(h, spec.loan_no), "the alert", 60)
        late = tasks[0].created_at - (arrived + timedelta(seconds=20))
        assert timedelta(0) <= late < timedelta(seconds=2), late
        await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
        report = VisitReport("MET", status.collectors, datetime.now(UTC))
        await handle.execute_update(WF.check_out, CheckOut(report))
        await h.pay(handle, DEBT)
        await asyncio.wait_for(handle.result(), 60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


async def test_a_team_out_when_the_case_is_paid_checks_out_and_the_case_ends(
    h: Harness,
) -> None:
    """Paid in full while the team is at the door: the team can still call for help and
    check out (the visit is recorded, the stage stays), and then the case ends."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await check_in(h, handle)
    await h.pay(handle, DEBT)
    await h.at_stage(handle, "PAID_IN_FULL")
    status = await h.status(handle)
    answer = await handle.execute_update(
        WF.need_help, HelpRequest(status.collectors[0], await h.now(), "家属情绪激动")
    )
    assert "已通知主管" in answer.message
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    out = await check_out(h, handle, "MET")
    assert "recorded" in out.message
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"


async def test_staff_alert_texts_are_not_the_borrowers_messages(h: Harness) -> None:
    """Issue 15 review, item 6: the supervisor's alert SMS is not shown as a message to the
    borrower on the case page nor in the collection record."""
    from service.case_record import case_record
    from service.collection_record import collection_record

    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await check_in(h, handle)
    status = await h.status(handle)
    await handle.execute_update(
        WF.need_help, HelpRequest(status.collectors[0], await h.now(), "家属围堵")
    )
    await eventually(lambda: staff_texts(h, spec.loan_no), "the supervisor's SMS")
    page = case_record(h.sessions, spec.loan_no)
    assert page is not None and page.messages  # the borrower's notices are there
    assert not [m for m in page.messages if "安全警报" in m.text]
    record = collection_record(h.sessions, spec.loan_no, None, h.policy, await h.now())
    assert record is not None and record.messages
    assert not [m for m in record.messages if "安全警报" in m.text]
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    await check_out(h, handle)
    await close(h, handle)


async def test_nobody_to_text_goes_to_the_head_at_once_then_flags_the_dashboard(
    env, sqlite_sessions, tmp_path: Path
) -> None:
    """Issue 15 review, item 7: no supervisor with a mobile: the branch head's alert at once
    (not 30 minutes later); nobody at all: the task is URGENT and the dashboard shows it
    until the alert is acknowledged (weak signal review item 4: not for 24 hours only)."""
    from service.portfolio import urgent_alerts

    async with running_worker(env, sqlite_sessions, tmp_path / "data") as h:
        spec, handle = await h.start()
        await to_field_visit(h, handle)
        await check_in(h, handle)
        status = await h.status(handle)
        await handle.execute_update(
            WF.need_help, HelpRequest(status.collectors[0], await h.now(), "被围堵")
        )
        tasks = await eventually(
            lambda: len(alert_tasks(h, spec.loan_no)) == 2 and alert_tasks(h, spec.loan_no),
            "the supervisor's and the head's alert at once",
        )
        assert [t.assignees for t in tasks] == ["supervisor:QX01", "head:QX01"]
        assert tasks[1].detail.startswith("【紧急 URGENT")
        banner = urgent_alerts(h.sessions, ("QX01",))
        assert [a.loan_no for a in banner] == [spec.loan_no]
        assert urgent_alerts(h.sessions, ("LS01",)) == []
        await check_out(h, handle)  # back safe, but nobody has answered the alert yet
        await h.env.sleep(timedelta(hours=25))
        assert [a.loan_no for a in urgent_alerts(h.sessions, ("QX01",))] == [spec.loan_no]
        await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
        assert urgent_alerts(h.sessions, ("QX01",)) == []
        assert {t.status for t in alert_tasks(h, spec.loan_no)} == {"DONE"}
        await close(h, handle)


async def test_the_check_in_location_stays_out_of_the_history_and_audit_trail(
    h: Harness,
) -> None:
    """Issue 15 review, item 11: the phone's location is kept with the visit in progress (for
    the branch's supervisors), not in the case history nor the audit trail; weak signal
    review item 5: nor in the status Query, which every role's pages read: the supervisors'
    pages ask the `visit_location` Query."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    status = await h.status(handle)
    request = CheckIn(status.collectors, await h.now(), status.collectors[0], 29.123456, 117.654321)
    await handle.execute_update(WF.check_in, request)
    status = await h.status(handle)
    assert status.visit is not None and status.visit.collector_ids == status.collectors
    assert "29.12" not in str(status) and "117.65" not in str(status)
    location = await handle.query(WF.visit_location)
    assert location is not None
    assert (location.latitude, location.longitude) == (29.123456, 117.654321)
    with h.sessions() as session:
        details = list(
            session.scalars(select(AuditEvent.detail).where(AuditEvent.loan_no == spec.loan_no))
        )
    assert details and not [d for d in details if "29.12" in d or "117.65" in d]
    await check_out(h, handle)
    await close(h, handle)


async def test_a_visit_report_by_the_team_checked_in_ends_the_visit(h: Harness) -> None:
    """Issue 15 review, item 8 (a): checked in (perhaps offline), the team reports the visit
    with the ordinary form: that checks it out, and no overdue alert follows."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await check_in(h, handle)
    status = await h.status(handle)
    report = VisitReport("MET", status.collectors, await h.now(), "面谈")
    await handle.execute_update(WF.report_visit, report)
    status = await h.status(handle)
    assert status.visit is None
    await h.env.sleep(ALERT_AFTER + timedelta(hours=1))
    assert alert_tasks(h, spec.loan_no) == []
    await close(h, handle)


async def test_a_visit_report_that_ends_the_visit_is_not_before_its_check_in(h: Harness) -> None:
    """Weak signal review, finding 4: a report by the team checked in checks the visit out,
    so, like a check-out, it may not be dated before the check-in (less the clock skew):
    refused by the case's validator, whether sent straight or through the service."""
    from service.case_updates import CaseActions
    from service.users import Principal, Role

    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await h.env.sleep(timedelta(hours=2))  # the case is older than the visit
    await check_in(h, handle)
    status = await h.status(handle)
    before = VisitReport("MET", status.collectors, await h.now() - timedelta(minutes=30))
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.report_visit, before)
    assert e.value.cause.message == "visited_at: before the team checked in"  # type: ignore[union-attr]
    acts = CaseActions(h.client, h.sessions, h.policy)
    who = Principal("zhang", Role.COLLECTOR, ("QX01",), status.collectors[0])
    answer = await acts.report_visit(who, spec.loan_no, "MET", status.collectors, before.visited_at)
    assert not answer.accepted and answer.message == "visited_at: before the team checked in"
    status = await h.status(handle)
    assert status.visit is not None and status.counters.visits == 0  # still out, not checked out
    await check_out(h, handle)
    await close(h, handle)


# ---------------------------------------------------------------- training and visits


async def expire_training(h: Harness, collector_id: str) -> None:
    """The collector's training ended yesterday (the server's, on the branch's calendar)."""
    today = (await h.now()).astimezone(h.policy.timezone_info()).date()
    with h.sessions.begin() as session:
        collector = session.get(Collector, collector_id)
        assert collector is not None
        collector.training_expires_on = today - timedelta(days=1)


async def test_a_collector_off_the_case_while_out_still_checks_out_and_asks_for_help(
    h: Harness,
) -> None:
    """Issue 15 review, item 4: the team checks in for a remote revisit; meanwhile one of them
    has lost their training and the revisit's new attempt checks the team again. Nobody on
    the visit leaves the case before the check-out: they may still call for help and check
    out; the replacement follows the check-out."""
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    team = list(status.collectors)
    report = VisitReport("NOT_HOME", team, await h.now() - timedelta(minutes=5))
    await handle.execute_update(WF.report_visit, report)
    await h.until(handle, lambda s: s.next_action == "revisit", "a revisit scheduled")
    await h.env.sleep(timedelta(days=3) - timedelta(hours=1))  # the revisit is due in an hour
    await check_in(h, handle, team)
    await expire_training(h, team[0])
    await h.env.sleep(timedelta(hours=2))  # the new attempt began while the team was out
    status = await h.status(handle)
    assert status.next_action == "visit report" and status.visit is not None
    assert status.collectors == team  # nobody out on the visit was taken off
    assert any("waits for the check-out of visit 1" in e.detail for e in status.history)
    answer = await handle.execute_update(WF.need_help, HelpRequest(team[0], await h.now()))
    assert "已通知主管" in answer.message
    report = VisitReport("NOT_HOME", team, await h.now() - timedelta(minutes=5))
    await handle.execute_update(WF.check_out, CheckOut(report, team[1]))
    status = await h.until(handle, lambda s: team[0] not in s.collectors, "replaced after")
    assert len(status.collectors) == 2
    await handle.execute_update(WF.acknowledge_alert, AlertAck(1, "sup-qx01"))
    await close(h, handle)


async def test_a_check_in_naming_an_untrained_collector_on_a_remote_case_is_refused(
    h: Harness,
) -> None:
    """The team was assigned while trained; one's training expired since: their check-in on a
    remote case is refused with the reason (the dates are in the database, checked there as
    the assignment does)."""
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    await expire_training(h, status.collectors[0])
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await check_in(h, handle)
    message = refused.value.cause.cause.message  # the activity's ApplicationError
    assert message.startswith(f"collector_ids: the safety training of {status.collectors[0]}")
    assert "not on a remote or hostile visit" in message
    assert (await h.status(handle)).visit is None
    await close(h, handle)


async def test_near_home_a_check_in_is_not_held_to_the_training(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    await expire_training(h, status.collectors[0])
    assert "签到成功" in (await check_in(h, handle)).message
    await check_out(h, handle)
    await close(h, handle)


async def test_a_reassignment_during_a_visit_takes_effect_at_the_check_out(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    team = list(status.collectors)
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in team)
    await check_in(h, handle)
    new_team = [other, *team[1:]]  # the first of the team is on leave from tomorrow
    answer = await handle.execute_update(
        WF.reassign, Reassignment(new_team, "sup-qx01", "休假 on leave from tomorrow")
    )
    assert "take over once it checks out" in answer.message
    assert (await h.status(handle)).collectors == team  # the team out stays on the case
    await check_out(h, handle, "NOT_HOME")
    await h.until(handle, lambda s: s.collectors == new_team, "the new team")
    await close(h, handle)
