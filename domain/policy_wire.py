"""The case's policy in activity inputs (collection-v6): as the changes against a frozen,
named base rather than whole (~2 KB of JSON, a third of the bytes of the activities that
carry it: the SMS, the assessment, the visit record, the agreement render).

A base is a literal here, never `Policy()`: a later release may change the code's defaults,
and a case's snapshotted rules must never change under it. So a base is never edited (its
values are pinned by tests/test_policy_wire.py): another set of values is another base, with
a new name. The activity rebuilds the case's exact policy (`PolicyDelta.policy()`: base
values, then the changes) and enforces its rules with it, as it did with the whole policy;
every field the base does not name travels among the changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from domain.policy import Policy, PolicyError

# The default policy of release default-2026-11 (rule set cba-2026).
_DEFAULT_2026_11: dict[str, Any] = {
    "version": "default-2026-11",
    "ruleset": "cba-2026",
    "timezone": "Asia/Shanghai",
    "quiet_start": "21:00",
    "quiet_end": "08:00",
    "sms_per_day": 2,
    "sms_per_week": 5,
    "sms_over_cap": "DEFER",
    "contact_window_start": "08:00",
    "contact_window_end": "22:00",
    "max_unanswered_calls_per_day": 6,
    "visit_team_size": 2,
    "contact_lost_after_failures": 3,
    "third_party_interval_seconds": 604800,
    "record_retention_days": 730,
    "contact_wait_seconds": 259200,
    "visit_deadline_seconds": 604800,
    "visit_reminder_grace_seconds": 172800,
    "escalation_grace_seconds": 259200,
    "revisit_delay_seconds": 259200,
    "max_unreached_visits": 3,
    "max_refusals": 2,
    "negotiation_deadline_seconds": 604800,
    "signature_deadline_seconds": 604800,
    "max_failed_negotiations": 2,
    "max_installments": 24,
    "min_installment_fen": 10000,
    "max_plan_seconds": 63072000,
    "reminder_lead_seconds": 259200,
    "grace_seconds": 432000,
    "revisit_interval_seconds": 2592000,
    "max_renegotiations": 2,
    "team_visit_risk_tiers": ["HIGH"],
    "team_visit_remote": True,
    "team_visit_after_hostile": True,
    "visit_expected_seconds": 7200,
    "visit_expected_remote_seconds": 14400,
    "visit_overdue_grace_seconds": 1800,
    "alert_head_after_seconds": 1800,
    "hostile_visit_team_size": 3,
    "training_warning_days": 30,
    "legal_review_seconds": 864000,
    "complaint_ack_working_days": 1,
    "complaint_resolve_seconds": 1296000,
    "complaint_pauses_contact": True,
    "longer_plan_hardships": ["DISASTER", "ILLNESS", "HARVEST_FAILURE"],
    "hardship_max_installments": 36,
    "hardship_max_plan_seconds": 94608000,
    "max_hold_seconds": 15552000,
    "write_off_below_fen": 0,
    "renegotiate_debt_change_fen": 10000,
    "max_interest_penalty_percent": 100,
    "max_promise_days": 14,
    "promise_broken_next": "FIELD_VISIT",
    "max_broken_promises": 3,
    "promise_grace_seconds": 86400,
    "waiver_collector_limit_fen": 20000,
    "waiver_supervisor_limit_fen": 200000,
    "waiver_head_limit_fen": 2000000,
    "waiver_collector_principal_fen": 0,
    "waiver_supervisor_principal_fen": 0,
    "waiver_head_principal_fen": 100000,
    "waiver_decision_seconds": 259200,
    "settlement_pay_seconds": 1209600,
    "core_books_waivers": False,
    "day_seconds": 86400,
    "sms_attempt_timeout_s": 30,
    "render_attempt_timeout_s": 120,
    "offline_clock_skew_minutes": 10,
    "offline_max_age_hours": 48,
}
# fast_policy() of the same release (rule set cba-2026-fast: every day a second), which the
# demos, the dev-server tests and the benchmark run.
_FAST_2026_11: dict[str, Any] = {
    "version": "default-2026-11",
    "ruleset": "cba-2026-fast",
    "timezone": "Asia/Shanghai",
    "quiet_start": "00:00",
    "quiet_end": "00:00",
    "sms_per_day": 100,
    "sms_per_week": 500,
    "sms_over_cap": "DEFER",
    "contact_window_start": "00:00",
    "contact_window_end": "00:00",
    "max_unanswered_calls_per_day": 6,
    "visit_team_size": 2,
    "contact_lost_after_failures": 3,
    "third_party_interval_seconds": 7,
    "record_retention_days": 730,
    "contact_wait_seconds": 3,
    "visit_deadline_seconds": 7,
    "visit_reminder_grace_seconds": 2,
    "escalation_grace_seconds": 3,
    "revisit_delay_seconds": 3,
    "max_unreached_visits": 3,
    "max_refusals": 2,
    "negotiation_deadline_seconds": 7,
    "signature_deadline_seconds": 7,
    "max_failed_negotiations": 2,
    "max_installments": 24,
    "min_installment_fen": 10000,
    "max_plan_seconds": 730,
    "reminder_lead_seconds": 3,
    "grace_seconds": 5,
    "revisit_interval_seconds": 30,
    "max_renegotiations": 2,
    "team_visit_risk_tiers": ["HIGH"],
    "team_visit_remote": True,
    "team_visit_after_hostile": True,
    "visit_expected_seconds": 1,
    "visit_expected_remote_seconds": 1,
    "visit_overdue_grace_seconds": 1,
    "alert_head_after_seconds": 1,
    "hostile_visit_team_size": 3,
    "training_warning_days": 30,
    "legal_review_seconds": 10,
    "complaint_ack_working_days": 1,
    "complaint_resolve_seconds": 15,
    "complaint_pauses_contact": True,
    "longer_plan_hardships": ["DISASTER", "ILLNESS", "HARVEST_FAILURE"],
    "hardship_max_installments": 36,
    "hardship_max_plan_seconds": 1095,
    "max_hold_seconds": 180,
    "write_off_below_fen": 0,
    "renegotiate_debt_change_fen": 10000,
    "max_interest_penalty_percent": 100,
    "max_promise_days": 14,
    "promise_broken_next": "FIELD_VISIT",
    "max_broken_promises": 3,
    "promise_grace_seconds": 1,
    "waiver_collector_limit_fen": 20000,
    "waiver_supervisor_limit_fen": 200000,
    "waiver_head_limit_fen": 2000000,
    "waiver_collector_principal_fen": 0,
    "waiver_supervisor_principal_fen": 0,
    "waiver_head_principal_fen": 100000,
    "waiver_decision_seconds": 3,
    "settlement_pay_seconds": 14,
    "core_books_waivers": False,
    "day_seconds": 1,
    "sms_attempt_timeout_s": 30,
    "render_attempt_timeout_s": 120,
    "offline_clock_skew_minutes": 10,
    "offline_max_age_hours": 48,
}

BASES: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        "default-2026-11": MappingProxyType(_DEFAULT_2026_11),
        "fast-2026-11": MappingProxyType(_FAST_2026_11),
    }
)


_FIELDS = tuple(f.name for f in dataclasses.fields(Policy))


# Fields a release removed from Policy: a case's changes that still name one (scheduled by
# an older release's worker) drop it, as the whole policy's decoding does. Add a field here
# when Policy loses it; never remove one.
RETIRED_FIELDS: frozenset[str] = frozenset()


class PolicyFromNewerRelease(PolicyError):
    """A policy this release cannot rebuild: sent by a newer release (a rolling deploy)."""


@dataclass
class PolicyDelta:
    """A case's policy as the fields that differ from the frozen base `base`."""

    base: str
    changes: dict[str, Any] = field(default_factory=dict)

    def policy(self) -> Policy:
        """The case's exact policy. PolicyFromNewerRelease for a base or a field this release
        does not know (a newer release's case worker scheduled it: a worker of that release
        must take it); a base's field that this release's Policy no longer has is dropped,
        as the whole policy's decoding drops it."""
        values = BASES.get(self.base)
        if values is None:
            raise PolicyFromNewerRelease(f"unknown policy base {self.base!r}")
        if unknown := sorted(set(self.changes) - set(_FIELDS) - RETIRED_FIELDS):
            raise PolicyFromNewerRelease(f"unknown policy fields {unknown}")
        merged = {k: list(v) if isinstance(v, list) else v for k, v in values.items()}
        merged.update(self.changes)
        return Policy(**{k: v for k, v in merged.items() if k in _FIELDS})


def policy_delta(policy: Policy) -> PolicyDelta:
    """`policy` against the base it differs least from (the first such, in BASES order):
    deterministic, as the workflow needs."""
    values = {f: getattr(policy, f) for f in _FIELDS}
    best: PolicyDelta | None = None
    for name, base in BASES.items():
        changes = {k: v for k, v in values.items() if k not in base or base[k] != v}
        changes = {k: list(v) if isinstance(v, list) else v for k, v in changes.items()}
        if best is None or len(changes) < len(best.changes):
            best = PolicyDelta(name, changes)
    assert best is not None
    return best


def case_policy(policy: Policy | None, rules: PolicyDelta | None) -> Policy:
    """An activity input's policy: whole (released runs, and callers outside a case) or as
    `rules` (collection-v6); PolicyError when it has neither."""
    if rules is not None:
        if policy is not None:
            raise PolicyError("the input has both a whole policy and its changes (rules)")
        return rules.policy()
    if policy is None:
        raise PolicyError("the input has no policy")
    return policy
