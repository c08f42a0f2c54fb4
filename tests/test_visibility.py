"""What supervisors filter on in Temporal visibility while a case's activity keeps retrying
(collection-v5 upserts once the case is idle, but a new stage before the next activity)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.sms import SmsActivities
from domain import search_attributes as sa
from domain.models import CaseResult, SmsRequest, SmsResult
from domain.names import Activities as A
from tests.harness import eventually, running_worker
from tests.test_debt_updates import raw_attributes
from tests.test_workflow_paths import DEBT

REAL_SEND_SMS = SmsActivities.send_sms
OUTAGE = threading.Event()  # set: the provider is down
ATTEMPTS: list[str] = []  # each send attempt's message key


class ProviderDown:
    """The SMS provider down while OUTAGE is set: every attempt fails and Temporal retries (a
    method: the SDK reads the argument's type after `self`)."""

    @activity.defn(name=A.SEND_SMS)
    def send_sms(self, req: SmsRequest) -> SmsResult:
        ATTEMPTS.append(req.key)
        if OUTAGE.is_set():
            raise ApplicationError("provider unavailable", type="ProviderDown")
        return REAL_SEND_SMS(self, req)  # type: ignore[arg-type]


async def test_a_new_stage_is_listed_while_its_first_sms_keeps_retrying(
    env, sqlite_sessions, tmp_path: Path, request, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case enters INITIAL_CONTACT and its first notice cannot go (the provider is
    down): a supervisor filtering on INITIAL_CONTACT finds it while the send retries, not
    under INVESTIGATION until the provider is back."""
    fast = request.config.getoption("--workflow-env") == "local"
    monkeypatch.setattr(SmsActivities, "send_sms", ProviderDown.send_sms)
    OUTAGE.set()
    ATTEMPTS.clear()
    try:
        async with running_worker(env, sqlite_sessions, tmp_path / "data", fast=fast) as h:
            _, handle = await h.start()
            await eventually(lambda: len(ATTEMPTS) >= 2, "the first notice retried", 30)
            status = await h.status(handle)
            assert status.stage == "INITIAL_CONTACT" and status.counters.sms_sent == 0
            attrs = await raw_attributes(handle)
            assert attrs[sa.STAGE.name] == "INITIAL_CONTACT"
            assert len(ATTEMPTS) >= 2 and (await h.status(handle)).counters.sms_sent == 0
            # The provider is back: the notice goes, and the case ends as usual.
            OUTAGE.clear()
            await h.until(handle, lambda s: s.counters.sms_sent == 1, "the notice sent", 30)
            await h.pay(handle, DEBT)
            result: CaseResult = await handle.result()
            assert result.outcome == "PAID_IN_FULL"
    finally:
        OUTAGE.clear()
