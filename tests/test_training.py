"""Safety training on record (issue 15, item 3): assignment never puts a collector whose
safety training has expired, or who has none on record, on a remote or hostile visit, and
says so in the case's audit trail; elsewhere the training does not restrict assignment.
Supervisors (their branches) and the back office correct the date on /collectors or with
`cli.main training`; a daily reminder texts each supervisor whose collectors are due."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from html import unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowUpdateFailedError

from activities.sms_gateway import GatewayResult, PermanentSmsFailure
from cli.main import main
from db.models import AuditEvent, Branch, Collector, SmsOutbox
from domain.models import Reassignment
from domain.policy import Policy
from domain.training import REMINDER_WORKFLOW_TYPE, ReminderInput, ReminderResult
from service.users import Role, create_user
from tests.harness import Harness, eventually, running_worker
from tests.test_workflow_paths import sign, to_field_visit, visit
from tests.web_support import PASSWORD, add_user, app_for, form_login
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    async with running_worker(
        env, sqlite_sessions, tmp_path / "data",
        fast=request.config.getoption("--workflow-env") == "local",
    ) as harness:  # fmt: skip
        yield harness


async def set_training(h: Harness, **days_from_today: int | None) -> None:
    """Each collector's training valid until that many days from the server's today (the
    policy's calendar); None: no training on record."""
    today = (await h.now()).astimezone(ZoneInfo(h.policy.timezone)).date()
    with h.sessions.begin() as session:
        for cid, days in days_from_today.items():
            collector = session.get(Collector, cid.replace("_", "-"))
            assert collector is not None
            collector.training_expires_on = None if days is None else today + timedelta(days=days)


def training_audit(h: Harness, loan_no: str) -> list[str]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.loan_no == loan_no, AuditEvent.action == "assignment_training"
                )
            )
        )


async def test_a_remote_visit_gets_no_collector_with_expired_training(h: Harness) -> None:
    await set_training(h, QX01_C01=-1, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert sorted(status.collectors) == ["QX01-C02", "QX01-C03"]
    reasons = await eventually(lambda: training_audit(h, spec.loan_no), "the reason")
    assert "QX01-C01" in reasons[0] and "safety training expired" in reasons[0]
    assert any("valid safety training only" in e.detail for e in status.history)
    # A supervisor cannot put them there by hand either.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.reassign, Reassignment(["QX01-C01", "QX01-C02"], "sup", "swap")
        )
    message = refused.value.cause
    while getattr(message, "cause", None) is not None:
        message = message.cause
    assert "safety training of QX01-C01 expired" in str(message)
    await h.pay(handle, DEBT)
    await handle.result()


def refusal(error: WorkflowUpdateFailedError) -> str:
    message: BaseException = error
    while getattr(message, "cause", None) is not None:
        message = message.cause  # type: ignore[assignment]
    return str(message)


async def test_no_training_on_record_is_no_training_for_a_remote_visit(h: Harness) -> None:
    await set_training(h, QX01_C01=None, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert sorted(status.collectors) == ["QX01-C02", "QX01-C03"]
    (reason,) = await eventually(lambda: training_audit(h, spec.loan_no), "the reason")  # type: ignore[misc]
    # Said as what it is: not "expired", but nothing on record.
    assert "无安全培训记录 no training on record: QX01-C01" in reason
    assert "expired" not in reason
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.reassign, Reassignment(["QX01-C01", "QX01-C02"], "sup", "swap")
        )
    assert "QX01-C01 has no safety training on record" in refusal(refused.value)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_the_seeded_collectors_are_trained_from_today(h: Harness) -> None:
    """The demo and test collectors carry a training valid well ahead of the server's today,
    so that remote cases of other tests still get their teams."""
    today = (await h.now()).astimezone(ZoneInfo(h.policy.timezone)).date()
    with h.sessions() as session:
        expiries = list(session.scalars(select(Collector.training_expires_on)))
    assert expiries and all(e is not None and e > today + timedelta(days=365) for e in expiries)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert len(status.collectors) == 2
    assert training_audit(h, spec.loan_no) == []
    await h.pay(handle, DEBT)
    await handle.result()


async def test_training_expired_meanwhile_is_replaced_at_the_next_attempt(h: Harness) -> None:
    await set_training(h, QX01_C01=200, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    first = sorted(status.collectors)
    leaving = first[0]
    await set_training(h, **{leaving.replace("-", "_"): -1})
    await visit(h, handle, "NOT_HOME")
    await h.until(handle, lambda s: s.next_action == "revisit", "revisit scheduled")
    await h.advance(3.2)  # the revisit: a new attempt, the team checked again
    status = await h.until(handle, lambda s: leaving not in s.collectors, "replaced")
    assert len(status.collectors) == 2
    await eventually(lambda: training_audit(h, spec.loan_no), "the reason")
    await h.pay(handle, DEBT)
    await handle.result()


async def test_a_periodic_revisit_of_a_remote_case_replaces_an_untrained_collector(
    h: Harness,
) -> None:
    """Checked at every visit attempt: FOLLOW_UP's periodic revisit (定期回访) of a remote
    case goes to a team whose training is valid, as FIELD_VISIT's attempts do."""
    from domain.models import PlannedInstallment, PlanProposal

    await set_training(h, QX01_C01=200, QX01_C02=200, QX01_C03=200)
    spec, handle = await h.start(remote=True)
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    now = await h.now()  # one installment after the first revisit (30 policy days)
    plan = PlanProposal([PlannedInstallment(now + h.day * 45, DEBT)], proposed_by="QX01-C01")
    await handle.execute_update(WF.propose_plan, plan)
    await sign(h, handle)
    status = await h.at_stage(handle, "FOLLOW_UP")
    leaving = sorted(status.collectors)[0]
    await set_training(h, **{leaving.replace("-", "_"): -1})
    await h.advance(31)  # the periodic revisit
    status = await h.until(handle, lambda s: leaving not in s.collectors, "replaced")
    assert len(status.collectors) == 2
    reasons = await eventually(lambda: training_audit(h, spec.loan_no), "the reason")
    assert any(leaving in r and "taken off the case" in r for r in reasons)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_near_home_the_training_does_not_restrict_assignment(h: Harness) -> None:
    await set_training(h, QX01_C01=-1, QX01_C02=-1, QX01_C03=-1)
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    assert len(status.collectors) == 2
    assert training_audit(h, spec.loan_no) == []
    await h.pay(handle, DEBT)
    await handle.result()


# ---------------------------------------------------------------- who keeps the dates


def expiry_of(sessions: sessionmaker[Session], cid: str) -> date | None:
    with sessions() as session:
        collector = session.get(Collector, cid)
        assert collector is not None
        return collector.training_expires_on


def training_edits(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [
            (e.username, e.outcome, e.detail)
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "training_expiry")
                .order_by(AuditEvent.id)
            )
        ]


def csrf_of(page: str) -> str:
    return page.split('name="csrf" value="')[1].split('"')[0]


async def test_a_supervisor_records_training_on_the_collectors_page_and_assignment_reads_it(
    h: Harness,
) -> None:
    import httpx

    await set_training(h, QX01_C01=None, QX01_C02=200, QX01_C03=200)
    today = (await h.now()).astimezone(ZoneInfo(h.policy.timezone)).date()
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "sup2", Role.SUPERVISOR, branches=["QX02"])
    add_user(h, "office", Role.BACK_OFFICE)
    add_user(h, "coll", Role.COLLECTOR, collector_id="QX01-C02")
    transport = httpx.ASGITransport(app=app_for(h))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

        async def signed_in(user: str) -> str:
            http.cookies.clear()
            r = await form_login(http, user)
            http.cookies.set("collection_session", r.cookies["collection_session"])
            page = await http.get("/collectors")
            return page.text if page.status_code == 200 else str(page.status_code)

        page = await signed_in("sup")
        row = page.split('id="training-QX01-C01"')[1].split("</tr>")[0]
        assert "未登记 not recorded" in row and "无安全培训记录" in row
        assert "QX02-C01" not in page  # another branch's collectors are not theirs
        csrf = csrf_of(page)

        async def post(cid: str, value: str) -> httpx.Response:
            data = {"csrf": csrf, "training_expires_on": value}
            return await http.post(f"/collectors/{cid}/training", data=data)

        bad = await post("QX01-C01", f"{today.year}-02-30")
        assert bad.status_code == 303
        shown = (await http.get("/collectors")).text
        assert "training_expires_on:" in shown and "is not a date (YYYY-MM-DD)" in shown
        assert expiry_of(h.sessions, "QX01-C01") is None
        valid = today + timedelta(days=180)
        assert (await post("QX01-C01", valid.isoformat())).status_code == 303
        shown = unescape((await http.get("/collectors")).text)
        assert "安全培训有效期已更新" in shown and f"未登记 not recorded -> {valid}" in shown
        row = shown.split('id="training-QX01-C01"')[1].split("</tr>")[0]
        assert valid.isoformat() in row and "有效 VALID" in row
        assert expiry_of(h.sessions, "QX01-C01") == valid
        assert (await post("QX02-C01", valid.isoformat())).status_code == 404  # not their branch

        # Another branch's supervisor cannot, nor can a collector; the back office can.
        assert "QX01-C01" not in await signed_in("sup2")
        csrf = csrf_of(await signed_in("sup2"))
        assert (await post("QX01-C01", today.isoformat())).status_code == 404
        assert await signed_in("coll") == "404"
        http.cookies.clear()
        r = await http.post("/login", json={"username": "office", "password": PASSWORD})
        bearer = {"authorization": f"Bearer {r.json()['token']}", "accept": "application/json"}
        later = today + timedelta(days=300)
        r = await http.post(
            "/collectors/QX02-C01/training", json={"training_expires_on": later.isoformat()},
            headers=bearer,
        )  # fmt: skip
        assert r.status_code == 200 and r.json()["accepted"], r.text
        r = await http.post(
            "/collectors/QX02-C01/training", json={"training_expires_on": ""}, headers=bearer
        )
        assert r.status_code == 400 and r.json()["message"].startswith("training_expires_on:")
        listed = (await http.get("/collectors", headers=bearer)).json()["collectors"]
        assert {c["branch"] for c in listed} == {"QX01", "QX02", "LS01"}  # every branch's
    assert expiry_of(h.sessions, "QX01-C01") == valid
    assert expiry_of(h.sessions, "QX02-C01") == later
    edits = training_edits(h.sessions)
    assert (
        "sup",
        "DONE",
        f"QX01-C01 (QX01): training_expires_on 未登记 not recorded -> {valid}",
    ) in edits
    assert ("office", "DONE") in {(u, o) for u, o, _ in edits}
    assert ("sup2", "REFUSED") in {(u, o) for u, o, _ in edits}

    # The next remote case reads the date: QX01-C01 may go now.
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert "QX01-C01" in status.collectors
    await h.pay(handle, DEBT)
    await handle.result()


def test_the_training_command_checks_role_branch_and_date(
    sessions: sessionmaker[Session], db_url: str, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLLECTION_DB_URL", db_url)
    with sessions.begin() as session:
        create_user(session, "sup", PASSWORD, Role.SUPERVISOR, branches=["QX01"])
        create_user(session, "coll", PASSWORD, Role.COLLECTOR, collector_id="QX01-C01")
    today = datetime.now(Policy().timezone_info()).date()  # the branch's calendar
    soon = (today + timedelta(days=20)).isoformat()
    before = expiry_of(sessions, "QX01-C02")
    assert main(["training", "QX01-C02", soon, "--as", "sup"]) == 0
    out = capsys.readouterr().out
    assert f"QX01-C02 安全培训有效期已更新 training valid until: {before} -> {soon}" in out
    assert str(expiry_of(sessions, "QX01-C02")) == soon
    assert main(["training", "QX01-C02", "20-1-2031", "--as", "sup"]) == 2
    err = capsys.readouterr().err
    assert "training_expires_on: '20-1-2031' is not a date (YYYY-MM-DD)" in err
    far = (today + timedelta(days=365 * 11)).isoformat()
    assert main(["training", "QX01-C02", far, "--user", "sup"]) == 2
    assert "years ahead" in capsys.readouterr().err
    assert main(["training", "QX02-C01", soon, "--as", "sup"]) == 1  # another branch's
    assert "no collector 'QX02-C01' that you keep" in capsys.readouterr().err
    assert main(["training", "QX01-C03", soon, "--as", "coll"]) == 1
    assert "is COLLECTOR" in capsys.readouterr().err
    assert main(["training", "QX01-C03", soon, "--as", "nobody"]) == 1
    assert str(expiry_of(sessions, "QX01-C02")) == soon
    assert expiry_of(sessions, "QX01-C03") != soon
    edits = training_edits(sessions)
    assert [(u, o) for u, o, _ in edits] == [
        ("sup", "DONE"), ("sup", "REFUSED"), ("sup", "REFUSED"), ("sup", "REFUSED"),
        ("coll", "REFUSED"),
    ]  # fmt: skip


def test_the_collectors_page_and_the_dashboard_judge_each_branch_on_its_own_calendar(
    sessions: sessionmaker[Session],
) -> None:
    """As the assignment and the reminder do: a branch 26 hours behind the policy's clock
    (on any hour of the day its date is a day or two earlier) judges its collectors on its
    own date, not on the policy's."""
    from service.portfolio import caseloads, mark_training
    from service.training import branch_today, training_rows
    from service.users import Principal

    policy = Policy().with_overrides({"timezone": "Etc/GMT-14"})  # UTC+14
    window = policy.training_warning_days
    now = datetime.now(ZoneInfo("UTC"))
    today = now.astimezone(ZoneInfo("Etc/GMT+12")).date()  # UTC-12: the branch's today
    with sessions.begin() as session:
        session.get(Branch, "QX02").timezone = "Etc/GMT+12"  # type: ignore[union-attr]
        session.get(Collector, "QX02-C01").training_expires_on = today  # type: ignore[union-attr]
        session.get(Collector, "QX02-C02").training_expires_on = today + timedelta(window + 1)  # type: ignore[union-attr]
    office = Principal("office", Role.BACK_OFFICE)
    rows = {r.collector_id: r.state for r in training_rows(sessions, office, now, window, policy)}
    assert rows["QX02-C01"] == "EXPIRING"  # valid to the end of the branch's today
    assert rows["QX02-C02"] == "VALID"
    loads = mark_training(
        caseloads(sessions, ("QX02",)), branch_today(sessions, now, policy), window
    )
    due = {c.collector_id: c.training_due for c in loads}
    assert due == {"QX02-C01": True, "QX02-C02": False, "QX02-C03": False}


def test_the_worker_start_warns_of_collectors_with_no_training_on_record(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Since no date means untrained, a collector list imported without a training column
    takes those collectors off every remote or hostile visit at once: the worker's start
    says how many per branch (active ones) and where to record it."""
    from service.training import warn_without_training

    log = logging.getLogger("worker")
    with caplog.at_level(logging.WARNING):
        warn_without_training(sessions, log)
    assert caplog.records == []  # the seeded collectors are trained
    with sessions.begin() as session:
        for cid in ("QX01-C01", "QX01-C02", "LS01-C03", "QX02-C01"):
            session.get(Collector, cid).training_expires_on = None  # type: ignore[union-attr]
        session.get(Collector, "QX02-C01").active = False  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING):
        warn_without_training(sessions, log)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].startswith("branch LS01: 1 active collector(s) with no safety training")
    assert lines[1].startswith("branch QX01: 2 active collector(s)") and "/collectors" in lines[1]


def test_seeding_vouches_for_no_training_and_the_demo_has_one_expiring_per_branch(
    sessions: sessionmaker[Session],
) -> None:
    """Seeding again (the demo's start) leaves a stored collector's missing training
    missing; the demo's collectors include one per branch expiring within the warning
    window, shown as such, and a hostile case still gets a trained team of three."""
    from activities.cases import CaseActivities
    from db.seed import add_branches_and_collectors
    from domain.models import AssignRequest
    from service.training import training_rows
    from service.users import Principal
    from tests.test_activities import new_loan

    policy = Policy()
    now = datetime.now(ZoneInfo("UTC"))
    today = now.astimezone(policy.timezone_info()).date()
    with sessions.begin() as session:
        session.get(Collector, "QX02-C02").training_expires_on = None  # type: ignore[union-attr]
    with sessions.begin() as session:
        add_branches_and_collectors(session, today=today, expiring_in_days=7)
    assert expiry_of(sessions, "QX02-C02") is None  # nobody recorded it: still untrained
    office = Principal("office", Role.BACK_OFFICE)
    rows = training_rows(sessions, office, now, policy.training_warning_days, policy)
    expiring = {r.collector_id: r.training_expires_on for r in rows if r.state == "EXPIRING"}
    assert expiring == {c: today + timedelta(days=7) for c in ("LS01-C04", "QX01-C04", "QX02-C04")}
    team = CaseActivities(sessions).assign_collectors(
        AssignRequest(new_loan(sessions), "QX01", 3, trained_only=True)
    )
    assert len(team) == 3


# ---------------------------------------------------------------- the daily reminder


async def remind(
    h: Harness, at: datetime | None = None, execution_timeout: timedelta | None = None
) -> ReminderResult:
    return await h.client.execute_workflow(
        REMINDER_WORKFLOW_TYPE,
        ReminderInput(at),
        id=f"training-reminder-test-{uuid.uuid4().hex[:8]}",
        task_queue=h.task_queue,
        result_type=ReminderResult,
        execution_timeout=execution_timeout,
    )


def reminder_texts(h: Harness) -> dict[str, list[str]]:
    """The training reminders in the outbox, by mobile."""
    texts: dict[str, list[str]] = {}
    with h.sessions() as session:
        for row in session.scalars(
            select(SmsOutbox).where(SmsOutbox.purpose == "staff_training").order_by(SmsOutbox.id)
        ):
            assert row.case_id is None and row.borrower_id is None  # about no case, no borrower
            texts.setdefault(row.to_number or "", []).append(row.body)
    return texts


async def test_each_supervisor_is_texted_their_due_trainings_once_a_day(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await set_training(h, QX01_C01=-3, QX01_C02=10, QX01_C03=200, QX02_C01=None)
    today = (await h.now()).astimezone(h.policy.timezone_info()).date()
    add_user(h, "sup-qx01", Role.SUPERVISOR, branches=["QX01"], mobile="13800000001")
    add_user(h, "sup-qx02", Role.SUPERVISOR, branches=["QX02"], mobile="13800000002")
    add_user(h, "sup-ls01", Role.SUPERVISOR, branches=["LS01"], mobile="13800000003")
    add_user(h, "sup-qx02-b", Role.SUPERVISOR, branches=["QX02"])  # no mobile: not texted
    add_user(h, "head-qx01", Role.BRANCH_HEAD, branches=["QX01"], mobile="13800000004")

    first = await remind(h)  # as the Schedule starts it: the reminder is for the run's day
    assert (first.texts_sent, first.already_sent, first.collectors) == (2, 0, 3), first
    assert [(b.branch, b.collectors, b.sent, b.failed, b.reached) for b in first.branches] == [
        ("QX01", 2, 1, 0, True), ("QX02", 1, 1, 0, True),
    ]  # fmt: skip
    assert first.unreached_branches == []
    texts = reminder_texts(h)
    assert sorted(texts) == ["+8613800000001", "+8613800000002"]  # LS01: nobody due
    (qx01,) = texts["+8613800000001"]
    # Short, with short variables (providers limit their length): how many, the most urgent
    # (expired three days ago, before QX01-C02's expiring in ten), where the list is.
    assert "【青溪县农村信用合作联社城关信用社】2名催收员安全培训需更新（最紧急：QX01-C01）" in qx01
    assert "/collectors" in qx01 and "QX01-C02" not in qx01 and "QX01-C03" not in qx01
    (qx02,) = texts["+8613800000002"]
    assert "1名催收员安全培训需更新（最紧急：QX02-C01）" in qx02
    assert first.day == today.isoformat()  # the reminder is for the server's today

    # Run again that day (a retried or repeated run): nothing new goes out.
    later = datetime.combine(
        date.fromisoformat(first.day), time(20, 0), tzinfo=h.policy.timezone_info()
    )
    again = await remind(h, later)
    assert (again.day, again.texts_sent, again.already_sent) == (first.day, 0, 2), again
    assert reminder_texts(h) == texts
    # The next day, the next reminder.
    tomorrow = await remind(h, later + timedelta(days=1))
    assert tomorrow.texts_sent == 2 and len(reminder_texts(h)["+8613800000001"]) == 2
    logged = caplog.text
    assert "13800000001" not in logged and "13800000002" not in logged
    assert "+86138****0001" in logged  # the staff texts' log line, masked


class OneProviderDown:
    """Texts to one number never get an answer (retried, to the end of their time); texts to
    another are refused for good; the rest are recorded."""

    name = "one-down"

    def __init__(self, down: str, refused: str) -> None:
        self.down, self.refused = down, refused

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        if to == self.down:
            raise ConnectionError("connection reset by the provider")
        if to == self.refused:
            raise PermanentSmsFailure(30003, "unreachable handset")
        return GatewayResult("RECORDED")

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        return None


async def test_a_supervisor_whose_texts_keep_failing_holds_up_no_other(
    env, sqlite_sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Each supervisor's text is its own activity: one whose provider never answers is
    retried within the run's time (here a Schedule's 5 minutes) while the others are
    texted; the result says per branch who was reached, and a text that failed reaches
    nobody."""
    gateway = OneProviderDown(down="+8613800000001", refused="+8613800000003")
    async with running_worker(env, sqlite_sessions, tmp_path / "data", gateway=gateway) as h:
        await set_training(h, QX01_C01=-1, QX02_C01=None, LS01_C01=5)
        add_user(h, "sup-qx01", Role.SUPERVISOR, branches=["QX01"], mobile="13800000001")
        add_user(h, "sup-qx02", Role.SUPERVISOR, branches=["QX02"], mobile="13800000002")
        add_user(h, "sup-ls01", Role.SUPERVISOR, branches=["LS01"], mobile="13800000003")
        result = await remind(h, execution_timeout=timedelta(minutes=5))
        assert (result.texts_sent, result.already_sent, result.failed) == (1, 0, 2), result
        assert [(b.branch, b.sent, b.failed, b.reached) for b in result.branches] == [
            ("LS01", 0, 1, False), ("QX01", 0, 1, False), ("QX02", 1, 0, True),
        ]  # fmt: skip
        assert result.unreached_branches == ["LS01", "QX01"]
        assert sorted(reminder_texts(h)) == [
            "+8613800000001", "+8613800000002", "+8613800000003",
        ]  # fmt: skip
        with h.sessions() as session:
            statuses = dict(
                session.execute(
                    select(SmsOutbox.to_number, SmsOutbox.status).where(
                        SmsOutbox.purpose == "staff_training"
                    )
                ).all()
            )
        assert statuses == {
            "+8613800000001": "PENDING", "+8613800000002": "RECORDED",
            "+8613800000003": "FAILED",
        }  # fmt: skip


async def test_the_reminder_has_its_daily_schedule(
    dev_env, sqlite_sessions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from cli.main import parser
    from cli.schedule_commands import cmd_schedule
    from tests.test_daily_run import settings_for

    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data", fast=True) as h:
        await set_training(h, QX01_C02=None)
        add_user(h, "sup-qx01", Role.SUPERVISOR, branches=["QX01"], mobile="13800000001")
        settings = settings_for(h.client, str(sqlite_sessions.kw["bind"].url), h.task_queue)
        schedule_id = f"training-test-{uuid.uuid4().hex[:8]}"

        async def cli(*argv: str) -> int:
            args: argparse.Namespace = parser().parse_args(["schedule", *argv, "--id", schedule_id])
            return await cmd_schedule(args, settings)

        assert await cli("--training-reminders", "--export-dir", str(tmp_path)) == 2
        assert await cli("--training-reminders", "--at", "25:00") == 2
        assert await cli("--training-reminders", "--at", "07:30", "--tz", "Asia/Urumqi") == 0
        assert "every day at 07:30 Asia/Urumqi, safety-training reminder" in capsys.readouterr().out
        handle = h.client.get_schedule_handle(schedule_id)
        try:
            s = (await handle.describe()).schedule
            assert s.action.workflow == REMINDER_WORKFLOW_TYPE  # type: ignore[attr-defined]
            assert s.action.task_queue == h.task_queue  # type: ignore[attr-defined]
            (calendar,) = s.spec.calendars
            assert (calendar.hour[0].start, calendar.minute[0].start) == (7, 30)
            await handle.trigger()
            texts = await eventually(lambda: reminder_texts(h), "the reminder", timeout=30)
            (text,) = texts["+8613800000001"]  # type: ignore[index]
            assert "1名催收员安全培训需更新（最紧急：QX01-C02）" in text
            capsys.readouterr()
            assert await cli("--training-reminders", "--show") == 0
            shown = capsys.readouterr().out
            assert "every day at 07:30 Asia/Urumqi" in shown and "to +86138****0001" in shown
            assert "13800000001" not in shown
        finally:
            assert await cli("--training-reminders", "--delete") == 0
        assert await cli("--training-reminders", "--delete") == 1  # gone
