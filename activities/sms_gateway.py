"""Where SMS go: the `SmsGateway` seam. The embedded default records without sending."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.privacy import mask_key, mask_phone

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


class DeferredByProvider(Exception):
    """The provider refused this message for now under its own per-number or per-day limit
    (Aliyun's isv.BUSINESS_LIMIT_CONTROL): nothing went out; it waits like a capped message."""


class ProviderOutcomeUnknown(Exception):
    """The provider answered, but not whether the message went out (its own failure, a 5xx):
    retried, and the retry asks the provider first (`find_sent`)."""


@dataclass(frozen=True)
class Channel:
    """What the route to one number can do, as the send activity must know it.

    `provider`: the template registry's key (templates/sms_registry.toml). `two_way`: replies
    reach us (else the text names the branch's phone instead of "reply 1 / 回复TD退订").
    `china_route`: Twilio to +86, whose per-number limits join the caps. `signature`: the
    registered signature the provider puts in 【】 (None: the text names the cooperative).
    """

    provider: str
    two_way: bool = True
    china_route: bool = False
    signature: str | None = None
    templated: bool = False  # sent as a registered template code with its parameters


@dataclass(frozen=True)
class TemplateMessage:
    """A registered template: what a templated provider is sent instead of the text."""

    code: str
    params: dict[str, str]
    signature: str


def channel_of(gateway: object, to: str) -> Channel:
    """The gateway's channel to `to`; a gateway that does not say is two-way, untemplated."""
    channel = getattr(gateway, "channel", None)
    return channel(to) if channel is not None else Channel(getattr(gateway, "name", "?"))


def out_id_sid(out_id: str) -> str:
    """The outbox's provider_sid (64 characters) for a message known by its OutId: `outid:`
    and the OutId, or, when that is too long (a long loan number), a digest of it."""
    sid = f"outid:{out_id}"
    if len(sid) <= 64:
        return sid
    return "outid:#" + hashlib.sha256(out_id.encode()).hexdigest()[:40]


def is_mainland(number: str) -> bool:
    return number.startswith("+86")


class SmsGateway(Protocol):
    name: str

    def channel(self, to: str) -> Channel:
        """What the route to `to` can do (optional: see `channel_of`)."""
        ...

    def send(
        self,
        to: str,
        body: str,
        key: str,
        *,
        deliver_by: datetime | None = None,
        timeout_s: float | None = None,
        template: TemplateMessage | None = None,
    ) -> GatewayResult:
        """Hand one message to the provider. Raises on failure (retryable unless marked).

        `template`: for a templated channel, the registered template and its parameters, which
        the provider renders into `body` (the text we store) under its signature.

        `deliver_by`: the provider must drop the message rather than deliver it later (quiet
        hours begin). `timeout_s`: give up waiting for the provider's answer after this long
        (the attempt's time left), if sooner than the gateway's own timeout.
        """
        ...

    def find_sent(
        self,
        to: str,
        body: str,
        since: datetime,
        *,
        timeout_s: float | None = None,
        key: str = "",
    ) -> str | None:
        """The provider's id of this message if it accepted it since `since` (a crash hid the
        answer from us), else None. `key`: our outbox key, sent with the message where the
        provider keeps one (Aliyun's OutId): only a message with that key is this one."""
        ...


class RecordingGateway:
    """Sends nothing: the outbox row is the message. For demos, tests and benchmarks."""

    name = "recording"

    def channel(self, to: str) -> Channel:
        return Channel("recording")

    def send(self, to: str, body: str, key: str, **_: object) -> GatewayResult:
        log.info("SMS %s to %s recorded, not sent", mask_key(key), mask_phone(to))
        return GatewayResult("RECORDED")

    def find_sent(self, to: str, body: str, since: datetime, **_: object) -> str | None:
        return None  # nothing leaves this process: a retry records again, harmlessly


class RoutedGateway:
    """One gateway for mainland numbers (+86), another for the rest (SMS_PROVIDER_CN and
    SMS_PROVIDER_INTL): the send activity, its outbox and rules stay one for both."""

    def __init__(self, cn: SmsGateway, intl: SmsGateway) -> None:
        self.cn, self.intl = cn, intl
        self.name = cn.name if cn is intl else f"{cn.name}(+86)/{intl.name}"

    def route(self, to: str) -> SmsGateway:
        return self.cn if is_mainland(to) else self.intl

    def channel(self, to: str) -> Channel:
        return channel_of(self.route(to), to)

    def send(self, to: str, body: str, key: str, **kw: object) -> GatewayResult:
        return self.route(to).send(to, body, key, **kw)  # type: ignore[arg-type]

    def find_sent(self, to: str, body: str, since: datetime, **kw: object) -> str | None:
        return self.route(to).find_sent(to, body, since, **kw)  # type: ignore[arg-type]
