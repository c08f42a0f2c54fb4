"""What the contact log records of each decision: the rule that decided it, the rule set and
policy version in force, and a natural key per decision. Pure functions of their inputs.

A regulator reads every contact decision (sent, deferred, refused) as one row of the contact
log (`contact_attempts`): `rule` names the clause that stood in the way ("" when none did)
and `ruleset` the rule set and policy version the case ran under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from domain.policy import Policy
from domain.timerules import local_date

KEY_LENGTH = 120  # contact_attempts.key


class Rule(StrEnum):
    """The clause a deferral or refusal was decided by (contact_attempts.rule)."""

    QUIET_HOURS = "quiet_hours"
    DAILY_CAP = "daily_cap"
    WEEKLY_CAP = "weekly_cap"
    OPTED_OUT = "opted_out"
    NO_NUMBER = "no_number"
    CASE_CLOSED = "case_closed"
    NOT_NEEDED = "not_needed"
    THIRD_PARTY = "third_party"
    # The provider's own per-number or per-day limit (Aliyun's isv.BUSINESS_LIMIT_CONTROL).
    PROVIDER_LIMIT = "provider_limit"
    # Twilio's China route: 4 texts / 2 identical ones to a number in 24 hours.
    CHINA_ROUTE_LIMIT = "china_route_limit"
    # The workflow had already decided the message must not go (SmsRequest.blocked_reason)
    # for a reason not named above.
    BLOCKED_BY_WORKFLOW = "blocked_by_workflow"


# The activities' and the workflow's reasons, as they are worded (activities/sms.py,
# domain/case_rules.sms_block_reason), by the start of the text.
_REASONS: tuple[tuple[str, Rule], ...] = (
    ("quiet hours", Rule.QUIET_HOURS),
    ("borrower opted out", Rule.OPTED_OUT),
    ("no mobile number", Rule.NO_NUMBER),
    ("case closed", Rule.CASE_CLOSED),
    ("no longer needed", Rule.NOT_NEEDED),
    ("provider limit reached", Rule.PROVIDER_LIMIT),
    ("China route limit reached", Rule.CHINA_ROUTE_LIMIT),
)
CAP_REASON = "contact cap reached"
PROVIDER_LIMIT_REASON = "provider limit reached"
CHINA_ROUTE_REASON = "China route limit reached"


def ruleset_label(policy: Policy) -> str:
    """The rule set and the policy version that implements it: "cba-2026/default-2026-11"."""
    return f"{policy.ruleset}/{policy.version}"


def cap_rule(moment: datetime, sent: Iterable[datetime], policy: Policy) -> Rule:
    """Which cap holds a message back at `moment` (timerules.cap_release's reasoning): the
    weekly cap when it frees up later than the daily one would, else the daily cap."""
    today = local_date(moment, policy)
    days = [local_date(s, policy) for s in sent]
    daily = sum(1 for d in days if d == today) >= policy.sms_per_day
    weekly = sum(1 for d in days if today - d < timedelta(days=7)) >= policy.sms_per_week
    if weekly and not daily:
        return Rule.WEEKLY_CAP
    if weekly and daily:
        in_window = sorted(d for d in days if today - d < timedelta(days=7))
        frees = in_window[len(in_window) - policy.sms_per_week] + timedelta(days=7)
        return Rule.WEEKLY_CAP if frees > today + timedelta(days=1) else Rule.DAILY_CAP
    return Rule.DAILY_CAP


def sms_rule(reason: str, from_workflow: bool, cap: Rule | None = None) -> Rule:
    """The rule behind a deferred or refused SMS, from the reason it was given."""
    if reason.startswith(CAP_REASON):
        return cap or Rule.DAILY_CAP
    for start, rule in _REASONS:
        if reason.startswith(start):
            return rule
    return Rule.BLOCKED_BY_WORKFLOW if from_workflow else Rule.THIRD_PARTY


def decision_key(outbox_key: str, status: str, not_before: datetime | None, rule: str) -> str:
    """One row per decision: a retry of the same decision finds its row, a later deferral
    (another release time) or another refusal is a new one."""
    until = not_before.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") if not_before else rule
    key = f"sms:{outbox_key}:{status}:{until}"
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"sms:{digest}:{status}:{until}"[:KEY_LENGTH]
