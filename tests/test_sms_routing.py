"""SMS_PROVIDER_CN / SMS_PROVIDER_INTL: one gateway per destination, one send activity."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from activities.sms import SmsActivities
from activities.sms_gateway import DeferredByProvider, RecordingGateway, RoutedGateway
from db.models import ContactAttempt, SmsOutbox
from service.sms_setup import gateway_from_env, provider_names, worker_gateway
from tests.test_activities import NOW, CountingGateway, new_loan, sms


class IntlGateway(CountingGateway):
    def send(self, to: str, body: str, key: str, **kw: object):  # type: ignore[no-untyped-def]
        result = super().send(to, body, key, **kw)
        result.provider_sid = "INTL" + (result.provider_sid or "")
        return result


def test_mainland_numbers_go_to_the_cn_gateway_and_the_rest_to_the_other(sessions) -> None:
    cn, intl = CountingGateway(), IntlGateway()
    acts = SmsActivities(sessions, RoutedGateway(cn, intl))
    mainland = new_loan(sessions, phone="+8613912345678")
    abroad = new_loan(sessions, phone="+85291234567", id_number="810000198001010011")
    assert acts.send_sms(sms(mainland, "cn-1")).status == "SENT"
    assert acts.send_sms(sms(abroad, "intl-1")).status == "SENT"
    assert [s[0] for s in cn.sent] == ["+8613912345678"]
    assert [s[0] for s in intl.sent] == ["+85291234567"]


def test_providers_default_to_twilio_and_a_typo_is_refused() -> None:
    assert provider_names({}) == ("twilio", "twilio")
    assert provider_names({"SMS_PROVIDER_CN": "Aliyun"}) == ("aliyun", "twilio")
    with pytest.raises(ValueError, match="SMS_PROVIDER_CN='alyun'"):
        provider_names({"SMS_PROVIDER_CN": "alyun"})


def test_unconfigured_twilio_still_records(monkeypatch) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    assert isinstance(gateway_from_env({}), RecordingGateway)  # as before: nothing changes


class LimitedGateway(CountingGateway):
    def send(self, to: str, body: str, key: str, **kw: object):  # type: ignore[no-untyped-def]
        raise DeferredByProvider("isv.BUSINESS_LIMIT_CONTROL: 触发天级流控")


def test_the_providers_day_limit_defers_like_the_cap(sessions) -> None:
    acts = SmsActivities(sessions, LimitedGateway())
    loan_no = new_loan(sessions)
    result = acts.send_sms(sms(loan_no, "limited-1"))
    assert result.status == "DEFERRED" and result.reason.startswith("contact cap reached")
    assert result.not_before is not None and result.not_before > NOW
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "DEFERRED" and row.attempted_at is None  # nothing went out
        assert session.scalar(select(ContactAttempt.rule)) in ("daily_cap", "weekly_cap")


def test_the_worker_refuses_to_start_on_a_purpose_without_a_template(monkeypatch) -> None:
    monkeypatch.setenv("SMS_TEMPLATE_REGISTRY", "/dev/null")  # an empty registry
    aliyun = {"SMS_PROVIDER_CN": "aliyun", "ALIYUN_ACCESS_KEY_ID": "k",
              "ALIYUN_ACCESS_KEY_SECRET": "s", "ALIYUN_SMS_SIGN_NAME": "青溪信用社"}  # fmt: skip
    with pytest.raises(ValueError, match="first_notice: no template registered for aliyun"):
        worker_gateway("zh", aliyun)
    monkeypatch.delenv("SMS_TEMPLATE_REGISTRY")
    routed = worker_gateway("zh", aliyun)  # the repository's registry covers every purpose
    assert isinstance(routed, RoutedGateway) and routed.channel("+8613912345678").templated
    with pytest.raises(ValueError, match="ALIYUN_SMS_SIGN_NAME"):
        worker_gateway("zh", {"SMS_PROVIDER_CN": "aliyun", "ALIYUN_ACCESS_KEY_ID": "k",
                              "ALIYUN_ACCESS_KEY_SECRET": "s"})  # fmt: skip
