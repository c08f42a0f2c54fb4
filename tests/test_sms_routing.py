"""SMS_PROVIDER_CN / SMS_PROVIDER_INTL: one gateway per destination, one send activity."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from activities.sms import SmsActivities
from activities.sms_gateway import Channel, DeferredByProvider, RecordingGateway, RoutedGateway
from activities.sms_templates import SENT_PURPOSES
from activities.texts import environment, render_sms
from activities.twilio_gateway import TwilioGateway, TwilioSettings
from db.models import Borrower, Branch, Case, Consent, ContactAttempt, Loan, SmsOutbox, Task
from domain.models import ConsentChange
from domain.stages import ConsentKind
from domain.wording import forbidden_phrases
from feeds.branches import import_branches
from service.sms_setup import gateway_from_env, provider_names, worker_gateway
from tests.harness import OPEN_POLICY, eventually, running_worker
from tests.test_activities import NOW, CountingGateway, new_loan, sms
from tests.test_master_data import OPS
from workflows.collection import LoanCollectionWorkflow as WF


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
    assert result.status == "DEFERRED" and result.reason.startswith("provider limit reached")
    assert result.not_before is not None and result.not_before > NOW
    with sessions() as session:
        row = session.scalar(select(SmsOutbox))
        assert row.status == "DEFERRED" and row.attempted_at is None  # nothing went out
        # the regulator's record names the provider's limit, not our cap
        assert session.scalar(select(ContactAttempt.rule)) == "provider_limit"


def test_the_providers_day_limit_drops_the_message_when_the_policy_drops_over_cap(
    sessions,
) -> None:
    acts = SmsActivities(sessions, LimitedGateway())
    drop = replace(OPEN_POLICY, sms_over_cap="DROP")
    result = acts.send_sms(sms(new_loan(sessions), "limited-drop", policy=drop))
    assert result.status == "BLOCKED" and result.not_before is None


def test_the_worker_refuses_to_start_on_a_purpose_without_a_template(monkeypatch) -> None:
    monkeypatch.setenv("SMS_TEMPLATE_REGISTRY", "/dev/null")  # an empty registry
    aliyun = {"SMS_PROVIDER_CN": "aliyun", "ALIYUN_ACCESS_KEY_ID": "k",
              "ALIYUN_ACCESS_KEY_SECRET": "s", "ALIYUN_SMS_SIGN_NAME": "青溪信用社"}  # fmt: skip
    with pytest.raises(ValueError, match="first_notice: no template registered for aliyun"):
        worker_gateway("zh", aliyun)
    monkeypatch.delenv("SMS_TEMPLATE_REGISTRY")
    # Its texts ask for replies (回复TD退订): not without the reply callback's token.
    with pytest.raises(ValueError, match="ALIYUN_CALLBACK_TOKEN: aliyun's texts ask"):
        worker_gateway("zh", aliyun)
    aliyun["ALIYUN_CALLBACK_TOKEN"] = "r" * 24
    routed = worker_gateway("zh", aliyun)  # the repository's registry covers every purpose
    assert isinstance(routed, RoutedGateway) and routed.channel("+8613912345678").templated
    with pytest.raises(ValueError, match="ALIYUN_SMS_SIGN_NAME"):
        worker_gateway("zh", {"SMS_PROVIDER_CN": "aliyun", "ALIYUN_ACCESS_KEY_ID": "k",
                              "ALIYUN_ACCESS_KEY_SECRET": "s",
                              "ALIYUN_CALLBACK_TOKEN": "r" * 24})  # fmt: skip


# ---------------------------------------------------------------- one-way channels


class TwilioChinaLike(CountingGateway):
    """Twilio's channel to +86, as TwilioGateway.channel says it: one-way, China route."""

    def channel(self, to: str) -> Channel:
        return Channel("twilio", two_way=False, china_route=to.startswith("+86"))


def set_branch_phone(sessions, phone: str | None) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        session.execute(update(Branch).values(phone=phone))


def test_twilio_to_mainland_is_one_way_and_to_elsewhere_two_way() -> None:
    twilio = TwilioGateway(
        TwilioSettings("AC" + "0" * 32, "t" * 32, from_number="+15005550006",
                       status_callback_url="https://example.org/twilio/status")
    )  # fmt: skip
    china, hk = twilio.channel("+8613912345678"), twilio.channel("+85291234567")
    assert (china.two_way, china.china_route) == (False, True)
    assert (hk.two_way, hk.china_route) == (True, False)


def test_a_one_way_text_names_the_branch_phone_instead_of_reply(sessions) -> None:
    gateway = TwilioChinaLike()
    acts = SmsActivities(sessions, gateway)
    loan_no = new_loan(sessions)
    set_branch_phone(sessions, "0851-86001234")
    acts.send_sms(sms(loan_no, "oneway-1"))
    [(_, body, _)] = gateway.sent
    assert "0851-86001234" in body and "回复" not in body and "TD" not in body
    assert "退订请致电或到网点办理" in body  # opt-out by call or visit
    set_branch_phone(sessions, None)  # no number on file: the branch itself
    acts.send_sms(sms(loan_no, "oneway-2", purpose="visit_notice"))
    assert "请致电我社网点" in gateway.sent[-1][1] and "回复" not in gateway.sent[-1][1]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_one_way_text_is_clean_and_never_asks_for_a_reply(language) -> None:
    env = environment(autoescape=False)
    for purpose in SENT_PURPOSES:
        params = dict(cooperative="青溪信用社", loan_tail="1234", amount_fen="100000",
                      days_past_due="40",
                      due_date=f"{datetime.now(UTC).date() + timedelta(days=30)}")  # fmt: skip
        text = render_sms(env, language, purpose, two_way=False, branch_phone="0851-86001234",
                          **params)  # fmt: skip
        assert forbidden_phrases(text) == [], (purpose, text)
        assert "0851-86001234" in text, (purpose, text)
        assert not re.search(r"回复|[Rr]eply", text), (purpose, text)


def test_the_china_route_holds_a_third_identical_and_a_fifth_text_in_24_hours(sessions) -> None:
    acts = SmsActivities(sessions, TwilioChinaLike())
    loan_no = new_loan(sessions, id_number="522401198001015555")
    assert acts.send_sms(sms(loan_no, "cn-a")).status == "SENT"
    assert acts.send_sms(sms(loan_no, "cn-b")).status == "SENT"  # the same text again
    third = acts.send_sms(sms(loan_no, "cn-c"))
    assert third.status == "DEFERRED" and "identical" in third.reason
    assert third.not_before is not None and third.not_before > NOW + timedelta(hours=23)
    other = new_loan(sessions, id_number="522401198001015555")  # the borrower's other loan
    assert acts.send_sms(sms(other, "cn-d", purpose="visit_notice")).status == "SENT"
    assert acts.send_sms(sms(loan_no, "cn-e", purpose="missed_installment")).status == "SENT"
    fifth = acts.send_sms(sms(other, "cn-f", purpose="agreement_ready"))
    assert fifth.status == "DEFERRED" and "4 texts in 24 h" in fifth.reason
    # Another route has no such limit: the same messages go out through a two-way gateway.
    assert SmsActivities(sessions, IntlGateway()).send_sms(sms(loan_no, "intl-g")).status == "SENT"
    with sessions() as session:
        rules = set(session.scalars(select(ContactAttempt.rule)).all())
    assert "china_route_limit" in rules and not rules & {"daily_cap", "weekly_cap"}


def test_the_china_route_counts_by_number_two_borrowers_sharing_a_phone(sessions) -> None:
    """Spouses with one phone: the route's limit is the number's, whoever's loan it is."""
    acts = SmsActivities(sessions, TwilioChinaLike())
    husband = new_loan(sessions, id_number="522401198001015555")
    wife = new_loan(sessions, id_number="522401198202025566")  # the same phone
    for n, purpose in enumerate(("first_notice", "visit_notice", "missed_installment")):
        assert acts.send_sms(sms(husband, f"cn-h{n}", purpose=purpose)).status == "SENT"
    assert acts.send_sms(sms(wife, "cn-w1")).status == "SENT"
    fifth = acts.send_sms(sms(wife, "cn-w2", purpose="visit_notice"))  # the number's fifth
    assert fifth.status == "DEFERRED" and "4 texts in 24 h" in fifth.reason


def test_the_branches_file_sets_the_phone_one_way_texts_name(sessions, tmp_path) -> None:
    path = tmp_path / "branches.csv"
    path.write_text(
        "网点代码,网点名称,县,时区,网点电话\n"
        "QX01,清溪镇信用社,临山县,,0851-8600 1234\n"
        "HL01,河隆信用社,河隆县,,call us\n"
        "HL02,河隆二社,河隆县,,+86085186001234567890\n",  # 21: branches.phone holds 20
        encoding="utf-8",
    )
    report = import_branches(path, sessions, OPS, "Asia/Shanghai")
    assert [(e.row, e.field) for e in report.errors] == [(3, "phone"), (4, "phone")]
    with sessions() as session:
        assert session.get(Branch, "QX01").phone == "0851-8600 1234"
    gateway = TwilioChinaLike()
    SmsActivities(sessions, gateway).send_sms(sms(new_loan(sessions), "branch-phone"))
    assert "0851-8600 1234" in gateway.sent[0][1]


async def test_an_opt_out_told_by_call_is_recorded_and_stops_the_texts(
    env, sqlite_sessions, tmp_path
) -> None:
    """On a one-way channel the borrower opts out by call or visit: the collector records
    it as SMS consent withdrawn (`consent --withdraw --kind SMS --how CALL`)."""
    async with running_worker(env, sqlite_sessions, tmp_path / "data", TwilioChinaLike()) as h:
        spec, handle = await h.start()
        await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
        when = (await h.now()) - timedelta(minutes=1)
        await handle.execute_update(
            WF.record_consent, ConsentChange(ConsentKind.SMS, False, "CALL", "QX01-C01", when)
        )
        with h.sessions() as session:
            assert session.scalar(select(Borrower.sms_opted_out)) is True
            assert session.scalar(select(Consent.how)) == "CALL"
        await h.advance(3.2)
        await h.at_stage(handle, "FIELD_VISIT")

        def visit_notice() -> SmsOutbox | None:
            with h.sessions() as session:
                return session.scalar(select(SmsOutbox).where(SmsOutbox.purpose == "visit_notice"))

        row = await eventually(visit_notice, "visit notice decided")
        assert row.status == "BLOCKED" and "opted out" in row.reason
        assert (await h.status(handle)).opted_out
        await h.pay(handle, 1_000_000)
        await handle.result()


@pytest.mark.parametrize("one_way", [True, False])
async def test_a_case_whose_notice_cannot_be_answered_calls_at_once(
    env, sqlite_sessions, tmp_path, one_way: bool
) -> None:  # type: ignore[no-untyped-def]
    """On a one-way route the case does not wait the reply time for an answer that cannot
    come: the phone task is due when the notice went; on a two-way route at the reply time's
    end."""
    gateway = TwilioChinaLike() if one_way else CountingGateway()
    async with running_worker(env, sqlite_sessions, tmp_path / "d", gateway=gateway) as h:
        spec, handle = await h.start()
        await h.until(handle, lambda s: s.counters.sms_sent >= 1, "notice")
        sent_at = await h.now()

        def call_task() -> Task | None:
            with h.sessions() as session:
                return session.scalar(
                    select(Task)
                    .join(Case)
                    .join(Loan)
                    .where(Loan.loan_no == spec.loan_no, Task.kind == "PHONE_CALL")
                )

        task = await eventually(call_task, "the phone task")
        assert isinstance(task, Task) and task.due_at is not None
        waited = task.due_at - sent_at
        if one_way:
            assert abs(waited) < timedelta(minutes=5) and "短信无法回复" in task.detail
            history = (await h.status(handle)).history
            assert any("cannot be answered" in e.detail for e in history)
        else:
            assert waited > timedelta(days=1)
        await h.pay(handle, 1_000_000)
        await handle.result()
