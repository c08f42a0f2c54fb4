"""SMS through Alibaba Cloud SMS's official SDK, against a local fake of its HTTP API
(tests/aliyun_fake.py): the signed request, the registered template and its parameters, the
text stored being the text delivered, and each class of Aliyun's errors."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities.sms import SmsActivities
from activities.sms_templates import SENT_PURPOSES, check_registry, load_registry
from db.models import Borrower, SmsOutbox
from tests.aliyun_fake import SIGN, AliyunLike, aliyun_gateway, aliyun_like
from tests.test_activities import new_loan, sms
from webapp.aliyun_webhooks import _sid_of


@pytest.fixture
def endpoint() -> Iterator[str]:
    with aliyun_like() as where:
        yield where


def outbox(sessions, key: str) -> SmsOutbox:  # type: ignore[no-untyped-def]
    with sessions() as session:
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.key == key))
        assert row is not None
        return row


def test_a_signed_templated_send_and_the_stored_text_is_the_delivered_one(
    sessions, endpoint
) -> None:
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    result = acts.send_sms(sms(loan_no, "ali-1"))
    assert result.status == "SENT"
    [request] = [r for r in AliyunLike.seen if r["action"] == "SendSms"]
    assert request["PhoneNumbers"] == "13912345678" and request["SignName"] == SIGN
    assert request["TemplateCode"] == load_registry()["aliyun"]["zh"]["first_notice"]["code"]
    assert json.loads(request["TemplateParam"]) == {
        "tail": loan_no[-4:],
        "days": "40",
        "amount": "10,000.00",
    }
    assert request["OutId"] == "ali-1"
    [delivered] = AliyunLike.sent
    row = outbox(sessions, "ali-1")
    assert row.body == delivered["content"]  # what we keep is what the borrower reads
    assert row.body.startswith(f"【{SIGN}】") and "回复TD退订" in row.body
    assert row.provider_sid == delivered["biz_id"]


def test_a_request_signed_with_the_wrong_secret_is_refused_and_retried_later(
    sessions, endpoint
) -> None:
    """The fake checks the SDK's signature: with another secret nothing is sent."""
    acts = SmsActivities(sessions, aliyun_gateway(endpoint, secret="not-the-secret"))
    with pytest.raises(ApplicationError) as raised:
        acts.send_sms(sms(new_loan(sessions), "ali-badsig"))
    assert raised.value.type == "AliyunAccount" and not raised.value.non_retryable
    assert "ALIYUN_ACCESS_KEY_SECRET" in str(raised.value) and AliyunLike.sent == []


@pytest.mark.parametrize(
    ("status", "code", "expect"),
    [
        (200, "isv.MOBILE_NUMBER_ILLEGAL", "unusable"),
        (200, "isv.BUSINESS_LIMIT_CONTROL", "deferred"),
        # a blocked keyword in a template variable: this message only, not the borrower
        (200, "isv.BLACK_KEY_CONTROL_LIMIT", "content"),
        (200, "isv.PARAM_LENGTH_LIMIT", "content"),
        (400, "Throttling.User", "retry"),
        (500, "InternalError", "unknown"),
        (503, "ServiceUnavailable", "unknown"),
        (200, "isp.SYSTEM_ERROR", "unknown"),
        # account-wide: every case's message would fail alike; retried once fixed
        (200, "isv.SMS_TEMPLATE_ILLEGAL", "account"),
        (200, "isv.SMS_SIGNATURE_ILLEGAL", "account"),
        (200, "isv.TEMPLATE_MISSING_PARAMETERS", "account"),
        (200, "isv.OUT_OF_SERVICE", "account"),  # 业务停机: the account's balance ran out
        (404, "InvalidAccessKeyId.NotFound", "account"),
    ],
)
def test_each_class_of_aliyun_error(sessions, endpoint, status, code, expect) -> None:
    AliyunLike.script = [(status, {"Code": code, "Message": f"{code} for 13912345678"})]
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    if expect in ("retry", "account", "unknown"):
        with pytest.raises(ApplicationError) as raised:
            acts.send_sms(sms(loan_no, "ali-err"))
        assert not raised.value.non_retryable
        assert (raised.value.next_retry_delay is not None) == (expect == "account")
        assert "13912345678" not in str(raised.value)  # Temporal's history: masked too
        row = outbox(sessions, "ali-err")
        assert row.status == "PENDING" and "13912345678" not in row.reason
        # refused: nothing went out; unknown: the retry asks Aliyun first
        assert (row.attempted_at is not None) == (expect == "unknown")
        return
    result = acts.send_sms(sms(loan_no, "ali-err"))
    row = outbox(sessions, "ali-err")
    with sessions() as session:
        opted_out = session.scalar(select(Borrower.sms_opted_out))
    if expect == "deferred":
        assert result.status == "DEFERRED" and result.not_before is not None
        assert row.status == "DEFERRED" and not opted_out
        return
    assert result.status == row.status == "FAILED" and "13912345678" not in row.reason
    assert result.number_unusable == (expect == "unusable")
    assert not opted_out  # no Aliyun send error says the borrower unsubscribed
    assert ("content" in row.reason) == (expect == "content")


def test_a_blocked_keyword_does_not_opt_the_borrower_out(sessions, endpoint) -> None:
    AliyunLike.script = [(200, {"Code": "isv.BLACK_KEY_CONTROL_LIMIT", "Message": "黑名单管控"})]
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    assert acts.send_sms(sms(loan_no, "bk-1")).status == "FAILED"
    assert acts.send_sms(sms(loan_no, "bk-2", purpose="visit_notice")).status == "SENT"


def test_an_account_out_of_balance_names_the_balance_and_keeps_the_number(
    sessions, endpoint
) -> None:
    AliyunLike.script = [(200, {"Code": "isv.OUT_OF_SERVICE", "Message": "业务停机"})]
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    with pytest.raises(ApplicationError) as raised:
        acts.send_sms(sms(loan_no, "oos-1"))
    assert raised.value.type == "AliyunAccount" and "余额" in str(raised.value)
    again = acts.send_sms(sms(loan_no, "oos-1"))  # topped up: the retry sends it
    assert again.status == "SENT" and len(AliyunLike.sent) == 1


def test_a_template_not_approved_is_sent_once_it_is(sessions, endpoint) -> None:
    AliyunLike.script = [(200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"})]
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    with pytest.raises(ApplicationError) as raised:
        acts.send_sms(sms(loan_no, "tpl-1"))
    assert raised.value.type == "AliyunConfiguration" and raised.value.next_retry_delay
    assert "sms_registry.toml" in str(raised.value)
    assert acts.send_sms(sms(loan_no, "tpl-1")).status == "SENT"


def test_a_retry_with_aliyun_unreachable_keeps_the_number_out_of_the_failure(sessions) -> None:
    """The SDK's error names the request's URL, PhoneNumber in it (QuerySendDetails)."""
    acts = SmsActivities(sessions, aliyun_gateway("127.0.0.1:9", timeout=1.0))
    loan_no = new_loan(sessions)
    for _ in range(2):  # the second asks QuerySendDetails first
        with pytest.raises(ApplicationError) as raised:
            acts.send_sms(sms(loan_no, "down-1"))
        assert "13912345678" not in raised.value.message
    assert outbox(sessions, "down-1").attempted_at is not None  # still asked first


def test_a_retry_after_a_lost_answer_finds_the_message_and_sends_nothing(
    sessions, endpoint
) -> None:
    """Aliyun accepts, but its answer does not come back within the attempt's time."""
    acts = SmsActivities(sessions, aliyun_gateway(endpoint, timeout=1.0))
    loan_no = new_loan(sessions)
    AliyunLike.hold.clear()
    with pytest.raises(ApplicationError) as raised:
        acts.send_sms(sms(loan_no, "ali-lost"))
    assert raised.value.type == "UnretryableException" and len(AliyunLike.sent) == 1
    AliyunLike.hold.set()
    assert outbox(sessions, "ali-lost").attempted_at is not None  # the retry asks first
    again = acts.send_sms(sms(loan_no, "ali-lost"))
    assert again.status == "SENT" and len(AliyunLike.sent) == 1
    assert outbox(sessions, "ali-lost").provider_sid == "outid:ali-lost"


def test_a_retry_does_not_take_another_cases_identical_text_for_its_own(sessions, endpoint) -> None:
    """Two cases send the same text to the same number (a guarantor): B's first attempt's
    outcome is unknown (Aliyun's 500), and its retry must not take A's message for B's."""
    acts = SmsActivities(sessions, aliyun_gateway(endpoint))
    loan_no = new_loan(sessions)
    assert acts.send_sms(sms(loan_no, "case-a:first_notice")).status == "SENT"
    AliyunLike.script = [(500, {"Code": "InternalError", "Message": "InternalError"})]
    with pytest.raises(ApplicationError):
        acts.send_sms(sms(loan_no, "case-b:first_notice"))
    assert outbox(sessions, "case-b:first_notice").attempted_at is not None  # asks first
    assert acts.send_sms(sms(loan_no, "case-b:first_notice")).status == "SENT"
    assert [s["OutId"] for s in AliyunLike.sent] == ["case-a:first_notice", "case-b:first_notice"]
    a, b = outbox(sessions, "case-a:first_notice"), outbox(sessions, "case-b:first_notice")
    assert a.provider_sid != b.provider_sid and a.body == b.body


def test_a_message_found_by_a_long_key_fits_the_outbox_and_its_report_finds_it(
    sessions, endpoint
) -> None:
    """A long loan number and purpose: `outid:<key>` would not fit provider_sid (64)."""
    due = datetime.now(UTC).date() + timedelta(days=30)
    key = "QX01-" + "8" * 40 + f":installment_reminder:{due}"
    acts = SmsActivities(sessions, aliyun_gateway(endpoint, timeout=1.0))
    loan_no = new_loan(sessions)
    AliyunLike.hold.clear()
    with pytest.raises(ApplicationError):
        acts.send_sms(sms(loan_no, key))
    AliyunLike.hold.set()
    assert acts.send_sms(sms(loan_no, key)).status == "SENT" and len(AliyunLike.sent) == 1
    row = outbox(sessions, key)
    assert row.provider_sid and len(row.provider_sid) <= 64
    assert _sid_of(sessions, {"biz_id": "000001^0", "out_id": key}) == row.provider_sid


def test_every_purpose_has_a_registered_template_for_every_templated_provider() -> None:
    registry = load_registry()
    check_registry(registry, ["aliyun", "twilio"], "zh")  # raises naming what is missing
    for purpose in SENT_PURPOSES:
        assert registry["aliyun"]["zh"][purpose]["code"]
    del registry["aliyun"]["zh"]["visit_notice"]
    with pytest.raises(ValueError, match=r"visit_notice: no template registered for aliyun"):
        check_registry(registry, ["aliyun"], "zh")
    with pytest.raises(ValueError, match=r"first_notice: no template registered for aliyun"):
        check_registry(load_registry(), ["aliyun"], "en")  # no English templates at Aliyun


def test_a_registry_parameter_that_cannot_render_or_leaves_a_value_out_is_refused() -> None:
    """Found when the worker starts, not by every send failing (a typo: Jinja's error before
    the outbox row, retried for ever; a value left out: Aliyun's TEMPLATE_MISSING_PARAMETERS)."""
    registry = load_registry()
    registry["aliyun"]["zh"]["first_notice"]["params"]["tail"] = "loan_tial"
    with pytest.raises(ValueError, match=r"first_notice: .*tail = 'loan_tial' does not render"):
        check_registry(registry, ["aliyun"], "zh")
    registry = load_registry()
    del registry["aliyun"]["zh"]["first_notice"]["params"]["days"]
    with pytest.raises(ValueError, match=r"first_notice: .*leave a value of our text out"):
        check_registry(registry, ["aliyun"], "zh")
    registry = load_registry()
    registry["tencent"]["zh"]["visit_notice"]["params"]["3"] = "days_past_due"  # not in it
    with pytest.raises(ValueError, match=r"visit_notice: .*parameter 3 .* not in our text"):
        check_registry(registry, ["tencent"], "zh")


def test_the_purposes_the_workflows_send_are_the_registrys() -> None:
    """SENT_PURPOSES is what the worker checks at start: every purpose a workflow sends."""
    sent = set()
    for path in (Path(__file__).parents[1] / "workflows").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None)
            if isinstance(node, ast.Call) and getattr(name, "id", None) == "send_sms":
                purpose = node.args[1] if len(node.args) > 1 else None
                assert isinstance(purpose, ast.Constant), f"{path}:{node.lineno}: not a literal"
                sent.add(purpose.value)
    assert sent == set(SENT_PURPOSES)
