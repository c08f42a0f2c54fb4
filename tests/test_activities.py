"""The activities against real databases, each test on SQLite and on PostgreSQL.

A retried activity is simply the same call made again: it must write nothing twice.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.agreements import AgreementActivities
from activities.cases import CaseActivities
from activities.sms import SmsActivities
from activities.sms_gateway import GatewayResult
from db.models import (
    Agreement,
    Assignment,
    Borrower,
    Case,
    Collector,
    ContactAttempt,
    Loan,
    Payment,
    SmsOutbox,
    StageChange,
    Visit,
)
from db.seed import add_loan
from domain.models import (
    AgreementRequest,
    AssignRequest,
    DebtRecord,
    DebtUpdate,
    Installment,
    PaymentPosted,
    PaymentRecord,
    Plan,
    SignatureConfirmation,
    SignatureRecord,
    SmsRequest,
    TaskRequest,
    Transition,
    VisitRecord,
    VisitReport,
)
from domain.policy import Policy
from domain.stages import Stage, TaskKind
from tests.harness import OPEN_POLICY, loan_spec

NOW = datetime.now(UTC)


class CountingGateway:
    name = "counting"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        self.sent.append((to, body, key))
        return GatewayResult("SENT", f"SM{len(self.sent):032d}")

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        sids = [f"SM{n:032d}" for n, s in enumerate(self.sent, 1) if s[:2] == (to, body)]
        return sids[-1] if sids else None


def new_loan(sessions: sessionmaker[Session], **kw: object) -> str:
    spec = loan_spec(**kw)
    with sessions.begin() as session:
        add_loan(session, spec)
    return spec.loan_no


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def transition(loan_no: str, seq: int, to: Stage, **kw: object) -> Transition:
    values: dict[str, object] = dict(
        loan_no=loan_no,
        seq=seq,
        from_stage=None,
        to_stage=to,
        at=NOW,
        actor="system",
        reason="test",
        branch="QX01",
        risk_tier="LOW",
        collectors=["QX01-C01"],
        debt_fen=1_000_000,
        paid_fen=0,
        next_action="",
        next_action_at=None,
    )
    values.update(kw)
    return Transition(**values)  # type: ignore[arg-type]


def test_load_case_reads_the_loan_without_personal_data(sessions) -> None:
    loan_no = new_loan(sessions, remote=True)
    facts = CaseActivities(sessions).load_case(loan_no)
    assert facts.debt_fen == 1_000_000 and facts.region == "青溪县" and facts.remote
    assert "王建国" not in repr(facts) and "13912345678" not in repr(facts)
    with pytest.raises(ApplicationError) as e:
        CaseActivities(sessions).load_case("NO-SUCH-LOAN")
    assert e.value.non_retryable and e.value.type == "NotFound"


def test_assignment_respects_capacity_and_is_idempotent(sessions) -> None:
    acts = CaseActivities(sessions)
    with sessions.begin() as session:
        session.execute(update(Collector).where(Collector.branch_code == "QX01").values(capacity=1))
        session.execute(update(Collector).where(Collector.id == "QX01-C03").values(active=False))
    a, b, c = (new_loan(sessions) for _ in range(3))
    first = acts.assign_collectors(AssignRequest(a, "QX01", 1))
    assert acts.assign_collectors(AssignRequest(a, "QX01", 1)) == first  # a retry
    second = acts.assign_collectors(AssignRequest(b, "QX01", 1))
    assert {first[0], second[0]} == {"QX01-C01", "QX01-C02"}
    assert acts.assign_collectors(AssignRequest(c, "QX01", 1)) == []  # nobody has capacity
    assert count(sessions, Assignment) == 2


def test_team_of_two_and_reassignment(sessions) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    team = acts.assign_collectors(AssignRequest(loan_no, "QX01", 2))
    assert len(set(team)) == 2
    assert acts.assign_collectors(AssignRequest(loan_no, "QX01", 2, keep=team[:1])) == team
    moved = acts.assign_collectors(
        AssignRequest(loan_no, "QX01", 1, requested=["QX01-C03"], by="li", reason="leave")
    )
    assert moved == ["QX01-C03"]
    with sessions() as session:
        open_rows = session.scalars(
            select(Assignment.collector_id).where(Assignment.ended_at.is_(None))
        ).all()
        assert open_rows == ["QX01-C03"]
        assert session.scalar(select(Case.primary_collector)) == "QX01-C03"
    with pytest.raises(ApplicationError, match="works for branch LS01") as e:
        acts.assign_collectors(AssignRequest(loan_no, "QX01", 1, requested=["LS01-C01"]))
    assert e.value.non_retryable
    with pytest.raises(ApplicationError, match="no collector QX01-C99"):
        acts.assign_collectors(AssignRequest(loan_no, "QX01", 1, requested=["QX01-C99"]))


def test_transition_retried_writes_one_row_and_never_rolls_back(sessions) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    acts.record_transition(transition(loan_no, 1, Stage.INVESTIGATION))
    acts.record_transition(transition(loan_no, 2, Stage.INITIAL_CONTACT))
    acts.record_transition(transition(loan_no, 2, Stage.INITIAL_CONTACT))  # retried
    acts.record_transition(transition(loan_no, 1, Stage.INVESTIGATION))  # a late old retry
    assert count(sessions, StageChange) == 2
    with sessions() as session:
        case = session.scalar(select(Case))
        assert (case.stage, case.last_seq) == ("INITIAL_CONTACT", 2)
    acts.record_transition(transition(loan_no, 3, Stage.PAID_IN_FULL, paid_fen=1_000_000))
    with sessions() as session:
        case = session.scalar(select(Case))
        assert case.closed_at is not None and case.paid_fen == 1_000_000
        assert case.loan.status == "PAID"


def sms(loan_no: str, key: str, policy: Policy = OPEN_POLICY, **kw: object) -> SmsRequest:
    return SmsRequest(
        key=key,
        loan_no=loan_no,
        purpose=str(kw.pop("purpose", "first_notice")),
        params={"amount_fen": "1000000", "days_past_due": "40"},
        requested_at=NOW,
        policy=policy,
        **kw,  # type: ignore[arg-type]
    )


def test_send_sms_retried_sends_once(sessions) -> None:
    gateway = CountingGateway()
    acts = SmsActivities(sessions, gateway)
    loan_no = new_loan(sessions)
    first = acts.send_sms(sms(loan_no, "k1"))
    again = acts.send_sms(sms(loan_no, "k1"))
    assert first.status == again.status == "SENT"
    assert len(gateway.sent) == 1 and gateway.sent[0][0] == "+8613912345678"
    assert count(sessions, SmsOutbox) == 1 and count(sessions, ContactAttempt) == 1
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.provider_sid and row.segments == 2 and "尾号" in row.body


def test_send_sms_defers_in_quiet_hours(sessions) -> None:
    local = NOW.astimezone(ZoneInfo("Asia/Shanghai"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    policy = OPEN_POLICY.with_overrides(
        {"quiet_start": f"{start:%H:%M}", "quiet_end": f"{end:%H:%M}"}
    )
    gateway = CountingGateway()
    loan_no = new_loan(sessions)
    result = SmsActivities(sessions, gateway).send_sms(sms(loan_no, "q1", policy))
    assert result.status == "DEFERRED" and result.reason == "quiet hours"
    assert result.not_before.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M") == (
        f"{end:%H:%M}"
    )
    assert gateway.sent == []


def test_send_sms_writes_the_following_wait_to_the_case_row_once_done(sessions) -> None:
    """collection-v6: a reminder carrying the wait after it writes that wait to the case row
    once it is done (sent, or blocked), idempotently and only when newer than the row's; a
    deferred one writes nothing (the case waits for the contact window instead)."""
    local = NOW.astimezone(ZoneInfo("Asia/Shanghai"))
    quiet = OPEN_POLICY.with_overrides(
        {
            "quiet_start": f"{local - timedelta(hours=1):%H:%M}",
            "quiet_end": f"{local + timedelta(hours=1):%H:%M}",
        }
    )
    gateway = CountingGateway()
    acts = SmsActivities(sessions, gateway)
    due, stamp = NOW + timedelta(days=8), NOW - timedelta(minutes=5)

    def following(at: datetime, when: datetime) -> dict[str, object]:
        return dict(next_action="installment 1 due", next_action_at=at, next_action_stamp=when)

    def row(loan_no: str) -> tuple[object, ...]:
        with sessions() as session:
            case = session.scalar(select(Case).join(Loan).where(Loan.loan_no == loan_no))
            if case is None:
                return (None, None)
            at = case.next_action_at
            return (case.next_action, at and at.replace(tzinfo=UTC))

    deferred = new_loan(sessions)
    result = acts.send_sms(sms(deferred, "d1", quiet, **following(due, stamp)))
    assert result.status == "DEFERRED" and row(deferred)[1] is None
    sent = new_loan(sessions)
    assert acts.send_sms(sms(sent, "s1", **following(due, stamp))).status == "SENT"
    assert row(sent) == ("installment 1 due", due)
    again = acts.send_sms(sms(sent, "s1", **following(due, stamp)))  # retried
    assert again.status == "SENT" and row(sent) == ("installment 1 due", due)
    # An older write (a late retry) does not overwrite the newer one.
    acts.send_sms(sms(sent, "s0", **following(NOW, stamp - timedelta(minutes=1))))
    assert row(sent) == ("installment 1 due", due)
    opted_out = new_loan(sessions, sms_opted_out=True)
    blocked = acts.send_sms(sms(opted_out, "b1", **following(due, stamp)))
    assert blocked.status == "BLOCKED" and row(opted_out) == ("installment 1 due", due)
    assert len(gateway.sent) == 2


def test_send_sms_honours_opt_out_and_records_the_block(sessions) -> None:
    gateway = CountingGateway()
    loan_no = new_loan(sessions, sms_opted_out=True)
    result = SmsActivities(sessions, gateway).send_sms(sms(loan_no, "o1"))
    assert (result.status, result.reason) == ("BLOCKED", "borrower opted out of SMS")
    assert gateway.sent == []
    with sessions() as session:
        assert session.scalar(select(SmsOutbox.status)) == "BLOCKED"


def test_send_sms_caps_per_borrower_defer_or_drop(sessions) -> None:
    gateway = CountingGateway()
    acts = SmsActivities(sessions, gateway)
    loan_no = new_loan(sessions)
    one_a_day = OPEN_POLICY.with_overrides({"sms_per_day": 1})
    assert acts.send_sms(sms(loan_no, "c1", one_a_day)).status == "SENT"
    deferred = acts.send_sms(sms(loan_no, "c2", one_a_day))
    assert deferred.status == "DEFERRED" and deferred.not_before > NOW
    dropped = acts.send_sms(sms(loan_no, "c3", one_a_day.with_overrides({"sms_over_cap": "DROP"})))
    assert (dropped.status, dropped.reason) == ("BLOCKED", "contact cap reached")
    assert len(gateway.sent) == 1


def test_send_sms_after_the_case_closed_is_blocked(sessions) -> None:
    gateway = CountingGateway()
    loan_no = new_loan(sessions)
    CaseActivities(sessions).record_transition(transition(loan_no, 1, Stage.CANCELLED))
    result = SmsActivities(sessions, gateway).send_sms(sms(loan_no, "x1"))
    assert result.status == "BLOCKED" and "case closed" in result.reason
    assert gateway.sent == []


def agreement_request(
    loan_no: str, number: int = 1, amounts=(500_000, 500_000)
) -> AgreementRequest:
    # Six weeks from today, at the borrower's 23:59:59 (never a fixed date the calendar passes).
    day = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=42)
    due = datetime.combine(day, time(23, 59, 59), ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    plan = Plan(
        number=number,
        installments=[
            Installment(n, due + timedelta(days=30 * (n - 1)), a)
            for n, a in enumerate(amounts, start=1)
        ],
        proposed_by="QX01-C01",
        accepted_at=NOW.replace(microsecond=0),
        base_paid_fen=0,
    )
    return AgreementRequest(loan_no, plan, ["QX01-C01"], 1_000_000, 0, Policy())


def test_agreement_versions_are_immutable_and_hashed(sessions, tmp_path: Path) -> None:
    acts = AgreementActivities(sessions, tmp_path / "agreements")
    loan_no = new_loan(sessions, name="<b>张&三</b>")
    v1 = acts.render_agreement(agreement_request(loan_no))
    again = acts.render_agreement(agreement_request(loan_no))  # a retried activity
    assert again == v1 and v1.version == 1
    v2 = acts.render_agreement(agreement_request(loan_no, 2, (400_000, 600_000)))
    assert v2.version == 2 and v2.sha256 != v1.sha256
    assert count(sessions, Agreement) == 2
    assert hashlib.sha256(Path(v1.path).read_bytes()).hexdigest() == v1.sha256  # the PDF
    with sessions() as session:
        html = Path(session.scalar(select(Agreement.html_path).where(Agreement.version == 1)))
    text = html.read_text()
    assert "&lt;b&gt;张&amp;三&lt;/b&gt;" in text and "<b>张" not in text  # autoescaped
    first_due = (NOW.astimezone(ZoneInfo("Asia/Shanghai")) + timedelta(days=42)).date()
    assert "**************" in text and first_due.isoformat() in text and "10,000.00" in text


def test_payment_visit_and_signature_are_recorded_once(sessions, tmp_path: Path) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    pay = PaymentRecord(loan_no, PaymentPosted("REF-1", 1000, NOW), True, 1000, 999_000)
    acts.record_payment(pay)
    acts.record_payment(pay)
    assert count(sessions, Payment) == 1
    report = VisitReport("HOSTILE", ["QX01-C01"], NOW, "dog, shouting")
    acts.record_visit(VisitRecord(loan_no, 1, report, Stage.FIELD_VISIT))
    acts.record_visit(VisitRecord(loan_no, 1, report, Stage.FIELD_VISIT))
    assert count(sessions, Visit) == 1
    with sessions() as session:
        assert session.scalar(select(Borrower.hostile))
    ref = AgreementActivities(sessions, tmp_path).render_agreement(agreement_request(loan_no))
    wrong = SignatureConfirmation(1, "0" * 64, "QX01-C01", NOW, "村委会")
    with pytest.raises(ApplicationError, match="sha256"):
        acts.record_signature(SignatureRecord(loan_no, wrong))
    right = SignatureConfirmation(1, ref.sha256, "QX01-C01", NOW, "村委会")
    acts.record_signature(SignatureRecord(loan_no, right))
    acts.record_signature(SignatureRecord(loan_no, right))
    with sessions() as session:
        agreement = session.scalar(select(Agreement))
        assert agreement.signed_place == "村委会" and agreement.signed_by == "QX01-C01"


def test_the_case_rows_outstanding_follows_only_newer_records(sessions) -> None:
    """collection-v5: every record of a money change carries the case's outstanding and
    the workflow time it is as of; a late or retried record cannot roll the row back, and
    a released run's record (no time) writes none."""
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    t0 = NOW - timedelta(hours=1)

    def row() -> tuple[int | None, datetime | None]:
        with sessions() as session:
            case = session.scalar(select(Case))
            return case.outstanding_fen, case.outstanding_at

    acts.record_payment(PaymentRecord(loan_no, PaymentPosted("R-0", 1, t0), True, 1, 999_999))
    assert row() == (None, None)  # a released run's: the search attribute stays the source
    first = transition(loan_no, 1, Stage.FIELD_VISIT, outstanding_fen=1_000_000, outstanding_at=t0)
    acts.record_transition(first)
    assert row() == (1_000_000, t0)
    paid = PaymentRecord(
        loan_no, PaymentPosted("R-1", 300_000, t0), True, 300_001, 699_999, t0 + timedelta(1)
    )
    acts.record_payment(paid)
    assert row() == (699_999, t0 + timedelta(1))
    acts.record_payment(paid)  # retried
    acts.record_transition(first)  # a late retry of the older transition
    late = DebtRecord(loan_no, DebtUpdate(t0.date(), 1, 1, 1), 1_000_000, 3, 3, t0)
    acts.record_debt(late)  # an older time, whatever its amount
    assert row() == (699_999, t0 + timedelta(1))
    # R-1 again for another amount: not this case's money, nothing written.
    other = PaymentRecord(loan_no, PaymentPosted("R-1", 5, t0), True, 300_006, 1, t0 + timedelta(3))
    assert not acts.record_payment(other)
    assert row() == (699_999, t0 + timedelta(1))
    newer = DebtRecord(
        loan_no, DebtUpdate(t0.date(), 1, 1, 1), 1_000_000, 1_021_000, 721_000, t0 + timedelta(2)
    )
    acts.record_debt(newer)
    assert row() == (721_000, t0 + timedelta(2))
    # A payment taken back (another loan's) comes with the supervisor's task.
    task = TaskRequest(
        "k-1", loan_no, TaskKind.CHECK_CLAIMED_PAYMENT, [], None, "check", NOW, 720_000,
        t0 + timedelta(2, microseconds=1),
    )  # fmt: skip
    acts.create_task(task)
    assert row() == (720_000, t0 + timedelta(2, microseconds=1))


class TwoExecutions:
    """Visibility listing a loan's two executions: the earlier generation, terminated,
    with the OutstandingFen it last published, and the case started again."""

    def __init__(self, loan_no: str, runs: list[tuple[datetime, datetime | None, int | None]]):
        self.loan_no, self.runs = loan_no, runs

    async def list_workflows(self, query: str, **kw: object):  # type: ignore[no-untyped-def]
        from types import SimpleNamespace

        for started, closed, shown in self.runs:
            yield SimpleNamespace(
                id=f"collection-{self.loan_no}",
                search_attributes={"CollectionStage": ["FIELD_VISIT"], "OutstandingFen": [shown]},
                status=SimpleNamespace(name="TERMINATED" if closed else "RUNNING"),
                start_time=started,
                close_time=closed,
            )


async def test_a_case_started_again_lists_no_amount_until_its_first(sessions) -> None:
    """The case row is one per loan. A case started again opens with a time and no amount
    yet: the lists show no amount for it (not the previous generation's), a late payment
    record of that generation is refused, and each execution listed keeps its own amount."""
    from service.portfolio import list_cases

    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    t0 = NOW - timedelta(days=2)
    t1 = t0 + timedelta(hours=3)  # the new generation's start

    def row() -> tuple[int | None, datetime | None]:
        with sessions() as session:
            case = session.scalar(select(Case))
            return case.outstanding_fen, case.outstanding_at

    def aware(t: datetime | None) -> datetime | None:
        return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)

    acts.record_transition(
        transition(loan_no, 1, Stage.FIELD_VISIT, at=t0, generation="g1",
                   outstanding_fen=1_000_000, outstanding_at=t0)
    )  # fmt: skip
    paid = PaymentPosted("R-G1", 300_000, t0 + timedelta(hours=1))
    acts.record_payment(PaymentRecord(loan_no, paid, True, 300_000, 700_000, paid.paid_at))
    assert row()[0] == 700_000
    opened = transition(loan_no, 1, Stage.INVESTIGATION, at=t1, generation="g2", debt_fen=None,
                        outstanding_fen=None, outstanding_at=t1)  # fmt: skip
    acts.record_transition(opened)
    assert row()[0] is None and aware(row()[1]) == t1
    old_run = (t0 - timedelta(minutes=1), t0 + timedelta(hours=2), 1_000_000)

    async def listed(new_shown: int | None) -> list[int | None]:
        runs = TwoExecutions(loan_no, [old_run, (t1 - timedelta(seconds=1), None, new_shown)])
        rows = await list_cases(runs, "-", now=NOW, sessions=sessions)  # type: ignore[arg-type]
        return [r.outstanding_fen for r in rows]

    # The new run has published no amount yet; the terminated one keeps its own attribute.
    assert await listed(None) == [1_000_000, None]
    # A late payment record of the first generation, stamped before the case started again.
    late = PaymentPosted("R-G1-LATE", 100_000, t0 + timedelta(hours=2))
    acts.record_payment(PaymentRecord(loan_no, late, True, 400_000, 600_000, late.paid_at))
    assert row()[0] is None and aware(row()[1]) == t1
    assert await listed(None) == [1_000_000, None]
    # The new generation's first amount: its own row only.
    acts.record_transition(
        transition(loan_no, 2, Stage.INITIAL_CONTACT, at=t1 + timedelta(hours=1), generation="g2",
                   outstanding_fen=1_050_000, outstanding_at=t1 + timedelta(hours=1))
    )  # fmt: skip
    assert await listed(1_050_000) == [1_000_000, 1_050_000]
    paid = PaymentPosted("R-G2", 50_000, t1 + timedelta(hours=2))
    acts.record_payment(PaymentRecord(loan_no, paid, True, 50_000, 1_000_000, paid.paid_at))
    assert await listed(1_050_000) == [1_000_000, 1_000_000]
    paid = PaymentPosted("R-G2-2", 1, t1 + timedelta(hours=3))
    acts.record_payment(PaymentRecord(loan_no, paid, True, 50_001, 999_999, paid.paid_at))
    assert await listed(1_050_000) == [1_000_000, 999_999]
    # The case continues as new after that payment: the new run, which writes no amount at
    # its start and inherited the attribute of the stage's entry, shows the row's amount,
    # as does the run it continued, whose lifetime holds it.
    continued = t1 + timedelta(hours=4)
    g2_runs = [(t1 - timedelta(seconds=1), continued, 1_050_000), (continued, None, 1_050_000)]
    rows = await list_cases(
        TwoExecutions(loan_no, [old_run, *g2_runs]),
        "-",
        now=NOW,
        sessions=sessions,  # type: ignore[arg-type]
    )
    assert [r.outstanding_fen for r in rows] == [1_000_000, 999_999, 999_999]


def test_insert_ignore_says_whether_it_inserted(sessions) -> None:
    """The sign every "first time only" effect hangs on (an inbound SMS processed, a payment
    signalled, a borrower marked hostile, a wording review audited), on both databases:
    psycopg's rowcount is -1 for these INSERTs, which once read as "inserted" every time."""
    from db.models import Loan
    from db.repository import insert_ignore

    values = dict(reference="REF-II", loan_id=None, amount_fen=100, paid_at=NOW,
                  source="test", recorded_at=NOW)  # fmt: skip
    loan_no = new_loan(sessions)
    with sessions.begin() as session:
        values["loan_id"] = session.scalar(select(Loan.id).where(Loan.loan_no == loan_no))
        assert insert_ignore(session, Payment, values, ["reference"]) is True
        assert insert_ignore(session, Payment, values, ["reference"]) is False
    with sessions.begin() as session:
        assert insert_ignore(session, Payment, values, ["reference"]) is False
    assert count(sessions, Payment) == 1


def test_a_promise_or_waiver_row_only_moves_forward(sessions) -> None:
    """Two record activities racing: the older status, written last, does not undo the
    newer (a kept promise is not OPEN again, an expired request not PENDING again)."""
    from dataclasses import replace

    from db.models import PromiseToPay, WaiverRequest
    from domain.models import Promise, PromiseRecord, Waiver, WaiverRecord

    loan_no = new_loan(sessions)
    acts = CaseActivities(sessions)
    acts.record_transition(transition(loan_no, 1, Stage.FIELD_VISIT))
    made = Promise(1, 300_000, NOW.date(), "CALL", "QX01-C01", NOW, 0)
    kept = replace(made, status="KEPT", resolved_at=NOW, paid_fen=300_000)
    acts.record_promise(PromiseRecord(loan_no, "k-p1", "", kept))
    acts.record_promise(PromiseRecord(loan_no, "k-p1", "", made))  # the older write, late
    asked = Waiver(1, "WAIVER", 0, 50_000, 0, "SUPERVISOR", "QX01-C01", NOW, NOW, "flood")
    expired = replace(asked, status="EXPIRED", decided_at=NOW)
    acts.record_waiver(WaiverRecord(loan_no, "k-w1", "", expired))
    acts.record_waiver(WaiverRecord(loan_no, "k-w1", "", asked))
    with sessions() as session:
        assert session.scalars(select(PromiseToPay.status)).all() == ["KEPT"]
        assert session.scalars(select(WaiverRequest.status)).all() == ["EXPIRED"]


def test_an_acknowledged_alert_leaves_the_urgent_banner_even_if_acknowledged_while_sent(
    sessions,
) -> None:
    """Issue 15 review, weak signal item 4: the dashboard's urgent banner (an alert nobody
    was texted about) clears when the alert is acknowledged, however old it is; an alert
    acknowledged while its task was still being made ends closed too."""
    from activities.safety import SafetyActivities
    from db.models import Task
    from domain.models import AlertRequest, SafetyAudit
    from service.portfolio import urgent_alerts

    loan_no = new_loan(sessions)
    safety = SafetyActivities(sessions, SmsActivities(sessions, CountingGateway()))
    long_ago = NOW - timedelta(days=3)  # nobody has answered it for days: still shown

    def alert(number: int, level: str) -> AlertRequest:
        key = f"{loan_no}:g1:alert:{number}:{level}"
        ack = f"{loan_no}:g1:safety:0:ack:{number}"
        return AlertRequest(key, loan_no, "QX01", number, "HELP", level, "被围堵", long_ago,
                            ["QX01-C01"], ack_key=ack)  # fmt: skip

    def acknowledge(number: int) -> None:
        safety.record_safety(
            SafetyAudit(
                f"{loan_no}:g1:safety:0:ack:{number}",
                loan_no,
                "alert_acknowledged",
                "sup",
                f"alert {number} acknowledged",
                NOW,
                closes=f"{loan_no}:g1:alert:{number}:",
            )
        )

    for level in ("SUPERVISOR", "BRANCH_HEAD"):  # no staff with a mobile: nobody texted
        assert safety.raise_safety_alert(alert(1, level)).texts == 0
    assert [a.loan_no for a in urgent_alerts(sessions, ("QX01",))] == [loan_no]
    acknowledge(1)
    assert urgent_alerts(sessions, ("QX01",)) == []

    acknowledge(2)  # while alert 2's texts were being sent
    safety.raise_safety_alert(alert(2, "BRANCH_HEAD"))
    assert urgent_alerts(sessions, ("QX01",)) == []
    with sessions() as session:
        statuses = session.scalars(select(Task.status).where(Task.kind == "SAFETY_ALERT"))
        assert sorted(statuses) == ["DONE", "DONE", "DONE"]
