"""The pure rules: quiet hours, caps, plans, money, policy, SMS length, masking."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.assessment import assess
from domain.models import CaseFacts, PlannedInstallment, PlanProposal
from domain.money import split_evenly, yuan
from domain.phones import PhoneError, normalize_phone
from domain.plans import PlanRejected, add_months, check_plan, monthly_plan
from domain.policy import Policy, PolicyError, fast_policy
from domain.privacy import mask_id_number, mask_phone
from domain.sms_text import segments
from domain.timerules import cap_release, in_quiet_hours, next_contact_time, quiet_hours_end

SH = ZoneInfo("Asia/Shanghai")
POLICY = Policy()


def sh(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [
        (sh(2026, 11, 29, 7, 59), True),
        (sh(2026, 11, 29, 8, 0), False),
        (sh(2026, 11, 29, 20, 59), False),
        (sh(2026, 11, 29, 21, 0), True),
        (sh(2026, 11, 29, 23, 30), True),
        (sh(2026, 11, 30, 0, 10), True),
    ],
)
def test_default_quiet_hours_are_21_to_8_shanghai(moment: datetime, quiet: bool) -> None:
    assert in_quiet_hours(moment, POLICY) is quiet
    assert in_quiet_hours(moment.astimezone(UTC), POLICY) is quiet  # the zone is the borrower's


def test_a_message_due_at_2330_goes_out_at_0800_next_morning() -> None:
    due = sh(2026, 11, 29, 23, 30).astimezone(UTC)
    assert quiet_hours_end(due, POLICY) == sh(2026, 11, 30, 8, 0)
    early = sh(2026, 11, 30, 6, 15)
    assert quiet_hours_end(early, POLICY) == sh(2026, 11, 30, 8, 0)
    assert quiet_hours_end(sh(2026, 11, 30, 9, 0), POLICY) == sh(2026, 11, 30, 9, 0)


def test_quiet_hours_are_a_policy_setting() -> None:
    evening = POLICY.with_overrides({"quiet_start": "20:00", "quiet_end": "09:00"})
    assert in_quiet_hours(sh(2026, 11, 29, 20, 30), evening)
    assert not in_quiet_hours(sh(2026, 11, 29, 20, 30), POLICY)
    off = POLICY.with_overrides({"quiet_start": "00:00", "quiet_end": "00:00"})
    assert not in_quiet_hours(sh(2026, 11, 29, 3, 0), off)


def test_daily_cap_moves_the_next_message_to_the_next_morning() -> None:
    now = sh(2026, 11, 29, 10, 0)
    sent = [sh(2026, 11, 29, 9, 0), sh(2026, 11, 29, 9, 30)]  # two today: the default cap
    assert cap_release(now, sent, POLICY) == sh(2026, 11, 30, 8, 0)
    assert next_contact_time(now, sent[:1], POLICY) == now


def test_weekly_cap_waits_for_the_oldest_day_to_leave_the_window() -> None:
    now = sh(2026, 11, 29, 10, 0)
    sent = [sh(2026, 11, 23 + i, 9, 0) for i in range(5)]  # 23rd .. 27th: five this week
    assert cap_release(now, sent, POLICY) == sh(2026, 11, 30, 8, 0)  # the 23rd drops out


def test_split_evenly_puts_the_remainder_on_the_last_installment() -> None:
    assert split_evenly(1_000_000, 3) == [333_333, 333_333, 333_334]
    assert sum(split_evenly(12_345_67, 7)) == 12_345_67
    assert split_evenly(5, 1) == [5]
    with pytest.raises(ValueError):
        split_evenly(100, 0)


def test_yuan_formats_fen_with_two_decimals() -> None:
    assert yuan(1) == "0.01" and yuan(10) == "0.10" and yuan(123456789) == "1,234,567.89"


def test_add_months_clamps_to_the_end_of_the_month() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)


NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def plan(*amounts: int, first_days: int = 10, step_days: int = 30) -> PlanProposal:
    return PlanProposal(
        [
            PlannedInstallment(NOW + timedelta(days=first_days + step_days * i), a)
            for i, a in enumerate(amounts)
        ],
        proposed_by="C01",
    )


def test_plan_must_cover_the_whole_debt_exactly() -> None:
    check_plan(plan(50_000, 50_000), 100_000, POLICY, NOW)
    with pytest.raises(PlanRejected, match="totals 999.99 yuan but the outstanding debt is"):
        check_plan(plan(50_000, 49_999), 100_000, POLICY, NOW)


@pytest.mark.parametrize(
    ("proposal", "message"),
    [
        (plan(*([10_000] * 25)), "at most 24"),
        (plan(5_000, 95_000), "installment 1: 50.00 yuan is below the minimum"),
        (plan(50_000, 50_000, first_days=-1), "installment 1: due date must be in the future"),
        (plan(50_000, 50_000, step_days=800), "installment 2: the plan may run at most 730"),
        (plan(50_000, 50_000, step_days=0), "installment 2: due dates must increase"),
        (plan(100_000, 0), "installment 2: amount must be positive"),
        (PlanProposal([], "C01"), "at least one installment"),
    ],
)
def test_plan_bounds_are_explained(proposal: PlanProposal, message: str) -> None:
    total = sum(i.amount_fen for i in proposal.installments)
    with pytest.raises(PlanRejected, match=message):
        check_plan(proposal, total, POLICY, NOW)


def test_last_installment_may_be_below_the_minimum() -> None:
    check_plan(plan(60_000, 60_000, 5_000), 125_000, POLICY, NOW)


def test_monthly_plan_with_down_payment() -> None:
    p = monthly_plan(1_000_000, 3, date(2026, 12, 10), POLICY, "C01", down_payment_fen=100_000)
    assert [i.amount_fen for i in p.installments] == [100_000, 300_000, 300_000, 300_000]
    assert p.first_is_down_payment
    due = [i.due_at.astimezone(SH) for i in p.installments]
    assert [d.date() for d in due] == [
        date(2026, 12, 10),
        date(2027, 1, 10),
        date(2027, 2, 10),
        date(2027, 3, 10),
    ]
    assert all((d.hour, d.minute) == (23, 59) for d in due)
    check_plan(p, 1_000_000, POLICY, NOW)


def test_policy_overrides_are_checked_by_name_and_type() -> None:
    assert POLICY.with_overrides({"max_renegotiations": 5}).max_renegotiations == 5
    with pytest.raises(PolicyError, match="unknown policy field 'grace_dayz'"):
        POLICY.with_overrides({"grace_dayz": 3})
    with pytest.raises(PolicyError, match="'grace_seconds' must be int"):
        POLICY.with_overrides({"grace_seconds": "5 days"})
    with pytest.raises(PolicyError, match="'quiet_start' must be HH:MM"):
        POLICY.with_overrides({"quiet_start": "9pm"})
    assert fast_policy().visit_deadline_seconds == 7


def facts(**kw: object) -> CaseFacts:
    values: dict[str, object] = dict(
        loan_no="L1",
        branch="QX01",
        region="青溪县",
        debt_fen=1_000_000,
        principal_fen=900_000,
        interest_fen=80_000,
        penalty_fen=20_000,
        overdue_since=date(2026, 10, 20),
        monthly_income_fen=300_000,
        household_size=3,
        remote=False,
        hostile=False,
        has_phone=True,
        sms_opted_out=False,
        disaster_affected=False,
        prior_broken_promises=0,
    )
    values.update(kw)
    return CaseFacts(**values)  # type: ignore[arg-type]


def test_assessment_tiers_and_team_rules() -> None:
    low = assess(facts(), POLICY, NOW)
    assert (low.risk_tier, low.strategy, low.team_required) == ("LOW", "REMIND_AND_PLAN", False)
    assert "10 monthly installments" in low.goal
    high = assess(
        facts(overdue_since=date(2026, 5, 1), prior_broken_promises=2, monthly_income_fen=50_000),
        POLICY,
        NOW,
    )
    assert (high.risk_tier, high.strategy, high.team_required) == ("HIGH", "TEAM_VISIT", True)
    assert assess(facts(remote=True), POLICY, NOW).team_required
    flood = assess(facts(disaster_affected=True), POLICY, NOW)
    assert flood.strategy == "HARDSHIP_RESTRUCTURE"


def test_sms_segments_follow_ucs2_and_gsm_limits() -> None:
    assert segments("你" * 70) == 1
    assert segments("你" * 71) == 2  # 67 per part once joined
    assert segments("你" * 134) == 2 and segments("你" * 135) == 3
    assert segments("a" * 160) == 1 and segments("a" * 161) == 2


def test_masking_keeps_only_what_identifies_nothing() -> None:
    assert mask_phone("+8613912345678") == "+86139****5678"
    assert mask_id_number("522401198001011234") == "**************1234"
    assert mask_phone(None) == "" and mask_id_number("") == ""


@pytest.mark.parametrize(
    "raw",
    [
        "13912345678",
        "139 1234 5678",
        "139-1234-5678",
        "１３９１２３４５６７８",
        "+86 139 1234 5678",
        "0086-13912345678",
        "8613912345678",
        "（139）1234－5678",
    ],
)
def test_mainland_mobiles_normalise_to_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+8613912345678"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("1391234567", "11-digit"),
        ("23912345678", "11-digit"),
        ("010-12345678", "11-digit"),
        ("+1 2", "international"),
        ("abc", "11-digit"),
    ],
)
def test_bad_numbers_are_refused_with_the_field(raw: str, why: str) -> None:
    with pytest.raises(PhoneError, match=f"phone: .*{why}"):
        normalize_phone(raw)


def test_foreign_numbers_keep_their_country_code() -> None:
    assert normalize_phone("+852 6123 4567") == "+85261234567"
