"""The cba-2026 rule set's clauses at their boundaries: calls and visits in the night window
(with and without consent), the 6th and 7th unanswered call (one case, and two loans of one
borrower), one versus two collectors, third parties before and after contact is lost.
Pure clauses without a server; the rest on the time-skipping server with real activities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import Consent, ContactAttempt, Loan, LoanContact, SmsOutbox
from domain.models import (
    CallEntry,
    CallReport,
    ConsentChange,
    ThirdPartyEntry,
    ThirdPartyMessage,
    VisitReport,
)
from domain.policy import Policy, PolicyError
from domain.rulebook import (
    call_refusal,
    contact_lost,
    in_contact_window,
    night_refusal,
    third_party_refusal,
)
from domain.stages import CallOutcome, ConsentKind
from tests.harness import Harness, assert_replays, running_worker
from tests.test_workflow_paths import DEBT
from workflows.collection import LoanCollectionWorkflow as WF

SH = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
TODAY = datetime.now(SH).date()


def at(hh: int, mm: int, day_offset: int = 0) -> datetime:
    return datetime.combine(TODAY + timedelta(days=day_offset), time(hh, mm), tzinfo=SH)


def consent(given: bool, when: datetime) -> ConsentChange:
    return ConsentChange(ConsentKind.NIGHT_CONTACT, given, "VISIT", "QX01-C01", when)


# ---------------------------------------------------------------- the clauses, pure


@pytest.mark.parametrize(
    ("hh", "mm", "allowed"),
    [(7, 59, False), (8, 0, True), (21, 59, True), (22, 0, False), (23, 30, False), (0, 0, False)],
)
def test_calls_and_visits_only_08_to_22_without_consent(hh: int, mm: int, allowed: bool) -> None:
    assert in_contact_window(at(hh, mm), POLICY) is allowed
    assert (night_refusal(at(hh, mm), [], POLICY) == "") is allowed
    # With the borrower's consent the night is open too; withdrawn, it is closed again.
    given = [consent(True, at(0, 0, -1))]
    assert night_refusal(at(hh, mm), given, POLICY) == ""
    withdrawn = [*given, consent(False, at(1, 0, -1))]
    assert (night_refusal(at(hh, mm), withdrawn, POLICY) == "") is allowed


def test_the_sixth_unanswered_call_is_allowed_the_seventh_refused() -> None:
    calls = [CallEntry(at(9, n), "borrower", "NO_ANSWER") for n in range(5)]
    assert call_refusal(calls, "borrower", at(10, 0), CallOutcome.NO_ANSWER, POLICY) == ""
    calls.append(CallEntry(at(9, 5), "borrower", "NO_ANSWER"))
    why = call_refusal(calls, "borrower", at(10, 0), CallOutcome.NO_ANSWER, POLICY)
    assert why.startswith("outcome: already 6 unanswered calls") and "cba-2026" in why
    # An answered call is no unanswered attempt; another number has its own count; and
    # tomorrow is a new day.
    assert call_refusal(calls, "borrower", at(10, 0), CallOutcome.ANSWERED, POLICY) == ""
    assert call_refusal(calls, "contact:7", at(10, 0), CallOutcome.NO_ANSWER, POLICY) == ""
    assert call_refusal(calls, "borrower", at(9, 0, 1), CallOutcome.NO_ANSWER, POLICY) == ""


def test_third_parties_only_after_contact_is_lost_and_once_a_week() -> None:
    now = at(10, 0)
    assert not contact_lost(True, 2, POLICY) and contact_lost(True, 3, POLICY)
    assert contact_lost(False, 0, POLICY)  # an invalid number
    assert third_party_refusal(True, False, [], 1, now, POLICY) == ""  # a guarantor
    assert "only after contact" in third_party_refusal(False, False, [], 1, now, POLICY)
    assert third_party_refusal(False, True, [], 1, now, POLICY) == ""
    six_days = [ThirdPartyEntry(now - timedelta(days=6), 1, False)]
    assert "at most once in 7 days" in third_party_refusal(False, True, six_days, 1, now, POLICY)
    seven_days = [ThirdPartyEntry(now - timedelta(days=7), 1, False)]
    assert third_party_refusal(False, True, seven_days, 1, now, POLICY) == ""


def test_the_rule_set_refuses_a_one_collector_team() -> None:
    with pytest.raises(PolicyError, match="visit_team_size"):
        Policy(visit_team_size=1)


# ---------------------------------------------------------------- on the time-skipping server


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("uses the server's clock for local times: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        harness.policy = harness.policy.with_overrides(
            {"ruleset": "cba-2026", "contact_window_start": "08:00", "contact_window_end": "22:00"}
        )
        yield harness


async def last_local(h: Harness, hh: int, mm: int = 0) -> datetime:
    """The latest past moment that was hh:mm in Shanghai, by the server's clock."""
    now = (await h.now()).astimezone(SH)
    moment = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    return moment if moment <= now else moment - timedelta(days=1)


async def daytime(h: Harness) -> datetime:
    """A past moment in the contact window with half an hour of the same local day after it
    (calls at it and a few minutes later are neither in the future nor at night)."""
    t = (await h.now()).astimezone(SH) - timedelta(minutes=30)
    if time(8, 0) <= t.time() <= time(21, 0):
        return t
    return await last_local(h, 9, 0)  # this morning, or yesterday's: under 24 hours ago


async def nighttime(h: Harness) -> datetime:
    """A past moment in the night window (22:00-08:00), under 23 hours ago."""
    t = (await h.now()).astimezone(SH) - timedelta(minutes=30)
    if t.time() >= time(22, 10) or t.time() <= time(7, 50):
        return t
    return await last_local(h, 23, 30)


async def call(
    h: Harness, handle: WorkflowHandle, when: datetime, outcome: str = "NO_ANSWER", **kw: str
):  # type: ignore[no-untyped-def]
    status = await h.status(handle)
    report = CallReport(outcome, status.collectors[0], when, kw.get("party", "borrower"))
    return await handle.execute_update(WF.record_call, report)


def reason(e: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> str:
    cause = e.value.cause
    while getattr(cause, "cause", None) is not None:  # an activity's refusal is nested
        cause = cause.cause
    return str(cause)


async def end(h: Harness, handle: WorkflowHandle) -> None:
    await h.pay(handle, DEBT)
    await handle.result()


async def test_calls_at_night_need_consent_and_are_logged(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    night = await nighttime(h)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await call(h, handle, night)
    assert "called_at: no calls or visits between 22:00 and 08:00" in reason(e)
    when = (await h.now()) - timedelta(minutes=1)
    await handle.execute_update(
        WF.record_consent,
        ConsentChange(ConsentKind.NIGHT_CONTACT, True, "VISIT", "QX01-C01", when),
    )
    accepted = await call(h, handle, night)
    assert "call recorded: NO_ANSWER" in accepted.message
    status = await h.status(handle)
    assert status.night_consent
    with h.sessions() as session:
        row = session.scalar(select(ContactAttempt).where(ContactAttempt.channel == "CALL"))
        assert row is not None and row.party == "borrower" and row.ruleset.startswith("cba-2026")
        assert "13912345678" not in row.detail  # the number is masked in the record
        assert session.scalar(select(func.count()).select_from(Consent)) == 1
    await end(h, handle)
    await assert_replays(handle)


async def test_the_seventh_unanswered_call_of_a_day_is_refused(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    morning = await daytime(h)
    for n in range(6):
        accepted = await call(h, handle, morning + timedelta(minutes=n))
    assert accepted.number == 6
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await call(h, handle, morning + timedelta(minutes=10))
    assert "outcome: already 6 unanswered calls" in reason(e)
    answered = await call(h, handle, morning + timedelta(minutes=11), "ANSWERED")
    assert "ANSWERED" in answered.message  # the borrower picked up: not an attempt over the cap
    status = await h.status(handle)
    assert status.unanswered_calls_today in (0, 6)  # 0 once the server's day moved on
    await end(h, handle)


async def test_two_loans_of_one_borrower_share_the_daily_call_cap(h: Harness) -> None:
    """The workflow of each loan sees only its own calls; the activity counts the number."""
    a_spec, a = await h.start(id_number="522401198001019999")
    b_spec, b = await h.start(id_number="522401198001019999", phone="+8613912345678")
    for handle in (a, b):
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    morning = await daytime(h)
    for n in range(4):
        await call(h, a, morning + timedelta(minutes=n))
    for n in range(2):
        await call(h, b, morning + timedelta(minutes=10 + n))
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await call(h, b, morning + timedelta(minutes=20))
    assert "already 6 unanswered calls" in reason(e) and "every loan" in reason(e)
    assert (await h.status(b)).counters.sms_sent >= 1  # the case goes on
    await end(h, a)
    await end(h, b)


def test_a_visit_at_night_is_refused_without_consent() -> None:
    """The workflow's visit validator (pure: no server clock needed for the boundaries)."""
    from domain.human_input import Refused, check_visit_report
    from domain.models import CaseState
    from domain.stages import Stage

    now = at(23, 45)
    s = CaseState(
        loan_no="L1", branch="QX01", policy=POLICY, stage=Stage.FIELD_VISIT,
        stage_since=now - timedelta(days=3), opened_at=now - timedelta(days=10),
        collectors=["QX01-C01", "QX01-C02"], team_size=2,
    )  # fmt: skip
    team = ["QX01-C01", "QX01-C02"]
    for visited, allowed in ((at(21, 59), True), (at(22, 0), False), (at(7, 59), False)):
        report = VisitReport("MET", team, visited)
        if allowed:
            check_visit_report(s, report, now)
        else:
            with pytest.raises(Refused, match="visited_at: no calls or visits between 22:00"):
                check_visit_report(s, report, now)
    s.consents = [consent(True, at(0, 0, -1))]
    check_visit_report(s, VisitReport("MET", team, at(22, 0)), now)  # with consent
    with pytest.raises(Refused, match="collector_ids: every visit is made by at least 2"):
        check_visit_report(s, VisitReport("MET", team[:1], at(21, 0)), now)


def add_contact(h: Harness, loan_no: str, relation: str, phone: str) -> int:
    with h.sessions.begin() as session:
        loan = session.scalar(select(Loan).where(Loan.loan_no == loan_no))
        assert loan is not None
        contact = LoanContact(
            loan_id=loan.id,
            name="李四",
            relation=relation,
            phone=phone,
            added_at=datetime.now(UTC),
            added_by="office",
        )
        session.add(contact)
        session.flush()
        return contact.id


async def test_an_unrelated_third_party_only_after_contact_is_lost(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    neighbour = add_contact(h, spec.loan_no, "OTHER", "+8613700000001")
    guarantor = add_contact(h, spec.loan_no, "GUARANTOR", "+8613700000002")
    message = ThirdPartyMessage(neighbour, "QX01-C01", related=False)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.contact_third_party, message)
    assert "only after contact with the debtor is lost" in reason(e)
    # A guarantor may be contacted like the debtor.
    done = await handle.execute_update(
        WF.contact_third_party, ThirdPartyMessage(guarantor, "QX01-C01", related=True)
    )
    assert "RECORDED" in done.message
    morning = await daytime(h)
    for n in range(3):  # three failed attempts in a row: contact is lost
        await call(h, handle, morning + timedelta(minutes=n))
    assert (await h.status(handle)).contact_lost
    done = await handle.execute_update(WF.contact_third_party, message)
    assert "RECORDED" in done.message
    with pytest.raises(WorkflowUpdateFailedError) as e:  # at most once a week
        await handle.execute_update(WF.contact_third_party, message)
    assert "at most once in 7 days" in reason(e)
    with h.sessions() as session:
        sent = session.scalars(
            select(SmsOutbox).where(SmsOutbox.to_number == "+8613700000001")
        ).all()
    assert len(sent) == 1 and sent[0].purpose == "third_party_request"
    assert "元" not in sent[0].body and "尾号" not in sent[0].body  # names no debt, no loan
    await end(h, handle)
    await assert_replays(handle)


async def test_the_send_activity_refuses_a_debt_text_to_a_third_party(sqlite_sessions) -> None:
    """The second line of defence: whatever the workflow asked, no debt to a third party."""
    from activities.sms import SmsActivities
    from activities.sms_gateway import RecordingGateway
    from db.seed import add_loan
    from domain.models import SmsRequest
    from tests.harness import loan_spec

    spec = loan_spec()
    with sqlite_sessions.begin() as session:
        add_loan(session, spec)
    h = Harness(None, None, "", sqlite_sessions, Path("."), timedelta(days=1), POLICY)  # type: ignore[arg-type]
    contact = add_contact(h, spec.loan_no, "OTHER", "+8613700000003")
    policy = POLICY.with_overrides({"quiet_start": "00:00", "quiet_end": "00:00"})
    activities = SmsActivities(sqlite_sessions, RecordingGateway())
    now = datetime.now(UTC)

    def send(purpose: str, lost: bool, n: int):  # type: ignore[no-untyped-def]
        request = SmsRequest(
            f"{spec.loan_no}:tp:{n}",
            spec.loan_no,
            purpose,
            {"amount_fen": "100", "days_past_due": "40"},
            now,
            policy=policy,
            party=f"contact:{contact}",
            contact_lost=lost,
        )
        return activities.send_sms(request)

    assert send("first_notice", True, 1).status == "BLOCKED"
    assert "only after contact" in send("third_party_request", False, 2).reason
    assert send("third_party_request", True, 3).status == "RECORDED"
    assert "at most once" in send("third_party_request", True, 4).reason


async def test_calls_to_third_parties_follow_the_third_party_rule(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    neighbour = add_contact(h, spec.loan_no, "OTHER", "+8613700000011")
    guarantor = add_contact(h, spec.loan_no, "GUARANTOR", "+8613700000012")
    morning = await daytime(h)
    with pytest.raises(WorkflowUpdateFailedError) as e:  # one spelling per party
        await call(h, handle, morning, party=f"contact:0{neighbour}")
    assert "party:" in reason(e)
    with pytest.raises(WorkflowUpdateFailedError) as e:  # the activity knows the relation
        await call(h, handle, morning, party=f"contact:{neighbour}")
    assert "only after contact with the debtor is lost" in reason(e)
    await call(h, handle, morning, "ANSWERED", party=f"contact:{guarantor}")
    # The debtor's consent to night calls is not the neighbour's or the guarantor's.
    when = (await h.now()) - timedelta(minutes=1)
    await handle.execute_update(
        WF.record_consent,
        ConsentChange(ConsentKind.NIGHT_CONTACT, True, "VISIT", "QX01-C01", when),
    )
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await call(h, handle, await nighttime(h), party=f"contact:{guarantor}")
    assert "called_at: no calls or visits between 22:00 and 08:00" in reason(e)
    await end(h, handle)


async def test_a_message_to_a_third_party_at_night_is_refused_at_once(h: Harness) -> None:
    """Outside the SMS hours the caller hears 'not sent' now: the Update never waits for the
    morning (where a payment in full would have cut it short)."""
    local_now = (await h.now()).astimezone(SH)
    start, end_ = local_now - timedelta(hours=1), local_now + timedelta(hours=2)
    quiet = {"quiet_start": f"{start:%H:%M}", "quiet_end": f"{end_:%H:%M}"}
    spec, handle = await h.start(h.policy.with_overrides(quiet))
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    guarantor = add_contact(h, spec.loan_no, "GUARANTOR", "+8613700000013")
    done = await handle.execute_update(
        WF.contact_third_party, ThirdPartyMessage(guarantor, "QX01-C01", related=True)
    )
    assert "BLOCKED" in done.message
    await h.pay(handle, DEBT)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
