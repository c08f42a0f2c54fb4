"""README: "contact caps (2 SMS a day, 5 a week per borrower) make an SMS wait" — the weekly
cap, and both caps shared by the loans of one borrower (issue 13, item 19).

The send activity is driven with its clock moved back day by day (each test on SQLite and
PostgreSQL); then real cases on the time-skipping server show that a case waits for a cap
that another case of the same borrower filled, and for its own weekly cap. Days are the
borrower's local calendar days, counted from now: no calendar date is written here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import activities.sms as sms_module
from activities.sms import SmsActivities
from db.models import Case, Loan, SmsOutbox
from domain.policy import Policy
from tests.harness import Harness, running_worker
from tests.test_activities import CountingGateway, new_loan, sms
from tests.test_workflow_paths import DEBT, propose, visit

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The default caps (2 a day, 5 a week); quiet hours off, so that only the caps decide.
CAPS = Policy().with_overrides({"quiet_start": "00:00", "quiet_end": "00:00"})


def local_noon(days_from_today: int) -> datetime:
    """Noon in the borrower's time zone, `days_from_today` local days from today."""
    today = datetime.now(SHANGHAI).date()
    return datetime.combine(today + timedelta(days=days_from_today), time(12), tzinfo=SHANGHAI)


def local_midnight(moment: datetime, days_later: int) -> datetime:
    day = moment.astimezone(SHANGHAI).date() + timedelta(days=days_later)
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


class Sender:
    """The send activity with a clock the test sets."""

    def __init__(self, sessions, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        self.gateway = CountingGateway()
        self.acts = SmsActivities(sessions, self.gateway)
        self.now = datetime.now(UTC)
        monkeypatch.setattr(sms_module, "activity_now", lambda: self.now)
        self.n = 0

    def send(self, loan_no: str, at: datetime, policy: Policy = CAPS):  # type: ignore[no-untyped-def]
        self.now, self.n = at.astimezone(UTC), self.n + 1
        return self.acts.send_sms(sms(loan_no, f"{loan_no}:cap:{self.n}", policy))


def test_assumptions() -> None:
    assert (CAPS.sms_per_day, CAPS.sms_per_week) == (2, 5)  # README's figures


def test_the_weekly_cap_holds_the_sixth_message_until_the_oldest_day_leaves_the_week(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Sender(sessions, monkeypatch)
    loan = new_loan(sessions)
    for day in range(-5, 0):  # one a day on each of the last five days: under the daily cap
        assert s.send(loan, local_noon(day)).status == "SENT", day
    now = local_noon(0)
    held = s.send(loan, now)
    assert (held.status, held.reason) == ("DEFERRED", "contact cap reached")
    # The oldest (five days ago) leaves the seven-day window in two days: not tomorrow,
    # which is when the daily cap alone would let it go.
    assert held.not_before == local_midnight(now, 2)
    assert len(s.gateway.sent) == 5
    # At that moment it goes.
    assert s.send(loan, local_midnight(now, 2) + timedelta(minutes=1)).status == "SENT"


def test_the_loans_of_one_borrower_share_the_weekly_cap(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Sender(sessions, monkeypatch)
    id_number = "522401198001017777"
    first, second = new_loan(sessions, id_number=id_number), new_loan(sessions, id_number=id_number)
    stranger = new_loan(sessions)  # another borrower
    for day in range(-5, 0):  # five this week, alternating between the borrower's two loans
        assert s.send(first if day % 2 else second, local_noon(day)).status == "SENT"
    now = local_noon(0)
    for loan in (first, second):
        held = s.send(loan, now)
        assert (held.status, held.reason) == ("DEFERRED", "contact cap reached"), loan
        assert held.not_before == local_midnight(now, 2)
    assert s.send(stranger, now).status == "SENT"  # the cap is the borrower's, nobody else's
    with sessions() as session:
        sent = session.scalars(
            select(Loan.loan_no)
            .join(Case, Case.loan_id == Loan.id)
            .join(SmsOutbox, SmsOutbox.case_id == Case.id)
            .where(SmsOutbox.status == "SENT")
        ).all()
    assert sorted(sent) == sorted([first] * 3 + [second] * 2 + [stranger])


def test_the_loans_of_one_borrower_share_the_daily_cap(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Sender(sessions, monkeypatch)
    id_number = "522401198001018888"
    first, second = new_loan(sessions, id_number=id_number), new_loan(sessions, id_number=id_number)
    stranger = new_loan(sessions)
    morning = local_noon(0) - timedelta(hours=3)
    assert s.send(first, morning).status == "SENT"
    assert s.send(second, morning + timedelta(hours=1)).status == "SENT"
    held = s.send(first, morning + timedelta(hours=2))  # the third today, on either loan
    assert (held.status, held.reason) == ("DEFERRED", "contact cap reached")
    assert held.not_before == local_midnight(morning, 1)
    assert s.send(stranger, morning + timedelta(hours=2)).status == "SENT"
    assert len(s.gateway.sent) == 3


# ---------------------------------------------------------------- real cases


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("waits for local calendar days: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        # Local days decide the caps: start well before midnight (the server's clock runs on
        # from earlier tests), so that nothing here crosses into a new day unplanned.
        local = (await harness.now()).astimezone(SHANGHAI)
        if local.hour >= 18:
            morning = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0)
            await harness.env.sleep(morning - local)
        yield harness


async def close(h: Harness, *handles) -> None:  # type: ignore[no-untyped-def]
    from domain.models import CloseRequest
    from workflows.collection import LoanCollectionWorkflow as WF

    for handle in handles:
        await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
        await handle.result()


def outbox(h: Harness, loan_no: str) -> list[SmsOutbox]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(SmsOutbox)
                .join(Case, Case.id == SmsOutbox.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no)
                .order_by(SmsOutbox.id)
            )
        )


@pytest.mark.parametrize(
    ("caps", "days_later"),
    [({"sms_per_day": 1}, 1), ({"sms_per_day": 20, "sms_per_week": 1}, 7)],
    ids=["daily", "weekly"],
)
async def test_a_borrowers_second_case_waits_for_the_cap_the_first_case_filled(
    h: Harness, caps: dict[str, int], days_later: int
) -> None:
    policy = h.policy.with_overrides(caps)
    id_number = "522401198001019001"
    # The first case sends its notice and then waits a month: it sends nothing else here.
    quiet_first = policy.with_overrides({"contact_wait_seconds": 30 * 86400})
    first_spec, first = await h.start(quiet_first, id_number=id_number)
    await h.until(first, lambda s: s.counters.sms_sent == 1, "the first case's notice")
    sent_at = outbox(h, first_spec.loan_no)[0].sent_at
    spec, second = await h.start(policy, id_number=id_number)
    # The second case knows nothing of the first one's message: the send activity does.
    status = await h.until(
        second, lambda s: s.next_action == "send first_notice SMS", "the notice deferred"
    )
    release = local_midnight(sent_at, days_later)
    assert status.next_action_at == release
    assert status.counters.sms_sent == 0
    assert [(m.status, m.reason) for m in outbox(h, spec.loan_no)] == [
        ("DEFERRED", "contact cap reached")
    ]
    await h.env.sleep(release - await h.now() - timedelta(minutes=5))
    assert (await h.status(second)).counters.sms_sent == 0
    await h.env.sleep(timedelta(minutes=10))
    await h.until(second, lambda s: s.counters.sms_sent == 1, "the notice at the release")
    row = outbox(h, spec.loan_no)[0]
    assert row.status == "RECORDED" and release <= row.sent_at < release + timedelta(minutes=10)
    await close(h, first, second)


async def test_a_cases_own_messages_fill_its_weekly_cap(h: Harness) -> None:
    policy = h.policy.with_overrides(
        {"sms_per_day": 20, "sms_per_week": 2, "contact_wait_seconds": 3600}
    )
    spec, handle = await h.start(policy)
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    await h.env.sleep(timedelta(hours=1, minutes=1))
    await h.at_stage(handle, "FIELD_VISIT")  # with the visit notice: two this week
    await h.until(handle, lambda s: s.counters.sms_sent == 2, "visit notice")
    first_sent = outbox(h, spec.loan_no)[0].sent_at
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT)
    status = await h.until(
        handle, lambda s: s.next_action == "send agreement_ready SMS", "the third deferred"
    )
    assert status.next_action_at == local_midnight(first_sent, 7)
    assert status.counters.sms_sent == 2
    await close(h, handle)


async def test_a_signature_taken_while_the_agreement_sms_waits_for_the_cap_moves_the_case_on(
    h: Harness,
) -> None:
    from domain.models import SignatureConfirmation
    from workflows.collection import LoanCollectionWorkflow as WF

    policy = h.policy.with_overrides(
        {"sms_per_day": 20, "sms_per_week": 2, "contact_wait_seconds": 3600}
    )
    spec, handle = await h.start(policy)
    try:
        await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
        await h.env.sleep(timedelta(hours=1, minutes=1))
        await h.at_stage(handle, "FIELD_VISIT")
        await h.until(handle, lambda s: s.counters.sms_sent == 2, "visit notice")
        await visit(h, handle, "MET")
        await h.at_stage(handle, "NEGOTIATION")
        await propose(h, handle, DEBT)
        status = await h.until(
            handle, lambda s: s.next_action == "send agreement_ready SMS", "the SMS deferred"
        )
        # The collector brings the paper signed anyway (the agreement is on the case page).
        await handle.execute_update(
            WF.confirm_signature,
            SignatureConfirmation(
                status.agreement.version,
                status.agreement.sha256,
                status.collectors[0],
                await h.now(),
                "村委会",
            ),
        )
        await h.env.sleep(timedelta(hours=1))
        assert (await h.status(handle)).stage == "FOLLOW_UP"
    finally:
        await close(h, handle)
