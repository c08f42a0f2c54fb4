"""Where SMS go: the `SmsGateway` seam. The embedded default records without sending."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.privacy import mask_phone

log = logging.getLogger(__name__)


@dataclass
class GatewayResult:
    status: str  # SENT (a provider accepted it) or RECORDED (kept in the outbox only)
    provider_sid: str | None = None


class PermanentSmsFailure(Exception):
    """The provider refused this message for good; the case must go on without it."""

    def __init__(self, code: int | None, message: str, number_unusable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.number_unusable = number_unusable  # no SMS will ever reach this number


class SmsGateway(Protocol):
    name: str

    def send(
        self,
        to: str,
        body: str,
        key: str,
        *,
        deliver_by: datetime | None = None,
        timeout_s: float | None = None,
    ) -> GatewayResult:
        """Hand one message to the provider. Raises on failure (retryable unless marked).

        `deliver_by`: the provider must drop the message rather than deliver it later (quiet
        hours begin). `timeout_s`: give up waiting for the provider's answer after this long
        (the attempt's time left), if sooner than the gateway's own timeout.
        """
        ...

    def find_sent(
        self, to: str, body: str, since: datetime, *, timeout_s: float | None = None
    ) -> str | None:
        """The provider's id of this message if it accepted it since `since` (a crash hid the
        answer from us), else None."""
        ...


class RecordingGateway:
    """Sends nothing: the outbox row is the message. For demos, tests and benchmarks."""

    name = "recording"

    def send(self, to: str, body: str, key: str, **_: object) -> GatewayResult:
        log.info("SMS %s to %s recorded, not sent", key, mask_phone(to))
        return GatewayResult("RECORDED")

    def find_sent(self, to: str, body: str, since: datetime, **_: object) -> str | None:
        return None  # nothing leaves this process: a retry records again, harmlessly
