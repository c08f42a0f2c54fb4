"""SMS through Alibaba Cloud SMS (Dysms, 阿里云短信服务) with its official SDK: a registered
signature (签名), a registered template (模板) and its parameters; errors classified for
Temporal's retries like Twilio's (activities/twilio_gateway.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_dysmsapi20170525.models import QuerySendDetailsRequest, SendSmsRequest
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException, UnretryableException
from temporalio.exceptions import ApplicationError

from activities.sms_gateway import (
    Channel,
    DeferredByProvider,
    GatewayResult,
    PermanentSmsFailure,
    ProviderOutcomeUnknown,
    TemplateMessage,
    out_id_sid,
)
from domain.privacy import mask_key, mask_phone, mask_text

log = logging.getLogger(__name__)

ENDPOINT = "dysmsapi.aliyuncs.com"
CHINA = ZoneInfo("Asia/Shanghai")  # Aliyun's SendDate and QuerySendDetails' SendDate
# Aliyun's error codes (SendSms's Code), by what they mean for the message.
UNUSABLE = {"isv.MOBILE_NUMBER_ILLEGAL"}  # no SMS can reach it
DAY_LIMITS = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"}  # per number / per day
# No SendSms code says the recipient unsubscribed: an opt-out reaches us as a reply (TD,
# 退订) through the SmsUp callback. isv.BLACK_KEY_CONTROL_LIMIT is a blocked keyword in a
# template variable (this message's content), not the borrower.
RETRYABLE = {"ServiceUnavailable", "InternalError", "SignatureNonceUsed"}
# Answered, but whether the message went out is not said (Aliyun's own failure): the retry
# asks QuerySendDetails first.
UNKNOWN = {"isp.SYSTEM_ERROR"}
# Nothing goes out until an operator fixes the account: retried rarely, and said so.
ACCOUNT = {
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "isp.RAM_PERMISSION_DENY",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.AMOUNT_NOT_ENOUGH",
    "Forbidden.RAM",
}
# 业务停机: the account is suspended because its balance ran out (not the borrower's number).
BALANCE = {"isv.OUT_OF_SERVICE", "isv.AMOUNT_NOT_ENOUGH"}
# Our signature or template as registered at Aliyun does not match what we send: every
# message of the account (or of the purpose) fails alike until an operator fixes it, so
# retried rarely, like the account, and sent once it is fixed.
CONFIGURATION = {
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SIGN_NAME_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_JSON_PARAM",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
}
# This message's values only (a variable too long, a blocked keyword in one): it fails for
# good, the next message may go.
CONTENT = {"isv.PARAM_LENGTH_LIMIT", "isv.BLACK_KEY_CONTROL_LIMIT"}
RETRY_LATER = timedelta(minutes=15)


@dataclass
class AliyunSettings:
    access_key_id: str
    access_key_secret: str
    sign_name: str  # the registered signature (签名), delivered as 【sign_name】
    endpoint: str = ENDPOINT  # another host (host:port): a mock in tests
    protocol: str = "https"  # http only for such a mock

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AliyunSettings:
        env = os.environ if env is None else env
        missing = [
            var
            for var in ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET", "ALIYUN_SMS_SIGN_NAME")
            if not env.get(var)
        ]
        if missing:
            raise ValueError(f"Aliyun SMS (SMS_PROVIDER_*=aliyun): set {', '.join(missing)}")
        return cls(
            access_key_id=env["ALIYUN_ACCESS_KEY_ID"],
            access_key_secret=env["ALIYUN_ACCESS_KEY_SECRET"],
            sign_name=env["ALIYUN_SMS_SIGN_NAME"],
            endpoint=env.get("ALIYUN_SMS_ENDPOINT") or ENDPOINT,
        )


class AliyunGateway:
    name = "aliyun"

    def __init__(self, settings: AliyunSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.client = Client(
            Config(
                access_key_id=settings.access_key_id,
                access_key_secret=settings.access_key_secret,
                endpoint=settings.endpoint,
                protocol=settings.protocol,
            )
        )

    def channel(self, to: str) -> Channel:
        # Uplink replies (上行短信) come back through the SmsUp callback: two-way.
        return Channel("aliyun", two_way=True, signature=self.settings.sign_name, templated=True)

    def _runtime(self, timeout_s: float | None) -> RuntimeOptions:
        # Connection and answer each get half of the time left, at most our own timeout.
        limit = self.timeout if timeout_s is None else min(self.timeout, timeout_s / 2)
        ms = max(10, int(limit * 1000))
        return RuntimeOptions(autoretry=False, read_timeout=ms, connect_timeout=ms)

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
        if template is None:
            raise PermanentSmsFailure(None, "aliyun: no registered template for this message")
        request = SendSmsRequest(
            phone_numbers=_national(to),
            sign_name=template.signature,
            template_code=template.code,
            template_param=json.dumps(template.params, ensure_ascii=False),
            out_id=key[:256],  # comes back on the delivery report
        )
        try:
            answer = self.client.send_sms_with_options(request, self._runtime(timeout_s)).body
        except UnretryableException:
            raise  # no answer (network, timeout): unknown, so the retry asks Aliyun first
        except TeaException as e:
            raise classify(getattr(e, "code", None), str(getattr(e, "message", e)), e) from None
        if answer.code != "OK":
            raise classify(answer.code, answer.message or "", None)
        log.info(
            "SMS %s accepted by Aliyun as %s for %s", mask_key(key), answer.biz_id, mask_phone(to)
        )
        return GatewayResult("SENT", answer.biz_id)

    def find_sent(
        self,
        to: str,
        body: str,
        since: datetime,
        *,
        timeout_s: float | None = None,
        key: str = "",
    ) -> str | None:
        """Aliyun's QuerySendDetails for the number on the day(s) since `since`: the message
        sent with our key as its OutId (another case's identical text to the same number is
        not this one), with the same text (the outbox stores what Aliyun delivers,
        【signature】 included). It names the message by our OutId, not its BizId:
        `out_id_sid(OutId)` stands for it, and the delivery report, which carries both, is
        matched by it."""
        if not key:
            return None  # nothing names this message at Aliyun: it cannot be told apart
        days = sorted({since.astimezone(CHINA).date(), datetime.now(CHINA).date()})
        for day in days:
            request = QuerySendDetailsRequest(
                phone_number=_national(to),
                send_date=day.strftime("%Y%m%d"),
                page_size=50,
                current_page=1,
            )
            try:
                answer = self.client.query_send_details_with_options(
                    request, self._runtime(timeout_s)
                ).body
            except (TeaException, UnretryableException) as e:
                raise classify(getattr(e, "code", None), str(getattr(e, "message", e)), e) from None
            if answer.code != "OK":
                raise classify(answer.code, answer.message or "", None)
            dtos = answer.sms_send_detail_dtos
            for dto in (dtos.sms_send_detail_dto if dtos else None) or []:
                sent = _china_time(dto.send_date)
                if (
                    dto.out_id == key[:256]
                    and dto.content == body
                    and (sent is None or sent >= since)
                ):
                    log.info("SMS %s found at Aliyun: not sent again", mask_key(key))
                    return out_id_sid(dto.out_id)
        return None


def _national(number: str) -> str:
    """Aliyun takes mainland numbers without +86 (and others with their country code)."""
    return number[3:] if number.startswith("+86") else number.lstrip("+")


def _china_time(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return None


def classify(code: str | None, message: str, error: Exception | None) -> Exception:
    """What an Aliyun answer means for a retry: permanent, deferred, retry, fix the account.
    Its text is masked: it may carry the number (Temporal keeps it in the case's history)."""
    code = code or ""
    status = getattr(error, "status_code", None) or 0
    text = mask_text(f"aliyun {code or status}: {message}")[:300]
    if code in DAY_LIMITS:
        return DeferredByProvider(text)
    if code in UNUSABLE:
        return PermanentSmsFailure(None, text, number_unusable=True)
    if code in BALANCE:
        return ApplicationError(
            f"{text} — 阿里云短信账户余额不足、业务停机 (the Aliyun account is out of balance "
            "and suspended): top it up; sending resumes once it is",
            type="AliyunAccount",
            next_retry_delay=RETRY_LATER,
        )
    if code in ACCOUNT or status in (401, 403):
        return ApplicationError(
            f"{text} — check ALIYUN_ACCESS_KEY_ID, ALIYUN_ACCESS_KEY_SECRET and the account's "
            "balance and permissions; sending resumes once they are right",
            type="AliyunAccount",
            next_retry_delay=RETRY_LATER,
        )
    if code in CONFIGURATION:
        return ApplicationError(
            f"{text} — 签名或模板未通过审核或与登记不符 (configuration: the signature "
            "ALIYUN_SMS_SIGN_NAME or the template in templates/sms_registry.toml is not what "
            "Aliyun has approved); sending resumes once it is",
            type="AliyunConfiguration",
            next_retry_delay=RETRY_LATER,
        )
    if code in CONTENT:
        return PermanentSmsFailure(
            None, f"{text} (content: this message's template values were refused)"
        )
    if code in UNKNOWN or status >= 500:
        return ProviderOutcomeUnknown(f"{text}: retrying, Aliyun asked first")
    if (
        code.startswith("Throttling")
        or code in RETRYABLE
        or status == 429
        or isinstance(error, UnretryableException)  # no answer: the network, a timeout
        or (error is not None and not code)
    ):
        return ApplicationError(f"{text}: retrying", type="AliyunUnavailable")
    return PermanentSmsFailure(None, text)
