"""SMS through Tencent Cloud SMS (腾讯云短信) with its official SDK
(`tencentcloud-sdk-python-sms`, API 2021-01-11): the SDK app, an approved signature (签名), an
approved template (模板) whose parameters are positional ({1}, {2}, …); errors classified for
Temporal's retries like Twilio's and Aliyun's."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.exceptions import ApplicationError
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models, sms_client

from activities.sms_gateway import (
    Channel,
    DeferredByProvider,
    GatewayResult,
    PermanentSmsFailure,
    TemplateMessage,
)
from domain.privacy import mask_key, mask_phone, mask_text
from domain.sms_text import OPTED_OUT_CODE

log = logging.getLogger(__name__)

ENDPOINT = "sms.tencentcloudapi.com"
UNUSABLE = {"InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberParseFail"}
DAY_LIMITS = {
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DailyLimit",
}
OPTED_OUT = {"FailedOperation.PhoneNumberInBlacklist"}  # 免打扰名单: the number unsubscribed
ACCOUNT_PREFIXES = ("AuthFailure", "UnauthorizedOperation")
ACCOUNT = {"FailedOperation.InsufficientBalanceInSmsPackage"}
# Our signature or template as approved at Tencent does not match what we send: every
# message (of the account or the purpose) fails alike until an operator fixes it, so retried
# rarely, like the account, and sent once it is fixed.
CONFIGURATION = {
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
    "FailedOperation.MissingSignature",
    "FailedOperation.MissingTemplateToModify",
    "InvalidParameterValue.TemplateParameterFormatError",
}
# This message's values only (too long): it fails for good, the next message may go.
CONTENT = {
    "InvalidParameterValue.TemplateParameterLengthLimit",
    "InvalidParameterValue.ContentLengthLimit",
}
RETRY_LATER = timedelta(minutes=15)
RETRY_PREFIXES = ("InternalError", "RequestLimitExceeded", "LimitExceeded.PhoneNumber")
NO_ANSWER = {"ClientNetworkError"}  # the request may or may not have arrived


@dataclass
class TencentSettings:
    secret_id: str
    secret_key: str
    sdk_app_id: str  # the SMS application (SdkAppId) the signature and templates belong to
    sign_name: str  # the approved signature, delivered as 【sign_name】
    region: str = "ap-guangzhou"
    endpoint: str = ENDPOINT  # another host (host:port): a mock in tests
    scheme: str = "https"  # http only for such a mock

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TencentSettings:
        env = os.environ if env is None else env
        required = ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "TENCENT_SMS_SDK_APP_ID",
                    "TENCENT_SMS_SIGN_NAME")  # fmt: skip
        missing = [var for var in required if not env.get(var)]
        if missing:
            raise ValueError(f"Tencent SMS (SMS_PROVIDER_*=tencent): set {', '.join(missing)}")
        return cls(
            env["TENCENT_SECRET_ID"],
            env["TENCENT_SECRET_KEY"],
            env["TENCENT_SMS_SDK_APP_ID"],
            env["TENCENT_SMS_SIGN_NAME"],
            env.get("TENCENT_SMS_REGION") or "ap-guangzhou",
            env.get("TENCENT_SMS_ENDPOINT") or ENDPOINT,
        )


class TencentGateway:
    name = "tencent"

    def __init__(self, settings: TencentSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.credential = credential.Credential(settings.secret_id, settings.secret_key)

    def channel(self, to: str) -> Channel:
        # Replies come back through the reply callback (上行回复回调): two-way.
        return Channel("tencent", two_way=True, signature=self.settings.sign_name, templated=True)

    def _client(self, timeout_s: float | None) -> sms_client.SmsClient:
        # One client per call: connection and answer each get half of the time left, at most
        # our own timeout (requests applies each apart: together they end within it).
        limit = self.timeout if timeout_s is None else min(self.timeout, timeout_s)
        half = max(0.05, limit / 2)
        http = HttpProfile(
            protocol=self.settings.scheme,
            endpoint=self.settings.endpoint,
            reqTimeout=(half, half),  # type: ignore[arg-type]  # passed on to requests
        )
        return sms_client.SmsClient(
            self.credential, self.settings.region, ClientProfile(httpProfile=http)
        )

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
            raise PermanentSmsFailure(None, "tencent: no registered template for this message")
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [to]  # E.164, as Tencent takes it
        request.SmsSdkAppId = self.settings.sdk_app_id
        request.SignName = template.signature
        request.TemplateId = template.code
        # Positional: the registry names them 1, 2, 3 in the template's order.
        request.TemplateParamSet = [template.params[k] for k in sorted(template.params, key=int)]
        request.SessionContext = key[:512]  # comes back on the delivery report
        try:
            answer = self._client(timeout_s).SendSms(request)
        except TencentCloudSDKException as e:
            raise classify(e.code, e.message) from None
        status = (answer.SendStatusSet or [None])[0]
        if status is None:
            raise ApplicationError("tencent: an answer without a send status", type="TencentOdd")
        if status.Code != "Ok":
            raise classify(status.Code, status.Message or "")
        log.info(
            "SMS %s accepted by Tencent as %s for %s",
            mask_key(key),
            status.SerialNo,
            mask_phone(to),
        )
        return GatewayResult("SENT", status.SerialNo)

    def find_sent(
        self,
        to: str,
        body: str,
        since: datetime,
        *,
        timeout_s: float | None = None,
        key: str = "",
    ) -> str | None:
        """The number's status reports since `since` (PullSmsSendStatusByPhoneNumber): the
        one sent with our key as its SessionContext. Tencent has a message's report only once
        the operator reported it (seconds, usually): a message accepted but not yet reported
        is not found, and the retry sends again (a duplicate is possible then; README)."""
        if not key:
            return None
        request = models.PullSmsSendStatusByPhoneNumberRequest()
        request.PhoneNumber = to
        request.SmsSdkAppId = self.settings.sdk_app_id
        request.BeginTime = int(since.timestamp())
        request.EndTime = int(time.time()) + 1
        request.Offset, request.Limit = 0, 100
        try:
            answer = self._client(timeout_s).PullSmsSendStatusByPhoneNumber(request)
        except TencentCloudSDKException as e:
            error = classify(e.code, e.message)
            if isinstance(error, (PermanentSmsFailure, DeferredByProvider)):
                # The lookup refused (pulling not enabled for the app, …): sent again, as
                # without a lookup; the message itself may still go.
                log.warning(
                    "SMS %s: Tencent's status pull refused (%s): sending", mask_key(key), error
                )
                return None
            raise error from None
        for report in answer.PullSmsSendStatusSet or []:
            if report.SessionContext == key[:512] and report.SerialNo:
                log.info("SMS %s found at Tencent: not sent again", mask_key(key))
                return str(report.SerialNo)
        return None


def classify(code: str | None, message: str) -> Exception:
    """What a Tencent answer means for a retry: permanent, deferred, retry, fix the account.
    Its text is masked: it may carry the number (Temporal keeps it in the case's history)."""
    code = code or ""
    text = mask_text(f"tencent {code}: {message}")[:300]
    if code in NO_ANSWER:
        return ConnectionError(text)  # unknown: the activity's retry asks first
    if code in DAY_LIMITS:
        return DeferredByProvider(text)
    if code in OPTED_OUT:
        return PermanentSmsFailure(OPTED_OUT_CODE, text)
    if code in UNUSABLE:
        return PermanentSmsFailure(None, text, number_unusable=True)
    if code in ACCOUNT or code.startswith(ACCOUNT_PREFIXES):
        return ApplicationError(
            f"{text} — check TENCENT_SECRET_ID, TENCENT_SECRET_KEY, TENCENT_SMS_SDK_APP_ID and "
            "the SMS package's balance; sending resumes once they are right",
            type="TencentAccount",
            next_retry_delay=RETRY_LATER,
        )
    if code in CONFIGURATION:
        return ApplicationError(
            f"{text} — 签名或模板未通过审核或与登记不符 (configuration: the signature "
            "TENCENT_SMS_SIGN_NAME or the template in templates/sms_registry.toml is not what "
            "Tencent has approved); sending resumes once it is",
            type="TencentConfiguration",
            next_retry_delay=RETRY_LATER,
        )
    if code in CONTENT:
        return PermanentSmsFailure(None, f"{text} (content: this message's values were refused)")
    if code.startswith(RETRY_PREFIXES) or code == "ServerNetworkError":
        return ApplicationError(f"{text}: retrying", type="TencentUnavailable")
    return PermanentSmsFailure(None, text)
