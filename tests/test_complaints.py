"""Complaints (投诉, issue 15 item 3): classified from SMS replies or recorded by a collector;
acknowledge by one working day, resolve within 15 days (policy), escalated when a deadline
passes, collection contact paused meanwhile, the outcome texted to the borrower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError

from db.models import Complaint, SmsOutbox, Task
from domain.complaints import add_working_days
from domain.models import BorrowerReply, CallReport, ComplaintAction, ComplaintReport
from domain.policy import Policy
from domain.replies import claims_payment, interpret
from domain.stages import ReplyIntent
from service.collection_record import collection_record
from service.portfolio import ComplaintCount, complaint_counts
from tests.harness import Harness, eventually, running_worker
from tests.test_visit_safety import _rows
from tests.test_workflow_paths import to_field_visit
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    "body", ["投诉", "我要投诉你们", "投訴！", "ＴＳ", "ts", "我已还款但要投诉", "我要举报催收员"]
)
def test_complaints_are_recognised_in_replies(body: str) -> None:
    assert interpret(body) == ReplyIntent.COMPLAINT


@pytest.mark.parametrize(
    ("body", "intent", "paid"),
    [
        ("没有投诉，已还款", ReplyIntent.CLAIMS_PAID, True),
        ("我不投诉了，下周还", ReplyIntent.OTHER, False),
        ("No complaints, paid today", ReplyIntent.CLAIMS_PAID, True),
        ("谢谢，不用申诉", ReplyIntent.OTHER, False),
        ("举报电话是多少", ReplyIntent.OTHER, False),  # read and answered by a person
        ("我已还款但要投诉", ReplyIntent.COMPLAINT, True),  # both: a complaint, a payment check
        ("不然我就投诉你们", ReplyIntent.COMPLAINT, False),
        ("I will complain", ReplyIntent.COMPLAINT, False),
    ],
)
def test_negated_complaint_words_are_not_complaints(
    body: str, intent: ReplyIntent, paid: bool
) -> None:
    assert interpret(body) == intent
    assert claims_payment(body) is paid


def test_other_replies_keep_their_meaning() -> None:
    assert interpret("1") == ReplyIntent.ACKNOWLEDGED
    assert interpret("已还") == ReplyIntent.CLAIMS_PAID
    assert interpret("TD") == ReplyIntent.OPT_OUT
    assert interpret("下周再说") == ReplyIntent.OTHER


def test_acknowledgement_is_due_after_one_working_day() -> None:
    policy = Policy()
    wednesday = datetime(2026, 12, 2, 10, 0, tzinfo=SHANGHAI)
    friday, saturday = wednesday + timedelta(days=2), wednesday + timedelta(days=3)
    assert add_working_days(wednesday, 1, policy) == wednesday + timedelta(days=1)
    assert add_working_days(friday, 1, policy) == friday + timedelta(days=3)  # Monday
    assert add_working_days(saturday, 1, policy) == saturday + timedelta(days=2)  # Monday


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("working days: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


def complaint_row(h: Harness, loan_no: str) -> Complaint | None:
    with h.sessions() as session:
        return session.scalar(select(Complaint).where(Complaint.loan_no == loan_no))


def texts(h: Harness, loan_no: str) -> list[SmsOutbox]:
    return _rows(h, loan_no, SmsOutbox)


async def complain_by_sms(h: Harness, handle) -> None:  # type: ignore[no-untyped-def]
    reply = BorrowerReply("SM-complaint-1", ReplyIntent.COMPLAINT, await h.now())
    await handle.signal(WF.borrower_reply, reply)
    await h.until(handle, lambda s: len(s.complaints) == 1, "the complaint")


async def test_a_complaint_by_sms_pauses_contact_until_resolved_and_the_outcome_is_texted(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    await complain_by_sms(h, handle)
    row = await eventually(lambda: complaint_row(h, spec.loan_no), "the complaint's row")
    assert row.source == "SMS" and row.status == "OPEN"
    tasks = await eventually(
        lambda: _rows(h, spec.loan_no, Task, Task.kind == "COMPLAINT"), "the supervisor's task"
    )
    assert tasks[0].assignees == "supervisor:QX01"
    await handle.execute_update(WF.acknowledge_complaint, ComplaintAction(1, "sup-qx01"))
    assert complaint_row(h, spec.loan_no).status == "ACKNOWLEDGED"
    status = await to_field_visit(h, handle)
    # Collection contact is paused: the visit notice is not sent, calls are refused.
    notice = await eventually(
        lambda: [m for m in texts(h, spec.loan_no) if m.purpose == "visit_notice"], "notice"
    )
    assert notice[0].status == "BLOCKED" and "complaint 1 is open" in notice[0].reason
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        call = CallReport("NO_ANSWER", status.collectors[0], await h.now())
        await handle.execute_update(WF.record_call, call)
    assert "paused while complaint 1 is open" in refused.value.cause.message
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.resolve_complaint, ComplaintAction(1, "sup-qx01", "不还钱就通知你家人")
        )
    assert refused.value.cause.message.startswith("outcome: wording")
    outcome = "已核实，对催收员进行了批评教育"
    await handle.execute_update(WF.resolve_complaint, ComplaintAction(1, "sup-qx01", outcome))
    sent = await eventually(
        lambda: [
            m
            for m in texts(h, spec.loan_no)
            if m.purpose == "complaint_outcome" and m.status in ("SENT", "RECORDED")
        ],
        "the outcome SMS",
    )
    assert outcome in sent[0].body
    row = complaint_row(h, spec.loan_no)
    assert row.status == "RESOLVED" and row.outcome == outcome and row.ack_escalated_at is None
    assert (await h.status(handle)).complaints == []
    record = collection_record(h.sessions, spec.loan_no, None, h.policy, await h.now())
    assert record is not None and len(record.complaints) == 1
    assert outcome in record.complaints[0].detail and "RESOLVED" in record.complaints[0].detail
    # Contact resumes: a call is taken again.
    call = CallReport("NO_ANSWER", status.collectors[0], await h.now())
    await handle.execute_update(WF.record_call, call)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_deadlines_passed_escalate_to_the_branch_head(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    about = status.collectors[1]
    report = ComplaintReport(
        "VISIT", "借款人称催收员态度粗暴", status.collectors[0], await h.now(), about
    )
    accepted = await handle.execute_update(WF.record_complaint, report)
    assert accepted.number == 1
    row = await eventually(lambda: complaint_row(h, spec.loan_no), "the complaint's row")
    assert row.collectors == about and row.source == "VISIT"

    def overdue() -> list[Task]:
        return _rows(h, spec.loan_no, Task, Task.kind == "COMPLAINT_OVERDUE")

    await h.advance(4)  # one working day, whatever the weekday (a weekend at most adds two)
    tasks = await eventually(overdue, "the acknowledgement's escalation")
    assert "head:QX01" in tasks[0].assignees.split(",") and "acknowledged" in tasks[0].detail
    assert complaint_row(h, spec.loan_no).ack_escalated_at is not None
    # The dashboard's counts: per branch and the collector complained about.
    assert complaint_counts(h.sessions, ("QX01",)) == [ComplaintCount("QX01", about, 1, 1, 1)]
    assert complaint_counts(h.sessions, ("LS01",)) == []
    await handle.execute_update(WF.acknowledge_complaint, ComplaintAction(1, "sup-qx01"))
    await h.advance(11.5)  # fifteen days in all
    await eventually(lambda: len(overdue()) == 2, "the resolution's escalation")
    assert "resolved" in overdue()[1].detail
    assert complaint_row(h, spec.loan_no).resolve_escalated_at is not None
    await handle.execute_update(WF.resolve_complaint, ComplaintAction(1, "sup-qx01", "已处理"))
    await h.pay(handle, DEBT)
    await handle.result()


async def test_complaint_messages_are_checked(h: Harness) -> None:
    spec, handle = await h.start()
    now = await h.now()
    for report, field in (
        (ComplaintReport("SMS", "x", "QX01-C01", now), "source"),
        (ComplaintReport("CALL", " ", "QX01-C01", now), "summary"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(WF.record_complaint, report)
        assert refused.value.cause.message.startswith(f"{field}:")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(WF.acknowledge_complaint, ComplaintAction(3, "sup"))
    assert refused.value.cause.message.startswith("number:")
    await h.pay(handle, DEBT)
    await handle.result()


async def test_complaints_through_the_service_are_audited(h: Harness) -> None:
    from db.models import AuditEvent
    from service.case_updates import CaseActions
    from service.users import Principal, Role

    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    acts = CaseActions(h.client, h.sessions, h.policy)
    collector = Principal("c1", Role.COLLECTOR, ("QX01",), "QX01-C01")
    supervisor = Principal("sup", Role.SUPERVISOR, ("QX01",))
    made = await acts.record_complaint(
        collector, spec.loan_no, "CALL", "电话里说被骂", await h.now()
    )
    assert made.accepted and made.number == 1
    assert (await acts.acknowledge_complaint(supervisor, spec.loan_no, 1)).accepted
    done = await acts.resolve_complaint(supervisor, spec.loan_no, 1, "已道歉并更换催收员")
    assert done.accepted, done.message
    with h.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.loan_no == spec.loan_no)
        ).all()
    assert {"record_complaint", "acknowledge_complaint", "resolve_complaint"} <= set(actions)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_complaints_through_the_case_page_by_the_case_team_and_supervisors(
    h: Harness,
) -> None:
    """Record, acknowledge and resolve from the case page: a collector of the case or a
    supervisor of its branch; another collector is refused by the service."""
    import httpx

    from service.users import Role
    from tests.web_support import PASSWORD, add_user, app_for

    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in status.collectors)
    add_user(h, "mine", Role.COLLECTOR, collector_id=status.collectors[0])
    add_user(h, "theirs", Role.COLLECTOR, collector_id=other)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    transport = httpx.ASGITransport(app=app_for(h))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        auth = {}
        for user in ("mine", "theirs", "sup"):
            r = await http.post("/login", json={"username": user, "password": PASSWORD})
            token = r.json()["token"]
            auth[user] = {"accept": "application/json", "authorization": f"Bearer {token}"}
        url = f"/cases/{spec.loan_no}"
        page = await http.get(url, headers={"authorization": auth["mine"]["authorization"]})
        assert 'id="complaint-form"' in page.text
        body = {"source": "VISIT", "summary": "借款人称催收员态度粗暴"}
        theirs = await http.post(f"{url}/complaint", json=body, headers=auth["theirs"])
        assert theirs.status_code == 404  # not their case
        mine = await http.post(f"{url}/complaint", json=body, headers=auth["mine"])
        assert mine.status_code == 200 and mine.json()["accepted"], mine.text
        ack = await http.post(
            f"{url}/acknowledge-complaint", json={"number": 1}, headers=auth["sup"]
        )
        assert ack.status_code == 200 and ack.json()["accepted"], ack.text
        done = await http.post(
            f"{url}/resolve-complaint", json={"number": 1, "outcome": "已核实并处理"},
            headers=auth["sup"],
        )  # fmt: skip
        assert done.status_code == 200 and done.json()["accepted"], done.text
    assert (await h.status(handle)).complaints == []
    await h.pay(handle, DEBT)
    await handle.result()


async def test_the_outcome_sms_waiting_for_contact_hours_is_not_lost_when_the_case_closes(
    h: Harness,
) -> None:
    """Issue 15 review, item 4: resolved in quiet hours, then paid in full: the outcome waits
    for the morning (not cut off by the closing) and, a closed case sending nothing, a task
    tells the supervisor to give the borrower the outcome another way."""
    local = (await h.now()).astimezone(SHANGHAI)
    quiet = h.policy.with_overrides(
        {
            "quiet_start": f"{(local - timedelta(hours=1)):%H:%M}",
            "quiet_end": f"{(local + timedelta(hours=3)):%H:%M}",
        }
    )
    spec, handle = await h.start(quiet)
    now = await h.now()
    report = ComplaintReport("CALL", "借款人称催收员半夜打电话", "QX01-C01", now)
    await handle.execute_update(WF.record_complaint, report)
    outcome = "已核实，已对相关人员批评教育"
    await handle.execute_update(WF.resolve_complaint, ComplaintAction(1, "sup-qx01", outcome))
    await h.pay(handle, DEBT)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    rows = [m for m in texts(h, spec.loan_no) if m.purpose == "complaint_outcome"]
    assert len(rows) == 1 and rows[0].created_at.astimezone(SHANGHAI) >= local + timedelta(
        hours=2, minutes=55
    )  # waited for the contact window
    tasks = _rows(h, spec.loan_no, Task, Task.kind == "COMPLAINT")
    missed = [t for t in tasks if "投诉结果短信未发出" in t.detail]
    assert len(missed) == 1 and outcome in missed[0].detail
    assert missed[0].assignees == "supervisor:QX01"


async def test_a_complaint_that_says_it_was_paid_also_asks_to_check_the_payment(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    reply = BorrowerReply("SM-both-1", ReplyIntent.COMPLAINT, await h.now(), claims_paid=True)
    await handle.signal(WF.borrower_reply, reply)
    await h.until(handle, lambda s: len(s.complaints) == 1, "the complaint")
    checks = await eventually(
        lambda: _rows(h, spec.loan_no, Task, Task.kind == "CHECK_CLAIMED_PAYMENT"),
        "the payment check",
    )
    assert len(checks) == 1
    await h.pay(handle, DEBT)
    await handle.result()
