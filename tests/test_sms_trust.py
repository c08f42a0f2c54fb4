"""What the SMS path promises under concurrency, failures and privacy (issue 13, "Trust"):
the per-borrower cap across loans, no delivery in quiet hours, delivery receipts kept, and
no full phone number stored from a provider's error. Each on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment
from twilio.request_validator import RequestValidator

import activities.sms as sms_module
from activities.sms import SmsActivities
from activities.sms_gateway import GatewayResult
from db.models import ContactAttempt, SmsOutbox
from domain.models import DeliveryFailure
from domain.policy import Policy
from tests import test_twilio
from tests.harness import OPEN_POLICY
from tests.test_activities import NOW, CountingGateway, new_loan, sms
from tests.test_twilio import CREATED, TwilioLike, gateway, twilio_error
from webapp.twilio_webhooks import WebhookConfig, twilio_router

prism, twilio_like = test_twilio.prism, test_twilio.twilio_like  # their fixtures, shared

# ---------------------------------------------------------------- the cap across loans


class HeldGateway:
    """Accepts every message, but holds each answer until the test lets it go: a message in
    flight at the provider, its outbox row still PENDING."""

    name = "held"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        with self.lock:
            self.sent.append(key)
            n = len(self.sent)
        self.release.wait(30)  # bounded only so that a failed test cannot hang
        return GatewayResult("SENT", f"SM{n:032d}")

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        return None


def quiet_now():  # type: ignore[no-untyped-def]
    """A policy whose quiet hours are now (in the borrower's time zone)."""
    # The real clock (the activity's), not the module's NOW: a long run imports it minutes earlier.
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    return OPEN_POLICY.with_overrides(
        {"quiet_start": f"{start:%H:%M}", "quiet_end": f"{end:%H:%M}"}
    )


def test_two_loans_of_one_borrower_released_together_send_one_message_at_the_cap(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cases of one borrower, both deferred by quiet hours, are released at the same
    moment with one message left under the cap: exactly one goes out, the other waits.

    Each send, at the moment it counts the borrower's messages, waits (briefly) for the
    other to reach the same point: without a per-borrower lock both count before either
    writes, and both would send. With the lock the second cannot count until the first
    committed its PENDING row, which counts.
    """
    gateway = HeldGateway()
    acts = SmsActivities(sessions, gateway)
    a = new_loan(sessions, id_number="522401198001019990")
    b = new_loan(sessions, id_number="522401198001019990")  # the same borrower
    # Both cases' messages were written and deferred by quiet hours (their rows exist).
    for loan_no, key in ((a, "a:1"), (b, "b:1")):
        assert acts.send_sms(sms(loan_no, key, quiet_now())).status == "DEFERRED"

    counting = threading.Barrier(2)
    real_cap_release = sms_module.cap_release

    def cap_release_meeting_the_other(*args, **kw):  # type: ignore[no-untyped-def]
        try:
            counting.wait(timeout=3)  # the other send, if it can get here meanwhile
        except threading.BrokenBarrierError:
            pass
        return real_cap_release(*args, **kw)

    monkeypatch.setattr(sms_module, "cap_release", cap_release_meeting_the_other)
    one_a_day = OPEN_POLICY.with_overrides({"sms_per_day": 1})
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(acts.send_sms, sms(n, k, one_a_day)) for n, k in ((a, "a:1"), (b, "b:1"))
        ]
        # The one that must wait answers while the other is still in flight at the provider.
        done, _ = wait(futures, timeout=15, return_when=FIRST_COMPLETED)
        gateway.release.set()
        results = sorted((f.result(timeout=60) for f in futures), key=lambda r: r.status)
    assert [r.status for r in results] == ["DEFERRED", "SENT"], results
    deferred = results[0]
    assert deferred.reason == "contact cap reached" and deferred.not_before > NOW
    assert len(gateway.sent) == 1 and done and next(iter(done)).result().status == "DEFERRED"
    with sessions() as session:
        rows = {r.key: r.status for r in session.scalars(select(SmsOutbox))}
    assert sorted(rows.values()) == ["DEFERRED", "SENT"]


# ---------------------------------------------------------------- no delivery in quiet hours


def policy_quiet_from(hours: float):  # type: ignore[no-untyped-def]
    """Contact allowed now; quiet hours start `hours` from now (local), for an hour."""
    # The real clock (the activity's), not the module's NOW: a long run imports it minutes earlier.
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    start, end = local + timedelta(hours=hours), local + timedelta(hours=hours + 1)
    return OPEN_POLICY.with_overrides(
        {"quiet_start": f"{start:%H:%M}", "quiet_end": f"{end:%H:%M}"}
    )


def validity_periods() -> list[int]:
    return [int(dict(parse_qsl(s["body"]))["ValidityPeriod"]) for s in TwilioLike.seen if s["body"]]


def test_a_message_queued_at_twilio_expires_when_quiet_hours_begin(
    twilio_like: str, sessions
) -> None:
    """Twilio's ValidityPeriod on every message: the seconds until quiet hours start in the
    borrower's time, at most Twilio's 36,000 (10 h); with no quiet hours, the maximum."""
    acts = SmsActivities(sessions, gateway(twilio_like))
    loan_no = new_loan(sessions)
    assert acts.send_sms(sms(loan_no, "v1", policy_quiet_from(2))).status == "SENT"
    (two_hours,) = validity_periods()
    assert 2 * 3600 - 600 <= two_hours <= 2 * 3600, two_hours  # the minute started counts
    assert acts.send_sms(sms(loan_no, "v2", policy_quiet_from(11))).status == "SENT"
    # No quiet hours. Another text: Twilio's China route takes no third identical one in 24 h.
    assert acts.send_sms(sms(loan_no, "v3", OPEN_POLICY, purpose="visit_notice")).status == "SENT"
    assert validity_periods()[1:] == [36000, 36000]


def test_twilios_contract_accepts_the_validity_period(prism: str) -> None:
    sent = gateway(prism).send(
        "+8613912345678", "测试", "k1", deliver_by=datetime.now(UTC) + timedelta(hours=2)
    )
    assert sent.status == "SENT"


def test_the_http_timeout_leaves_margin_inside_the_attempt_timeout() -> None:
    """The worker's gateway (10 s) against the policy's attempt (30 s)."""
    from activities.sms import ATTEMPT_MARGIN_S

    worker_default = gateway("http://127.0.0.1:9").http.timeout
    assert worker_default + ATTEMPT_MARGIN_S <= Policy().sms_attempt_timeout_s


def test_a_send_attempt_ends_before_its_activity_timeout(twilio_like: str, sessions) -> None:
    """Twilio takes the message and never answers: the attempt gives up inside its own
    start-to-close timeout (3 s here, against the gateway's 10 s), so that Temporal's retry
    never runs beside it; the row stays PENDING and attempted, and the retry asks first."""
    held = threading.Event()
    TwilioLike.script = [(*CREATED, held)]
    acts = SmsActivities(sessions, gateway(twilio_like))  # the worker's 10 s HTTP timeout
    loan_no = new_loan(sessions)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=3))
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="(?i)timed? ?out"):
            env.run(acts.send_sms, sms(loan_no, "slow1"))
        took = time.monotonic() - started
    finally:
        held.set()
    assert took < 3, f"the attempt ran {took:.1f} s, past its 3 s timeout"
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "PENDING" and row.attempted_at is not None
    assert acts.send_sms(sms(loan_no, "slow1")).status == "SENT"  # found at Twilio
    assert len(TwilioLike.created) == 1


# ---------------------------------------------------------------- no full number stored

FULL = "8613812345678"  # +86 138 1234 5678, as Twilio's error texts spell a number


def test_a_twilio_error_naming_the_number_is_stored_masked(twilio_like: str, sessions) -> None:
    TwilioLike.script = [
        twilio_error(21211, 400, f"The 'To' number +{FULL} is not a valid phone number.")
    ]
    loan_no = new_loan(sessions, phone="+" + FULL)
    result = SmsActivities(sessions, gateway(twilio_like)).send_sms(sms(loan_no, "m1"))
    assert (result.status, result.error_code) == ("FAILED", 21211)
    with sessions() as session:
        reason = session.scalar(select(SmsOutbox.reason))
        detail = session.scalar(select(ContactAttempt.detail))
    for text in (result.reason, reason, detail):
        assert FULL[2:] not in text and "+86138****5678" in text, text
        assert "21211" in text


class FailsNamingTheNumber:
    """A transport error whose text carries the number (a URL with To=…, say)."""

    name = "fails"

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        raise ConnectionError(f"connection reset while sending To={to}")

    def find_sent(self, to: str, body: str, since: object, **kw: object) -> str | None:
        return None


def test_a_retried_error_naming_the_number_is_stored_masked(sessions) -> None:
    loan_no = new_loan(sessions, phone="+" + FULL)
    with pytest.raises(Exception, match="connection reset") as raised:
        SmsActivities(sessions, FailsNamingTheNumber()).send_sms(sms(loan_no, "m2"))
    with sessions() as session:
        reason = session.scalar(select(SmsOutbox.reason))
    assert reason.startswith("will retry") and FULL[2:] not in reason and "****" in reason
    # What Temporal keeps of the failed attempt (its history, the web UI) is masked too.
    assert FULL[2:] not in str(raised.value) and raised.value.__cause__ is None


# ---------------------------------------------------------------- delivery receipts kept

TOKEN = "0" * 32


class FlakyTemporal:
    """Temporal as the webhooks see it: each signal recorded; the first `failures` fail."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.signals: list[tuple[str, str, object]] = []

    def get_workflow_handle(self, workflow_id: str) -> FlakyTemporal.Handle:
        return FlakyTemporal.Handle(self, workflow_id)

    @dataclasses.dataclass
    class Handle:
        temporal: FlakyTemporal
        workflow_id: str

        async def signal(self, name: str, arg: object) -> None:
            if self.temporal.failures:
                self.temporal.failures -= 1
                raise RuntimeError("Temporal unreachable")
            self.temporal.signals.append((self.workflow_id, name, arg))


def webhooks(sessions, temporal: FlakyTemporal) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    async def client():  # type: ignore[no-untyped-def]
        return temporal

    app = FastAPI()
    app.include_router(twilio_router(sessions, client, WebhookConfig(TOKEN)))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def receipt(http: httpx.AsyncClient, sid: str, status: str, error: str = "") -> int:
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
    if error:
        params["ErrorCode"] = error
    url = "http://testserver/twilio/status"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    answer = await http.post(url, data=params, headers={"X-Twilio-Signature": signature})
    return answer.status_code


async def test_a_receipt_whose_signal_failed_is_processed_when_twilio_retries(sessions) -> None:
    loan_no = new_loan(sessions)
    sent = SmsActivities(sessions, CountingGateway()).send_sms(sms(loan_no, "d1"))
    with sessions() as session:
        sid = session.scalar(select(SmsOutbox.provider_sid))
    assert sent.status == "SENT" and sid
    temporal = FlakyTemporal(failures=1)
    async with webhooks(sessions, temporal) as http:
        assert await receipt(http, sid, "undelivered", "30005") == 503  # Twilio tries again
        assert temporal.signals == []
        assert await receipt(http, sid, "undelivered", "30005") == 204  # Twilio's retry
        assert await receipt(http, sid, "undelivered", "30005") == 204  # once more: done
    failure = DeliveryFailure(sid, "undelivered", "30005", number_unusable=True)
    assert temporal.signals == [(f"collection-{loan_no}", "sms_delivery_failed", failure)]


async def test_a_receipt_before_the_message_sid_is_stored_is_kept_and_applied(sessions) -> None:
    """Twilio's callback can overtake our commit of the Message SID it answered with: the
    receipt is kept and applied when the send activity stores that SID, and a failure goes
    back to the case in the activity's result."""
    loan_no = new_loan(sessions)
    gateway = CountingGateway()
    sid = f"SM{1:032d}"  # the SID the gateway will answer with
    temporal = FlakyTemporal()
    async with webhooks(sessions, temporal) as http:
        assert await receipt(http, sid, "sent") == 204
        assert await receipt(http, sid, "undelivered", "30005") == 204
        assert await receipt(http, sid, "undelivered", "30005") == 204  # Twilio's retry
    assert temporal.signals == []  # no message has this SID yet
    result = SmsActivities(sessions, gateway).send_sms(sms(loan_no, "d2"))
    failure = DeliveryFailure(sid, "undelivered", "30005", number_unusable=True)
    assert result.status == "SENT" and result.delivery_failure == failure
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert (row.provider_sid, row.delivery_status, row.delivery_error) == (
            sid,
            "undelivered",
            "30005",
        )
    again = SmsActivities(sessions, gateway).send_sms(sms(loan_no, "d2"))  # a retry
    assert again.delivery_failure == failure and len(gateway.sent) == 1
