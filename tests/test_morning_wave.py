"""The 08:00 wave (issue 17): the provider's rate as the sms task queue's (SMS_RATE_PER_SECOND),
the most overdue borrowers' texts first when sends wait in a backlog (Temporal's task priority,
on the dev server), a 429 retried without a second message, and no send once the contact
window has closed, even one scheduled inside it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import PendingActivityState

import activities.sms as sms_module
import worker as worker_module
from activities.sms import SmsActivities
from activities.sms_gateway import GatewayResult, RecordingGateway
from bench.morning import _figures, band_order, wave_policy
from bench.sms_provider import Accepted, ProviderState, rate_limited_provider
from db.models import ContactAttempt, SmsOutbox
from domain.case_rules import INTERACTIVE_PRIORITY, sms_priority
from domain.names import SMS
from domain.policy import Policy
from domain.timerules import in_quiet_hours
from service.settings import Settings, parse_rate
from service.worker_factory import build_worker
from tests.harness import OPEN_POLICY, Harness, eventually, running_worker
from tests.test_activities import new_loan, sms
from tests.test_twilio import gateway


def test_the_priority_bands() -> None:
    assert [sms_priority(d) for d in (None, 0, 29, 30, 59, 60, 89, 90, 400)] == [
        5, 5, 5, 4, 4, 3, 3, 2, 2,
    ]  # fmt: skip
    assert INTERACTIVE_PRIORITY < min(sms_priority(d) for d in (None, 400))  # a person first


def test_the_rate_setting() -> None:
    assert parse_rate("") is None and Settings().sms_rate_per_second is None  # no limit
    assert parse_rate(" 50 ") == 50.0 and parse_rate("0.5") == 0.5
    for bad in ("0", "-3", "fast", "inf", "nan"):
        with pytest.raises(ValueError, match="SMS_RATE_PER_SECOND"):
            parse_rate(bad)


@pytest.mark.parametrize("rate", ["25", ""])
async def test_the_rate_reaches_the_sms_worker_as_the_task_queues_limit(
    env, sqlite_sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: str
) -> None:
    """worker.py gives SMS_RATE_PER_SECOND to the sms role's Temporal Worker as the task
    queue's rate (the server's, for every sms worker together); unset: no limit, as before."""
    monkeypatch.setenv("SMS_RATE_PER_SECOND", rate)
    monkeypatch.setenv("WORKER_ROLES", "sms")
    for name in ("TWILIO_ACCOUNT_SID", "SMS_PROVIDER_CN", "SMS_PROVIDER_INTL"):
        monkeypatch.delenv(name, raising=False)
    built = []

    def capture(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        built.append(build_worker(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(worker_module, "build_worker", capture)
    stop = asyncio.Event()
    stop.set()  # the workers start and stop at once
    settings = Settings.from_env()
    await worker_module._run_roles(settings, env.client, sqlite_sessions, stop, None)
    (workers,) = built
    assert list(workers.workers) == [SMS]
    config = workers.workers[SMS].config()
    expected = float(rate) if rate else None
    assert config.get("max_task_queue_activities_per_second") == expected


class OrderedGateway(RecordingGateway):
    """Records, in order, the numbers it was asked to send to."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        self.sent.append(to)
        return super().send(to, body, key, **kw)


async def test_a_backlog_of_sends_goes_out_most_overdue_first(
    dev_env, sqlite_sessions, tmp_path: Path
) -> None:
    """Twelve first notices wait in the sms queue (no sms worker yet), started least overdue
    first; one sms worker sending one at a time takes the ≥ 90 days past due first, then
    ≥ 60, ≥ 30 and the rest (first in, first out would be the other way round)."""
    client, tq = dev_env.client, f"tq-{uuid.uuid4()}"
    today = datetime.now(ZoneInfo(OPEN_POLICY.timezone)).date()
    h = Harness(dev_env, client, tq, sqlite_sessions, tmp_path / "d", timedelta(seconds=1))
    band_of: dict[str, int] = {}
    cases = build_worker(client, tq, sqlite_sessions, tmp_path / "d", roles=["cases"])
    async with cases:
        for i, dpd in enumerate([5, 10, 20, 35, 40, 50, 61, 70, 80, 95, 120, 300]):
            phone = f"+86139{i:08d}"
            spec, handle = await h.start(
                OPEN_POLICY, overdue_since=today - timedelta(days=dpd), phone=phone
            )
            band_of[phone] = sms_priority(dpd)

        async def waiting_to_send() -> bool:
            for handle in h.started:
                pending = (await handle.describe()).raw_description.pending_activities
                if not any(
                    p.activity_type.name == "send_sms"
                    and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                    for p in pending
                ):
                    return False
            return True

        deadline = asyncio.get_running_loop().time() + 60
        while not await waiting_to_send():
            assert asyncio.get_running_loop().time() < deadline, "the sends were not scheduled"
            await asyncio.sleep(0.2)
        ordered = OrderedGateway()
        sender = build_worker(
            client, tq, sqlite_sessions, tmp_path / "d", ordered, roles=["sms"], sms_threads=1
        )
        try:
            async with sender:
                await eventually(lambda: len(ordered.sent) == 12, "twelve notices", 60)
        finally:
            for handle in h.started:
                await handle.terminate("test finished")
    bands = [band_of[to] for to in ordered.sent]
    assert bands == sorted(bands), bands
    assert band_order(bands) == 1.0


def test_band_order_counts_pairs_sent_out_of_order() -> None:
    assert band_order([1, 1, 2, 3, 4]) == 1.0
    assert band_order([4, 3, 2, 1]) == 0.0
    assert band_order([1, 2, 1, 2]) == 0.75  # four pairs of different bands, one (2, 1)


@pytest.fixture
def provider() -> Iterator[tuple[str, ProviderState]]:
    with rate_limited_provider(None) as running:
        yield running


async def test_a_429_is_retried_and_the_borrower_gets_the_notice_once(
    env, sqlite_sessions, tmp_path: Path, provider: tuple[str, ProviderState]
) -> None:
    """The provider refuses the first two sends (429, Twilio's 20429); Temporal retries the
    activity with its backoff and the third goes out: one message, one record."""
    base, state = provider
    state.refuse_next = 2
    async with running_worker(env, sqlite_sessions, tmp_path / "d", gateway=gateway(base)) as h:
        spec, handle = await h.start()
        await h.until(handle, lambda s: s.counters.sms_sent == 1, "the first notice sent")
        await handle.terminate("test finished")
    assert state.refused == 2
    assert [m.to for m in state.accepted] == [spec.phone]
    with sqlite_sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert (row.status, row.provider_sid) == ("SENT", state.accepted[0].sid)
        sent = (
            select(func.count()).select_from(ContactAttempt).where(ContactAttempt.outcome == "SENT")
        )
        assert session.scalar(sent) == 1


def test_the_rate_limited_provider_answers_429_above_its_rate() -> None:
    """Its token bucket: a burst of one second's worth goes, the next is refused."""
    import requests

    with rate_limited_provider(rate=0.01, burst=2) as (base, state):
        url = f"{base}/2010-04-01/Accounts/AC1/Messages.json"
        answers = [
            requests.post(url, data={"To": "+861", "Body": "x"}).status_code for _ in range(3)
        ]
        assert answers == [201, 201, 429]
        assert requests.post(url, data={"To": "+861", "Body": "x"}).json()["code"] == 20429
        assert state.refused == 2 and len(state.accepted) == 2


def test_a_send_that_waited_past_the_windows_close_is_not_made(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked inside the window, but the clock passes the start of quiet hours before the
    provider is called (a backlog, a slow database): nothing is sent; the message is
    deferred to the next window, and a retry defers it again without sending."""
    policy = Policy().with_overrides({"quiet_start": "21:00", "quiet_end": "08:00"})
    zone = ZoneInfo(policy.timezone)
    day = datetime.now(zone).date()
    inside = datetime(day.year, day.month, day.day, 20, 59, 59, tzinfo=zone).astimezone(UTC)
    after = inside + timedelta(seconds=2)
    assert not in_quiet_hours(inside, policy) and in_quiet_hours(after, policy)
    clock = iter([inside])
    monkeypatch.setattr(sms_module, "activity_now", lambda: next(clock, after))
    ordered = OrderedGateway()
    loan_no = new_loan(sessions)
    request = sms(loan_no, "w1", policy)
    acts = SmsActivities(sessions, ordered)
    result = acts.send_sms(request)
    assert result.status == "DEFERRED" and result.not_before is not None
    assert result.not_before.astimezone(zone).hour == 8 and result.not_before > after
    assert ordered.sent == []
    assert acts.send_sms(request).status == "DEFERRED" and ordered.sent == []
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert (row.status, row.reason, row.attempted_at) == ("DEFERRED", "quiet hours", None)


def test_the_benchmarks_window_opens_ahead_and_the_short_one_closes() -> None:
    """The morning benchmark's policy: now in quiet hours, the window opening on a whole
    minute at least the lead ahead, and the short window closing its minutes later."""
    now = datetime.now(UTC).replace(hour=3, minute=17, second=42)
    policy, opening, closing = wave_policy(now, 60, None)
    assert in_quiet_hours(now, policy) and in_quiet_hours(opening - timedelta(seconds=1), policy)
    assert not in_quiet_hours(opening, policy) and opening - now >= timedelta(seconds=60)
    assert opening.second == 0 and not in_quiet_hours(closing - timedelta(seconds=1), policy)
    policy, opening, closing = wave_policy(now, 60, 2)
    assert closing - opening == timedelta(minutes=2)
    assert not in_quiet_hours(closing - timedelta(seconds=1), policy)
    assert in_quiet_hours(closing, policy) and in_quiet_hours(now, policy)


def test_the_drain_ratio_counts_only_a_wave_sent_whole_and_shares_only_inside_the_window() -> None:
    """Half a wave sent at full pace is no drain ratio of 1.0; a band's share counts distinct
    numbers the provider took while the window was open."""
    opening = datetime.now(UTC)
    closing = opening + timedelta(minutes=1)
    t0 = opening.timestamp()
    band_of = {f"+8613800000{i:03d}": 1 if i < 2 else 4 for i in range(4)}
    half = [Accepted(t0 + 1 + i, f"+8613800000{i:03d}", "", "") for i in range(2)]
    figures = _figures(half, 0, band_of, opening, closing, 4, 1.0, None)
    assert figures["ratio"] == 0.0
    whole = half + [Accepted(t0 + 1 + i, f"+8613800000{i:03d}", "", "") for i in range(2, 4)]
    assert _figures(whole, 0, band_of, opening, closing, 4, 1.0, None)["ratio"] == 1.0
    # A band-4 number sent after closing, and a band-1 number sent twice inside the window.
    late = half + [
        Accepted(t0 + 5, half[0].to, "", ""),
        Accepted(t0 + 90, "+8613800000003", "", ""),
    ]
    short = _figures(late, 0, band_of, opening, closing, 4, 1.0, 1)
    assert (short["band1_sent"], short["band4_sent"]) == (1.0, 0.0)
