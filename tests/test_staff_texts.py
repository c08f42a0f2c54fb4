"""Staff texts (activities/sms.py `send_staff`: safety alerts, the daily training reminder)
go out once per outbox key however many attempts try at once: an attempt claims the row in
the transaction that checks it and only the claimant calls the provider; a claim whose
attempt died is taken over only after the provider's lookup says nothing went out. The
lookup carries the key (Aliyun and Tencent find a message by it) and the text the earlier
attempt handed over (Twilio matches the body), so the outbox holds the text delivered."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.sms import SmsActivities
from activities.sms_gateway import GatewayResult, PermanentSmsFailure
from activities.training_reminders import TrainingReminderActivities
from db.models import SmsOutbox
from domain.policy import Policy
from domain.training import ALREADY_SENT, FAILED, SENT, DueReminder
from service.users import Role, create_user

MOBILE = "+8613800000001"


class SlowGateway:
    """A provider that answers in `delay` seconds; what it was asked, in order."""

    name = "slow"

    def __init__(self, delay: float = 0.0, found: str | None = None) -> None:
        self.delay = delay
        self.found = found
        self.sent: list[tuple[str, str]] = []  # (key, body)
        self.lookups: list[dict[str, object]] = []
        self.fail_with: Exception | None = None
        self.lock = threading.Lock()

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        time.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            self.sent.append((key, body))
            return GatewayResult("SENT", f"sid-{len(self.sent)}")

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        self.lookups.append(dict(to=to, body=body, **kw))
        return self.found


def supervisor(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        user = create_user(
            session, "sup1", "pw-123456789", Role.SUPERVISOR, branches=["QX01"],
            mobile="13800000001",
        )  # fmt: skip
        session.flush()
        return user.id


def reminder(user_id: int, first: str = "QX01-C01") -> DueReminder:
    day = datetime.now(UTC).date() + timedelta(days=30)
    return DueReminder(
        user_id, f"training-reminder:{day}:u{user_id}", ["QX01"], "QX01",
        dict(count="2", first=first),
    )  # fmt: skip


def outbox(sessions: sessionmaker[Session]) -> list[SmsOutbox]:
    with sessions() as session:
        return list(session.scalars(select(SmsOutbox).order_by(SmsOutbox.id)))


def test_two_runs_at_once_text_a_supervisor_once(sessions: sessionmaker[Session]) -> None:
    """Two reminder runs at once (two Schedules, or a trigger while the Schedule fires): the
    supervisor is texted once; the second attempt stands back and is retried later."""
    user_id = supervisor(sessions)
    gateway = SlowGateway(delay=0.5)
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(acts.send_training_reminder(reminder(user_id)).outcome)
        except ApplicationError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gateway.sent) == 1, gateway.sent
    assert SENT in outcomes
    (held,) = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert held.type == "SmsClaimedElsewhere" and not held.non_retryable
    assert held.next_retry_delay is not None and held.next_retry_delay > timedelta(0)
    (row,) = outbox(sessions)
    assert (row.status, row.provider_sid, row.claim_token) == ("SENT", "sid-1", None)
    # Its retry finds the text sent.
    assert acts.send_training_reminder(reminder(user_id)).outcome == ALREADY_SENT
    assert len(gateway.sent) == 1


def claimed_earlier(
    sessions: sessionmaker[Session], key: str, until: datetime, body: str = "the earlier text"
) -> None:
    """An attempt claimed `key` and called the provider, and its worker died."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            SmsOutbox(
                key=key, case_id=None, borrower_id=None, purpose="staff_training",
                to_number=MOBILE, body=body, segments=1, status="PENDING", reason="",
                created_at=now - timedelta(minutes=5), attempted_at=now - timedelta(minutes=5),
                claim_token="x" * 32, claim_until=until,
            )
        )  # fmt: skip


def test_a_claim_still_held_is_not_sent_again(sessions: sessionmaker[Session]) -> None:
    user_id = supervisor(sessions)
    gateway = SlowGateway()
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    claimed_earlier(sessions, reminder(user_id).key, datetime.now(UTC) + timedelta(seconds=30))
    with pytest.raises(ApplicationError) as held:
        acts.send_training_reminder(reminder(user_id))
    assert held.value.type == "SmsClaimedElsewhere"
    assert gateway.sent == [] and gateway.lookups == []


def test_a_lapsed_claim_is_taken_over_after_the_lookup_by_key_and_earlier_text(
    sessions: sessionmaker[Session],
) -> None:
    """The earlier attempt's text went out: the lookup finds it by our key and the text that
    attempt handed over (not today's, which differs), nothing is sent again, and the outbox
    keeps the text delivered."""
    user_id = supervisor(sessions)
    gateway = SlowGateway(found="outid:earlier")
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    due = reminder(user_id, first="QX01-C03")  # the database changed since
    claimed_earlier(sessions, due.key, datetime.now(UTC) - timedelta(seconds=1))
    assert acts.send_training_reminder(due).outcome == SENT
    (lookup,) = gateway.lookups
    assert lookup["key"] == due.key and lookup["body"] == "the earlier text"
    assert gateway.sent == []
    (row,) = outbox(sessions)
    assert (row.status, row.provider_sid, row.body) == ("SENT", "outid:earlier", "the earlier text")


def test_a_lapsed_claim_the_provider_never_got_is_sent_with_its_text_kept(
    sessions: sessionmaker[Session],
) -> None:
    user_id = supervisor(sessions)
    gateway = SlowGateway(found=None)
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    due = reminder(user_id, first="QX01-C03")
    claimed_earlier(sessions, due.key, datetime.now(UTC) - timedelta(seconds=1))
    assert acts.send_training_reminder(due).outcome == SENT
    assert len(gateway.lookups) == 1
    ((key, body),) = gateway.sent
    assert key == due.key and "QX01-C03" in body
    (row,) = outbox(sessions)
    assert (row.status, row.body) == ("SENT", body)  # the text that went, not the earlier one


def test_a_refused_attempt_gives_its_claim_up_and_masks_the_number(
    sessions: sessionmaker[Session],
) -> None:
    """A provider's refusal (nothing went out): the error Temporal keeps names no full number,
    and the retry need not wait for the claim to lapse."""
    user_id = supervisor(sessions)
    gateway = SlowGateway()
    gateway.fail_with = ApplicationError(f"429 too many requests to {MOBILE}", type="HTTP429")
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    with pytest.raises(ApplicationError) as refused:
        acts.send_training_reminder(reminder(user_id))
    assert "13800000001" not in refused.value.message and refused.value.type == "HTTP429"
    (row,) = outbox(sessions)
    assert row.status == "PENDING" and row.claim_token is None and row.attempted_at is None
    assert "13800000001" not in row.reason
    gateway.fail_with = None
    assert acts.send_training_reminder(reminder(user_id)).outcome == SENT
    assert gateway.lookups == []  # nothing went out before: no lookup needed
    assert len(gateway.sent) == 1


def test_a_failed_reminder_is_logged_as_a_warning(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    user_id = supervisor(sessions)
    gateway = SlowGateway()
    gateway.fail_with = PermanentSmsFailure(21211, f"The 'To' number {MOBILE} is not valid")
    acts = TrainingReminderActivities(sessions, SmsActivities(sessions, gateway), Policy())
    with caplog.at_level(logging.INFO):
        assert acts.send_training_reminder(reminder(user_id)).outcome == FAILED
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("training reminder" in w and "FAILED" in w for w in warnings), warnings
    assert "13800000001" not in caplog.text
    (row,) = outbox(sessions)
    assert row.status == "FAILED" and row.claim_token is None


def test_an_alert_to_two_supervisors_keeps_one_deadline_for_both(
    sessions: sessionmaker[Session],
) -> None:
    """The alert's activity texts each supervisor in turn: once its attempt's time is spent
    (here the first provider call took it), no further text goes out, since Temporal's retry
    may be sending it by then. The retry texts the second, not the first again."""
    import dataclasses

    from temporalio.testing import ActivityEnvironment

    from activities.safety import SafetyActivities
    from domain.models import AlertRequest
    from domain.stages import AlertLevel
    from tests.test_activities import new_loan

    loan_no = new_loan(sessions)
    with sessions.begin() as session:
        for n in (1, 2):
            create_user(
                session, f"sup{n}", "pw-123456789", Role.SUPERVISOR, branches=["QX01"],
                mobile=f"1380000000{n}",
            )  # fmt: skip
    gateway = SlowGateway(delay=2.2)
    acts = SafetyActivities(sessions, SmsActivities(sessions, gateway))
    request = AlertRequest(
        "alert:1", loan_no, "QX01", 1, "HELP", AlertLevel.SUPERVISOR.value, "help",
        datetime.now(UTC), ["QX01-C01"],
    )  # fmt: skip
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=3))
    with pytest.raises(ApplicationError) as out_of_time:
        env.run(acts.raise_safety_alert, request)
    assert out_of_time.value.type == "SmsAttemptOutOfTime"
    assert len(gateway.sent) == 1  # the second supervisor's text did not go out late
    gateway.delay = 0
    assert env.run(acts.raise_safety_alert, request).texts == 2
    assert len(gateway.sent) == 2 and len({k for k, _ in gateway.sent}) == 2
