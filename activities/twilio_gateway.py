"""SMS through Twilio's REST API, with its errors classified for Temporal's retries."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.exceptions import ApplicationError
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from activities.sms_gateway import (
    Channel,
    GatewayResult,
    PermanentSmsFailure,
    TemplateMessage,
    is_mainland,
)
from domain.privacy import mask_key, mask_phone

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
# Numbers that will never take an SMS: not a valid 'To', not a mobile, unreachable, or a
# destination the account may not reach. Retrying cannot help; a visit can.
UNREACHABLE = {21211, 21214, 21217, 21401, 21407, 21408, 21612, 21614}
AUTH_CODES = {20003, 20005}
MAX_VALIDITY_S = 36000  # ValidityPeriod: 1 to 36,000 seconds (Twilio's API description)


@dataclass
class TwilioSettings:
    account_sid: str
    auth_token: str | None = None
    api_key_sid: str | None = None  # an API key pair instead of the auth token
    api_key_secret: str | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None
    api_base: str | None = None  # another base URL: a regional edge, or a mock in tests

    @classmethod
    def from_env(cls) -> TwilioSettings | None:
        """None when Twilio is not configured: the recording gateway is used instead."""
        env = os.environ.get
        if not env("TWILIO_ACCOUNT_SID"):
            return None
        settings = cls(
            account_sid=env("TWILIO_ACCOUNT_SID", ""),
            auth_token=env("TWILIO_AUTH_TOKEN"),
            api_key_sid=env("TWILIO_API_KEY_SID"),
            api_key_secret=env("TWILIO_API_KEY_SECRET"),
            from_number=env("TWILIO_FROM"),
            messaging_service_sid=env("TWILIO_MESSAGING_SERVICE_SID"),
            status_callback_url=env("TWILIO_STATUS_CALLBACK_URL"),
            api_base=env("TWILIO_API_BASE"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not (self.auth_token or (self.api_key_sid and self.api_key_secret)):
            raise ValueError("Twilio: set TWILIO_AUTH_TOKEN or TWILIO_API_KEY_SID and _SECRET")
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("Twilio: set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
        if not self.status_callback_url:
            # Without delivery receipts a dead number would go unnoticed.
            raise ValueError("Twilio: set TWILIO_STATUS_CALLBACK_URL (…/twilio/status)")


class _HttpClient(TwilioHttpClient):
    """Twilio's HTTP client, with a time limit per call (the calling attempt's time left,
    per thread: activities share one gateway) and optionally another base URL (a regional
    edge, or a mock in tests) for what it would send to api.twilio.com."""

    def __init__(self, base: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base = base.rstrip("/") if base else None
        self._limit = threading.local()

    @contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        self._limit.seconds = seconds
        try:
            yield
        finally:
            self._limit.seconds = None

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if self.base and url.startswith(TWILIO_API):
            url = self.base + url[len(TWILIO_API) :]
        limit = getattr(self._limit, "seconds", None)
        if limit is not None:
            # requests applies a timeout to the connection and again to the answer: each
            # gets half of the time left, and no more than the client's own timeout.
            kwargs["timeout"] = max(0.01, min(self.timeout or limit, limit / 2))
        return super().request(method, url, *args, **kwargs)


class TwilioGateway:
    name = "twilio"

    def __init__(self, settings: TwilioSettings, timeout: float = 10.0) -> None:
        settings.check()
        self.settings = settings
        self.http = http = _HttpClient(settings.api_base, timeout)
        if settings.api_key_sid:
            self.client = Client(
                settings.api_key_sid,
                settings.api_key_secret,
                settings.account_sid,
                http_client=http,
            )
        else:
            self.client = Client(settings.account_sid, settings.auth_token, http_client=http)

    def channel(self, to: str) -> Channel:
        # Twilio's China guideline: two-way SMS is not supported, and per-number limits apply.
        china = is_mainland(to)
        return Channel("twilio", two_way=not china, china_route=china)

    def send(
        self,
        to: str,
        body: str,
        key: str,
        *,
        deliver_by: datetime | None = None,
        timeout_s: float | None = None,
        template: TemplateMessage | None = None,  # Twilio sends the text itself
    ) -> GatewayResult:
        s = self.settings
        params: dict[str, str | int] = {"to": to, "body": body}
        if s.messaging_service_sid:
            params["messaging_service_sid"] = s.messaging_service_sid
        else:
            params["from_"] = s.from_number or ""
        if s.status_callback_url:
            params["status_callback"] = s.status_callback_url
        # A message still queued at Twilio when the contact window closes is dropped there.
        params["validity_period"] = validity_period(deliver_by, datetime.now(UTC))
        try:
            with self.http.time_limit(timeout_s):
                message = self.client.messages.create(**params)  # type: ignore[arg-type]
        except TwilioRestException as e:
            raise classify(e) from None
        log.info(
            "SMS %s accepted by Twilio as %s for %s", mask_key(key), message.sid, mask_phone(to)
        )
        return GatewayResult("SENT", message.sid)

    def find_sent(
        self,
        to: str,
        body: str,
        since: datetime,
        *,
        timeout_s: float | None = None,
        key: str = "",
    ) -> str | None:
        """Twilio has no idempotency key: look for the same text to the same number, created
        since our last attempt, among the number's most recent messages."""
        try:
            with self.http.time_limit(timeout_s):
                recent = self.client.messages.list(to=to, limit=20)
        except TwilioRestException as e:
            raise classify(e) from None
        for m in recent:
            if m.body == body and m.date_created is not None and m.date_created >= since:
                log.info("SMS to %s found at Twilio as %s: not sent again", mask_phone(to), m.sid)
                return m.sid
        return None


def validity_period(deliver_by: datetime | None, now: datetime) -> int:
    """Twilio's ValidityPeriod: the whole seconds from `now` to `deliver_by`, within the
    1..36,000 Twilio accepts (36,000, its default, when there is no such moment)."""
    if deliver_by is None:
        return MAX_VALIDITY_S
    return max(1, min(MAX_VALIDITY_S, int((deliver_by - now).total_seconds())))


def classify(e: TwilioRestException) -> Exception:
    """What a Twilio error means for a retry: permanent, retry later, or fix the settings."""
    if e.status == 401 or e.code in AUTH_CODES:
        # Nothing will go out until an operator fixes the credentials: retry rarely and say so.
        return ApplicationError(
            "Twilio rejected our credentials: check TWILIO_ACCOUNT_SID and the auth token or "
            "API key; sending resumes once they are right",
            type="TwilioAuthentication",
            next_retry_delay=timedelta(minutes=15),
        )
    if e.status == 429 or e.status >= 500:
        return ApplicationError(
            f"Twilio unavailable ({e.status} {e.code or ''}): retrying", type="TwilioUnavailable"
        )
    return PermanentSmsFailure(
        e.code, f"twilio {e.code or e.status}: {e.msg}", number_unusable=e.code in UNREACHABLE
    )
