"""SMS through Tencent Cloud SMS's official SDK, against a local fake of its HTTP API
(tests/tencent_fake.py): the TC3-signed request, the registered template with its
positional parameters, the stored text being the delivered one, each class of error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities.sms import SmsActivities
from activities.sms_gateway import RoutedGateway
from activities.sms_templates import check_registry, load_registry
from activities.tencent_gateway import classify
from db.models import Borrower, SmsOutbox
from tests.tencent_fake import APP_ID, SIGN, TencentLike, tencent_gateway, tencent_like
from tests.test_activities import CountingGateway, new_loan, sms


@pytest.fixture
def endpoint() -> Iterator[str]:
    with tencent_like() as where:
        yield where


def outbox(sessions, key: str) -> SmsOutbox:  # type: ignore[no-untyped-def]
    with sessions() as session:
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.key == key))
        assert row is not None
        return row


def test_a_signed_templated_send_and_the_stored_text_is_the_delivered_one(
    sessions, endpoint
) -> None:
    # Mainland numbers to Tencent, the rest elsewhere: SMS_PROVIDER_CN=tencent.
    acts = SmsActivities(sessions, RoutedGateway(tencent_gateway(endpoint), CountingGateway()))
    loan_no = new_loan(sessions)
    assert acts.send_sms(sms(loan_no, "tc-1")).status == "SENT"
    [request] = [r for r in TencentLike.seen if r["action"] == "SendSms"]
    assert request["PhoneNumberSet"] == ["+8613912345678"] and request["SmsSdkAppId"] == APP_ID
    assert request["SignName"] == SIGN and request["SessionContext"] == "tc-1"
    assert request["TemplateId"] == load_registry()["tencent"]["zh"]["first_notice"]["code"]
    assert request["TemplateParamSet"] == [loan_no[-4:], "40", "10,000.00"]
    [delivered] = TencentLike.sent
    row = outbox(sessions, "tc-1")
    assert row.body == delivered["content"] and row.provider_sid == delivered["serial"]


def test_a_request_signed_with_the_wrong_key_is_refused(sessions, endpoint) -> None:
    acts = SmsActivities(sessions, tencent_gateway(endpoint, secret_key="wrong"))
    with pytest.raises(ApplicationError) as raised:
        acts.send_sms(sms(new_loan(sessions), "tc-badsig"))
    assert raised.value.type == "TencentAccount" and raised.value.next_retry_delay is not None
    assert TencentLike.sent == []


@pytest.mark.parametrize(
    ("where", "code", "expect"),
    [
        ("number", "InvalidParameterValue.IncorrectPhoneNumber", "unusable"),
        ("number", "LimitExceeded.PhoneNumberDailyLimit", "deferred"),
        ("number", "FailedOperation.PhoneNumberInBlacklist", "opted_out"),
        ("api", "RequestLimitExceeded", "retry"),
        ("api", "InternalError.Timeout", "retry"),
        # account-wide: every case's message would fail alike; retried once fixed
        ("number", "FailedOperation.TemplateIncorrectOrUnapproved", "account"),
        ("api", "FailedOperation.SignatureIncorrectOrUnapproved", "account"),
        ("number", "InvalidParameterValue.TemplateParameterLengthLimit", "content"),
        ("api", "FailedOperation.InsufficientBalanceInSmsPackage", "account"),
    ],
)
def test_each_class_of_tencent_error(sessions, endpoint, where, code, expect) -> None:
    TencentLike.script = [(where, code)]
    acts = SmsActivities(sessions, tencent_gateway(endpoint))
    loan_no = new_loan(sessions)
    if expect in ("retry", "account"):
        with pytest.raises(ApplicationError) as raised:
            acts.send_sms(sms(loan_no, "tc-err"))
        assert not raised.value.non_retryable
        assert (raised.value.next_retry_delay is not None) == (expect == "account")
        assert outbox(sessions, "tc-err").attempted_at is None  # answered: nothing went out
        return
    result = acts.send_sms(sms(loan_no, "tc-err"))
    with sessions() as session:
        opted_out = session.scalar(select(Borrower.sms_opted_out))
    if expect == "deferred":
        assert result.status == "DEFERRED" and result.not_before is not None and not opted_out
        return
    row = outbox(sessions, "tc-err")
    assert result.status == row.status == "FAILED"
    assert result.number_unusable == (expect == "unusable")
    assert opted_out == (expect == "opted_out")
    assert ("content" in row.reason) == (expect == "content")


def test_a_tencent_error_naming_the_number_is_masked() -> None:
    for code in ("InternalError", "FailedOperation.SignatureIncorrectOrUnapproved"):
        error = classify(code, "PhoneNumber +8613912345678 …")
        assert "13912345678" not in str(error) and "+86139****5678" in str(error)


def test_a_retry_after_a_lost_answer_finds_the_message_by_its_key_and_sends_nothing(
    sessions, endpoint
) -> None:
    """Tencent accepts, but its answer does not come back within the attempt's time (1 s:
    half for the connection, half for the answer); the retry pulls the number's status
    reports and finds the one with our key as SessionContext."""
    acts = SmsActivities(sessions, tencent_gateway(endpoint, timeout=1.0))
    loan_no = new_loan(sessions)
    TencentLike.hold.clear()
    started = time.monotonic()
    with pytest.raises(ApplicationError):
        acts.send_sms(sms(loan_no, "tc-lost"))
    assert time.monotonic() - started < 1.5  # within the gateway's timeout, not twice it
    TencentLike.hold.set()
    assert len(TencentLike.sent) == 1 and outbox(sessions, "tc-lost").attempted_at is not None
    again = acts.send_sms(sms(loan_no, "tc-lost"))
    assert again.status == "SENT" and len(TencentLike.sent) == 1
    assert outbox(sessions, "tc-lost").provider_sid == TencentLike.sent[0]["serial"]
    # another case's text to the same number is not this one: sent
    assert acts.send_sms(sms(loan_no, "tc-other")).status == "SENT"
    assert len(TencentLike.sent) == 2


def test_tencent_templates_are_registered_with_positional_parameters() -> None:
    registry = load_registry()
    check_registry(registry, ["tencent"], "zh")
    registry["tencent"]["zh"]["visit_notice"]["params"] = {"tail": "loan_tail"}
    with pytest.raises(ValueError, match=r"visit_notice: .* named 1, 2, 3"):
        check_registry(registry, ["tencent"], "zh")
