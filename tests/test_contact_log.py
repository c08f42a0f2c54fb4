"""Issue 14, item 7: every contact decision is a row of the contact log (`contact_attempts`),
with the deciding rule and the rule set and policy version in force.

The send activity is driven with its clock set by the test (each test on SQLite and
PostgreSQL); times are the borrower's local hours on days counted from today, never a
calendar date.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import activities.sms as sms_module
from activities.cases import CaseActivities
from activities.sms import SmsActivities
from db.models import ContactAttempt
from domain.evidence import KEY_LENGTH, Rule, cap_rule, decision_key
from domain.models import VisitRecord, VisitReport
from domain.policy import Policy
from domain.stages import Stage
from tests.test_activities import CountingGateway, new_loan, sms, transition

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT = Policy()  # quiet hours 21:00-08:00, 2 a day, 5 a week
LABEL = "cba-2026/default-2026-11"


def local(days_from_today: int, hour: int, minute: int = 0) -> datetime:
    today = datetime.now(SHANGHAI).date()
    return datetime.combine(
        today + timedelta(days=days_from_today), time(hour, minute), tzinfo=SHANGHAI
    )


class Sender:
    """The send activity with a clock the test sets."""

    def __init__(self, sessions, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        self.sessions = sessions
        self.gateway = CountingGateway()
        self.acts = SmsActivities(sessions, self.gateway)
        self.now = datetime.now(UTC)
        monkeypatch.setattr(sms_module, "activity_now", lambda: self.now)

    def send(self, loan_no: str, key: str, at: datetime, policy: Policy = DEFAULT, **kw):  # type: ignore[no-untyped-def]
        self.now = at.astimezone(UTC)
        return self.acts.send_sms(sms(loan_no, key, policy, **kw))

    def log(self) -> list[tuple[str, str, str, str]]:
        with self.sessions() as session:
            rows = session.scalars(select(ContactAttempt).order_by(ContactAttempt.id)).all()
        return [(r.channel, r.outcome, r.rule, r.ruleset) for r in rows]


def test_assumptions() -> None:
    assert f"{DEFAULT.ruleset}/{DEFAULT.version}" == LABEL
    assert (DEFAULT.quiet_start, DEFAULT.quiet_end) == ("21:00", "08:00")


def test_a_message_deferred_by_quiet_hours_then_sent_leaves_both_decisions(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Sender(sessions, monkeypatch)
    loan = new_loan(sessions)
    night = s.send(loan, f"{loan}:n:1", local(1, 23))
    assert (night.status, night.reason) == ("DEFERRED", "quiet hours")
    assert night.not_before == local(2, 8)
    # Temporal's retry of that attempt is the same decision: no second row.
    assert s.send(loan, f"{loan}:n:1", local(1, 23)).status == "DEFERRED"
    assert s.log() == [("SMS", "DEFERRED", "quiet_hours", LABEL)]
    assert s.send(loan, f"{loan}:n:1", local(2, 8, 30)).status == "SENT"
    assert s.log() == [("SMS", "DEFERRED", "quiet_hours", LABEL), ("SMS", "SENT", "", LABEL)]
    with sessions() as session:
        rows = session.scalars(select(ContactAttempt).order_by(ContactAttempt.id)).all()
    assert [r.at for r in rows] == [local(1, 23), local(2, 8, 30)]
    assert all(r.party == "borrower" for r in rows)
    assert "quiet hours" in rows[0].detail and "00:00 UTC" in rows[0].detail  # 08:00 local


def test_a_second_deferral_later_is_a_row_of_its_own(
    sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferred at night, then at 08:00 by the daily cap other messages filled meanwhile:
    two decisions, two rows; the send after them a third."""
    s = Sender(sessions, monkeypatch)
    loan = new_loan(sessions)
    assert s.send(loan, f"{loan}:late:1", local(1, 22)).status == "DEFERRED"
    for n in (1, 2):  # two others of the day go out first (08:00 and 08:01)
        assert s.send(loan, f"{loan}:other:{n}", local(2, 8, n - 1)).status == "SENT"
    held = s.send(loan, f"{loan}:late:1", local(2, 8, 5))
    assert (held.status, held.not_before) == ("DEFERRED", local(3, 8))
    assert s.send(loan, f"{loan}:late:1", local(3, 8)).status == "SENT"
    assert s.log() == [
        ("SMS", "DEFERRED", "quiet_hours", LABEL),
        ("SMS", "SENT", "", LABEL),
        ("SMS", "SENT", "", LABEL),
        ("SMS", "DEFERRED", "daily_cap", LABEL),
        ("SMS", "SENT", "", LABEL),
    ]


def test_the_weekly_cap_is_named_as_such(sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Sender(sessions, monkeypatch)
    loan = new_loan(sessions)
    for day in range(-5, 0):  # one a day on each of the last five days
        assert s.send(loan, f"{loan}:w:{day}", local(day, 12)).status == "SENT"
    held = s.send(loan, f"{loan}:w:0", local(0, 12))
    assert (held.status, held.reason) == ("DEFERRED", "contact cap reached")
    assert s.log()[-1] == ("SMS", "DEFERRED", "weekly_cap", LABEL)


def test_refusals_are_rows_named_by_their_rule(sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Sender(sessions, monkeypatch)
    custom = DEFAULT.with_overrides({"version": "county-2027-01"})
    opted = new_loan(sessions, sms_opted_out=True)
    assert s.send(opted, f"{opted}:o:1", local(0, 12), custom).status == "BLOCKED"
    no_phone = new_loan(sessions, phone=None)
    assert s.send(no_phone, f"{no_phone}:p:1", local(0, 12)).status == "BLOCKED"
    told = new_loan(sessions)
    blocked = s.send(told, f"{told}:t:1", local(0, 12), blocked_reason="not sent: outside hours")
    assert blocked.status == "BLOCKED"
    closed = new_loan(sessions)
    CaseActivities(sessions).record_transition(transition(closed, 1, Stage.CANCELLED))
    assert s.send(closed, f"{closed}:c:1", local(0, 12)).status == "BLOCKED"
    # The same refusal again (a retry) is not a second row.
    assert s.send(closed, f"{closed}:c:1", local(0, 12)).status == "BLOCKED"
    assert s.log() == [
        ("SMS", "BLOCKED", "opted_out", "cba-2026/county-2027-01"),
        ("SMS", "BLOCKED", "no_number", LABEL),
        ("SMS", "BLOCKED", "blocked_by_workflow", LABEL),
        ("SMS", "BLOCKED", "case_closed", LABEL),
    ]
    assert s.gateway.sent == []


def test_a_visit_carries_its_cases_rule_set(sessions) -> None:
    loan = new_loan(sessions)
    policy = DEFAULT.with_overrides({"version": "county-2027-01"})
    report = VisitReport("MET", ["QX01-C01", "QX01-C02"], datetime.now(UTC), "")
    CaseActivities(sessions).record_visit(
        VisitRecord(loan, 1, report, Stage.FIELD_VISIT, "", policy)
    )
    with sessions() as session:
        row = session.scalar(select(ContactAttempt))
    assert (row.channel, row.outcome, row.rule, row.ruleset) == (
        "VISIT",
        "MET",
        "",
        "cba-2026/county-2027-01",
    )


def test_decision_keys_fit_the_column_and_tell_decisions_apart() -> None:
    at = local(1, 8)
    assert decision_key("L1:sms:1", "DEFERRED", at, "quiet_hours") != decision_key(
        "L1:sms:1", "DEFERRED", at + timedelta(days=1), "quiet_hours"
    )
    long = decision_key("L" * 40 + ":g" * 8 + ":third_party_request:12345", "DEFERRED", at, "x")
    assert len(long) <= KEY_LENGTH and long.startswith("sms:") and long.endswith("Z")
    # The cap that frees up last names the deferral: two today (daily) and five this week
    # whose oldest leaves the week only in three days (weekly).
    noon = local(0, 12)
    assert cap_rule(noon, [noon, noon], DEFAULT) == Rule.DAILY_CAP
    week = [local(d, 12) for d in (-4, -3, -2, -1)] + [noon]
    assert cap_rule(noon, week, DEFAULT) == Rule.WEEKLY_CAP
    assert cap_rule(noon, [local(-6, 12), local(-1, 12), local(-1, 13), noon, noon], DEFAULT) == (
        Rule.DAILY_CAP
    )
