"""Collection policy as data: one default, overridable per case, snapshotted into the case.

Durations are whole seconds so that tests and benchmarks can run a case with the same
policy shape in seconds instead of days.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class PolicyError(ValueError):
    """A policy value that cannot be used; the message names the field."""


@dataclass
class Policy:
    version: str = "default-2026-11"
    # The named rule set this policy implements: the China Banking Association's 2026
    # 《金融机构个人消费类贷款催收工作指引（试行）》 by default. Each clause is a field below
    # (README: "Collection by the rules" maps clause → field → where enforced → test).
    ruleset: str = "cba-2026"
    # Borrower local time and the hours in which no contact is made (start == end: none).
    timezone: str = "Asia/Shanghai"
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    # Contact frequency per borrower; what to do with a message over the cap: DEFER or DROP.
    sms_per_day: int = 2
    sms_per_week: int = 5
    sms_over_cap: str = "DEFER"
    # "未经债务人同意，严禁在每日晚22:00至次日早8:00进行电话催收、外访催收及其他催收":
    # calls and visits only inside this window unless the borrower consented.
    contact_window_start: str = "08:00"
    contact_window_end: str = "22:00"
    # "尝试拨打次数当天不宜超过6次": unanswered call attempts a local day to one number.
    max_unanswered_calls_per_day: int = 6
    # "外访催收应安排不少于两名催收人员共同实施": collectors at every field visit.
    visit_team_size: int = 2
    # Third parties only after contact with the debtor is lost: an invalid number, or this
    # many failed attempts in a row (calls unanswered, SMS undelivered, nobody at home).
    contact_lost_after_failures: int = 3
    # Unrelated third parties (not guarantor or co-borrower): at most one contact a week.
    third_party_interval_seconds: int = 7 * DAY
    # Records of collection are kept at least this long (the 2011 measures, Art. 68: 2 years).
    record_retention_days: int = 730
    # Initial contact: how long to wait for a reply or payment before a field visit.
    contact_wait_seconds: int = 3 * DAY
    # Field visit: deadline for a report, then a reminder, then the supervisor.
    visit_deadline_seconds: int = 7 * DAY
    visit_reminder_grace_seconds: int = 2 * DAY
    escalation_grace_seconds: int = 3 * DAY
    revisit_delay_seconds: int = 3 * DAY
    max_unreached_visits: int = 3
    max_refusals: int = 2
    # Negotiation and signature deadlines; failures before the case is a dead end.
    negotiation_deadline_seconds: int = 7 * DAY
    signature_deadline_seconds: int = 7 * DAY
    max_failed_negotiations: int = 2
    # Plan bounds.
    max_installments: int = 24
    min_installment_fen: int = 10_000
    max_plan_seconds: int = 730 * DAY
    # Follow-up: reminder lead, grace after a due date, periodic revisits, renegotiations.
    reminder_lead_seconds: int = 3 * DAY
    grace_seconds: int = 5 * DAY
    revisit_interval_seconds: int = 30 * DAY
    max_renegotiations: int = 2
    # Team visits: a team of two for these risk tiers, for remote places, after hostility.
    team_visit_risk_tiers: list[str] = field(default_factory=lambda: ["HIGH"])
    team_visit_remote: bool = True
    team_visit_after_hostile: bool = True
    # Visit check-in / check-out (staff safety): how long a visit is expected to last (longer
    # in a remote village), the grace after it before the branch supervisor is alerted, and
    # how long an unacknowledged alert waits before the branch head is alerted too.
    visit_expected_seconds: int = 2 * HOUR
    visit_expected_remote_seconds: int = 4 * HOUR
    visit_overdue_grace_seconds: int = 30 * MINUTE
    alert_head_after_seconds: int = 30 * MINUTE
    # After a HOSTILE visit every later visit is made by at least this many collectors, until
    # a supervisor lifts it.
    hostile_visit_team_size: int = 3
    # Safety training (issue 15): the dashboard flags, and the supervisors' daily reminder
    # lists, collectors whose training expires within this many days (or has expired, or
    # none is on record).
    training_warning_days: int = 30
    # A dead end's legal review: a decision is due within this long, then the branch head is
    # asked (again after each further period) until there is one.
    legal_review_seconds: int = 10 * DAY
    # Complaints (投诉): acknowledged within this many working days (Monday to Friday, the
    # policy's time zone) and resolved within the period; collection contact (SMS, calls)
    # pauses while one is open when the policy says so.
    complaint_ack_working_days: int = 1
    complaint_resolve_seconds: int = 15 * DAY
    complaint_pauses_contact: bool = True
    # A household in hardship as stated at a visit (one of these): its next plan may be
    # longer (help recorded, issue 15).
    longer_plan_hardships: list[str] = field(
        default_factory=lambda: ["DISASTER", "ILLNESS", "HARVEST_FAILURE"]
    )
    hardship_max_installments: int = 36
    hardship_max_plan_seconds: int = 1095 * DAY
    # Hardship holds may last at most this long.
    max_hold_seconds: int = 180 * DAY
    # A dead end below this outstanding amount is written off rather than sent to court
    # (0: always legal escalation).
    write_off_below_fen: int = 0
    # A later export changes the debt of a case whose agreement is signed: the agreement is
    # not rewritten; a change of at least this much asks the collectors to renegotiate
    # (0: never ask, the plan stands as signed).
    renegotiate_debt_change_fen: int = 10_000
    # The loan export's sanity rule: a row whose interest plus penalty is more than this
    # percentage of its outstanding principal (of the loan amount once the principal is
    # repaid) is refused as a likely shifted column or fen-for-yuan slip. 100: at most equal
    # to the principal ("利不过本"); contract interest plus the usual 30-50 % penalty surcharge
    # reaches that only after some six years overdue, so no real row of a cooperative is
    # refused, while a misplaced column (interest in the principal's place) nearly always is.
    # A whole percentage, not a ratio, so that a policy file can set it as an integer.
    max_interest_penalty_percent: int = 100
    # Promises to pay (承诺还款): the date at most this many days ahead; a broken promise
    # sends the case to this stage (FIELD_VISIT or NEGOTIATION); more broken promises than
    # this make the case a dead end.
    max_promise_days: int = 14
    promise_broken_next: str = "FIELD_VISIT"
    max_broken_promises: int = 3
    # A promise is judged by the payments' own dates, but payment files arrive late: after
    # the end of the promised date the case waits this long before calling it broken.
    promise_grace_seconds: int = DAY
    # Waivers and settlements (息费减免, 一次性结清): what each role may approve, in fen, of
    # interest and penalty together and of principal; beyond the branch head's limits a
    # proposal is refused. An unanswered request expires after waiver_decision_seconds.
    waiver_collector_limit_fen: int = 20_000
    waiver_supervisor_limit_fen: int = 200_000
    waiver_head_limit_fen: int = 2_000_000
    waiver_collector_principal_fen: int = 0
    waiver_supervisor_principal_fen: int = 0
    waiver_head_principal_fen: int = 100_000
    waiver_decision_seconds: int = 3 * DAY
    # An approved settlement is conditional: the lump sum must be paid within this long of
    # the approval, else it lapses and the debt stays whole.
    settlement_pay_seconds: int = 14 * DAY
    # Whether core banking books an approved waiver at once, so that the next export's
    # interest and penalty already lack it (then a debt update must not take it off again).
    # False: the waiver is booked when the borrower settles (还本免息), and until then the
    # exports still carry the full figures, from which the case takes the waiver off.
    core_books_waivers: bool = False
    # A day of the policy's clock (a second in fast_policy): strategy treatments give their
    # durations in days of this length (domain/strategy.py).
    day_seconds: int = DAY
    # How long one attempt of these activities may take before Temporal retries it on
    # another worker (a crashed worker is noticed after this long). Not scaled by fast_policy.
    sms_attempt_timeout_s: int = 30
    render_attempt_timeout_s: int = 120
    # Weak signal (issue 15): an action queued on a collector's phone comes with the time
    # the phone recorded it. That time may lie at most `offline_clock_skew_minutes` ahead
    # of the server's clock (the skew every recorded time is allowed) and, for an action
    # sent with the phone's id, at most `offline_max_age_hours` back. Wall-clock minutes and
    # hours (phones keep real time): not scaled by fast_policy.
    offline_clock_skew_minutes: int = 10
    offline_max_age_hours: int = 48

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            counted = f.name.endswith(("_seconds", "_fen", "_s", "_minutes", "_hours"))
            if counted or f.name.startswith(("max_", "sms_per")):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise PolicyError(f"policy field {f.name!r} must be a whole number >= 0")
        for name in ("quiet_start", "quiet_end", "contact_window_start", "contact_window_end"):
            if not _HHMM.match(getattr(self, name)):
                value = getattr(self, name)
                raise PolicyError(f"policy field {name!r} must be HH:MM, got {value!r}")
        if self.sms_over_cap not in ("DEFER", "DROP"):
            raise PolicyError("policy field 'sms_over_cap' must be DEFER or DROP")
        if self.ruleset == "cba-2026":
            self._check_cba_2026()
        if self.promise_broken_next not in ("FIELD_VISIT", "NEGOTIATION"):
            raise PolicyError(
                "policy field 'promise_broken_next' must be FIELD_VISIT or NEGOTIATION"
            )
        if (
            isinstance(self.training_warning_days, bool)
            or not isinstance(self.training_warning_days, int)
            or not 0 <= self.training_warning_days <= 365
        ):
            raise PolicyError("policy field 'training_warning_days' must be 0 to 365 days")
        if self.max_installments < 1:
            raise PolicyError("policy field 'max_installments' must be at least 1")

    def _check_cba_2026(self) -> None:
        """A policy may be stricter than the guideline it names, never looser."""
        start, end = self.contact_window
        if not (8 * 60 <= start < end <= 22 * 60):
            raise PolicyError(
                "policy fields 'contact_window_start'/'contact_window_end': cba-2026 allows "
                "calls and visits only within 08:00-22:00 without consent"
            )
        if not 1 <= self.max_unanswered_calls_per_day <= 6:
            raise PolicyError("policy field 'max_unanswered_calls_per_day': cba-2026 allows 6")
        if self.visit_team_size < 2:
            raise PolicyError("policy field 'visit_team_size': cba-2026 requires at least 2")
        if self.contact_lost_after_failures < 1:
            raise PolicyError("policy field 'contact_lost_after_failures': at least 1")
        if self.record_retention_days < 730:
            raise PolicyError("policy field 'record_retention_days': cba-2026 keeps 2 years")

    def with_overrides(self, overrides: dict[str, Any]) -> Policy:
        """A copy with some fields replaced; unknown fields and wrong types are refused."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for name, value in overrides.items():
            if name not in known:
                raise PolicyError(f"unknown policy field {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool) != isinstance(value, bool) or (
                not isinstance(value, type(current))
            ):
                raise PolicyError(
                    f"policy field {name!r} must be {type(current).__name__}, got {value!r}"
                )
        return dataclasses.replace(self, **overrides)

    def timezone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def contact_window(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight: calls and visits only inside."""
        return _minutes(self.contact_window_start), _minutes(self.contact_window_end)

    @property
    def quiet_hours(self) -> tuple[int, int]:
        """(start, end) in minutes after local midnight."""
        return _minutes(self.quiet_start), _minutes(self.quiet_end)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def load_policy(path: str | Path | None) -> Policy:
    """The default policy, with the overrides of a TOML file (a flat table) if given."""
    base = Policy()
    if path is None:
        return base
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return base.with_overrides(data.get("policy", data))


def fast_policy(**overrides: Any) -> Policy:
    """Every duration in seconds instead of days: for demos, dev-server tests and benchmarks."""
    base = Policy()
    scaled = {
        f.name: max(1, getattr(base, f.name) // DAY)
        for f in dataclasses.fields(base)
        if f.name.endswith("_seconds")
    }
    scaled.update(quiet_start="00:00", quiet_end="00:00", sms_per_day=100, sms_per_week=500)
    # Calls and visits at any hour: a fast demo's "day" has no night (start == end: open),
    # so this is the rule set with its clock sped up, named as such in every record.
    scaled.update(contact_window_start="00:00", contact_window_end="00:00", ruleset="cba-2026-fast")
    scaled.update(overrides)
    return base.with_overrides(scaled)
