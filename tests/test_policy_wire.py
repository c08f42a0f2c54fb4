"""collection-v6 sends the case's policy to the activities that enforce its rules again as
the changes against a frozen, named base (domain/policy_wire.py). The activities must
enforce the case's own rules from that compact input, exactly as from a whole policy, and
still take the whole policy that released runs (and their activities in flight) send."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError

from activities.cases import CaseActivities
from activities.sms import SmsActivities
from db.models import ContactAttempt
from domain import policy_wire
from domain.models import AssessRequest, SmsRequest, VisitRecord, VisitReport
from domain.policy import Policy, fast_policy
from domain.policy_wire import BASES, PolicyDelta, policy_delta
from domain.stages import Stage
from service.converter import DATA_CONVERTER
from tests.harness import OPEN_POLICY
from tests.test_activities import CountingGateway, new_loan, sms

HISTORIES = Path(__file__).parent / "histories"
NOW = datetime.now(UTC)

# A base is never edited: a case rebuilds its snapshotted policy from it, in activities run
# by later releases too. Other values are another base, under a new name.
PINNED = {
    "default-2026-11": "cf99eb36acc6a3e0f0fce9cf381101c2573470797d22956974dbaed92686bc28",
    "fast-2026-11": "14d4e733d59b6016b1728dc4bf8ae650e7b722564ee17654c64843911811d6ae",
}


def wire(value: object, kind: type) -> object:
    """`value` as a worker receives it: through the data converter, as JSON."""
    payload = DATA_CONVERTER.payload_converter.to_payloads([value])[0]
    return DATA_CONVERTER.payload_converter.from_payloads([payload], [kind])[0]


def compact(request: object) -> object:
    """A request as a collection-v6 run schedules it (workflows/case.py, Case.act)."""
    return dataclasses.replace(request, policy=None, rules=policy_delta(request.policy))


def test_the_bases_are_frozen() -> None:
    for name, values in BASES.items():
        digest = hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()
        assert digest == PINNED[name], f"base {name} changed: add a new base instead"
    assert set(BASES) == set(PINNED)
    # Not the code's defaults: a release changing Policy() leaves the bases as they were.
    assert BASES["default-2026-11"]["sms_per_day"] == 2
    assert BASES["default-2026-11"]["quiet_start"] == "21:00"


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        fast_policy(),
        fast_policy(contact_wait_seconds=1, visit_deadline_seconds=3600),
        OPEN_POLICY.with_overrides(
            {
                "sms_per_day": 1,
                "sms_over_cap": "DROP",
                "team_visit_risk_tiers": ["HIGH", "MEDIUM"],
                "team_visit_remote": False,
                "version": "branch-QX01-7",
            }
        ),
    ],
)
def test_the_delta_rebuilds_the_exact_policy_and_is_small(policy: Policy) -> None:
    delta = wire(policy_delta(policy), PolicyDelta)
    assert delta.policy() == policy
    whole = len(json.dumps(dataclasses.asdict(policy)))
    assert len(json.dumps(dataclasses.asdict(delta))) < whole / 3


def test_a_newer_releases_policy_is_retried_for_a_newer_worker_not_guessed(sessions) -> None:
    """In a rolling deploy a newer case worker may schedule for an older sms worker: a base or
    a field it does not know is not guessed, and the case is not failed for it: the task is
    retried until a worker of the newer release takes it. A malformed value is refused."""
    loan_no = new_loan(sessions)
    acts = SmsActivities(sessions, CountingGateway())
    for rules in (
        PolicyDelta("default-2099-01", {}),
        PolicyDelta("default-2026-11", {"sms_per_month": 20}),
    ):
        request = dataclasses.replace(sms(loan_no, "u1"), policy=None, rules=rules)
        with pytest.raises(ApplicationError) as err:
            acts.send_sms(request)
        assert not err.value.non_retryable and err.value.type == "PolicyFromNewerRelease"
    malformed = PolicyDelta("default-2026-11", {"visit_team_size": "x"})
    request = dataclasses.replace(sms(loan_no, "u2"), policy=None, rules=malformed)
    with pytest.raises(ApplicationError) as err:
        acts.send_sms(request)
    assert err.value.non_retryable and err.value.type == "InvalidInput"
    both = dataclasses.replace(sms(loan_no, "u3"), rules=PolicyDelta("default-2026-11", {}))
    with pytest.raises(ApplicationError) as err:
        acts.send_sms(both)
    assert err.value.non_retryable and "both" in str(err.value)


def test_a_field_a_later_release_dropped_from_policy_is_dropped_from_the_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bases are never edited; a release whose Policy no longer has a field still rebuilds
    a case's policy from them (the field dropped, as the whole policy's decoding drops it)."""
    base = {**BASES["default-2026-11"], "retired_field_seconds": 5}
    monkeypatch.setattr(policy_wire, "BASES", {**BASES, "default-2026-11": base})
    changes = {"sms_per_day": 1}
    assert PolicyDelta("default-2026-11", changes).policy() == Policy(sms_per_day=1)
    # A case's change naming it (scheduled by an older worker) too, once it is retired.
    changes = {"sms_per_day": 1, "retired_field_seconds": 9}
    with pytest.raises(policy_wire.PolicyFromNewerRelease):
        PolicyDelta("default-2026-11", changes).policy()
    monkeypatch.setattr(policy_wire, "RETIRED_FIELDS", frozenset({"retired_field_seconds"}))
    assert PolicyDelta("default-2026-11", changes).policy() == Policy(sms_per_day=1)


def test_a_compact_sms_input_enforces_the_cases_own_caps(sessions) -> None:
    gateway = CountingGateway()
    acts = SmsActivities(sessions, gateway)
    loan_no = new_loan(sessions)
    one_a_day = OPEN_POLICY.with_overrides({"sms_per_day": 1})  # not a base's value
    first = wire(compact(sms(loan_no, "c1", one_a_day)), SmsRequest)
    assert first.policy is None and first.rules.changes["sms_per_day"] == 1
    assert acts.send_sms(first).status == "SENT"
    deferred = acts.send_sms(wire(compact(sms(loan_no, "c2", one_a_day)), SmsRequest))
    assert deferred.status == "DEFERRED" and deferred.not_before > NOW
    drop = one_a_day.with_overrides({"sms_over_cap": "DROP"})
    dropped = acts.send_sms(wire(compact(sms(loan_no, "c3", drop)), SmsRequest))
    assert (dropped.status, dropped.reason) == ("BLOCKED", "contact cap reached")
    assert len(gateway.sent) == 1


def test_a_released_runs_whole_policy_sms_input_still_works(sessions) -> None:
    """The send_sms input of a collection-v5 run, as its history holds it."""
    history = json.loads((HISTORIES / "v5" / "test_paid_after_first_sms.json").read_text())
    scheduled = next(
        e["activityTaskScheduledEventAttributes"]
        for e in history["events"]
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
        == "send_sms"
    )
    raw = scheduled["input"]["payloads"][0]
    payload = Payload(
        metadata={k: base64.b64decode(v) for k, v in raw["metadata"].items()},
        data=base64.b64decode(raw["data"]),
    )
    released = DATA_CONVERTER.payload_converter.from_payloads([payload], [SmsRequest])[0]
    assert released.rules is None and released.policy is not None
    loan_no = new_loan(sessions)
    one_a_day = released.policy.with_overrides({"sms_per_day": 1, "quiet_start": "00:00"})
    one_a_day = one_a_day.with_overrides({"quiet_end": "00:00"})
    request = dataclasses.replace(released, loan_no=loan_no, key="r1", policy=one_a_day)
    acts = SmsActivities(sessions, CountingGateway())
    assert acts.send_sms(request).status == "SENT"
    again = dataclasses.replace(request, key="r2")
    assert acts.send_sms(again).status == "DEFERRED"  # the whole policy's cap, enforced


def test_a_compact_visit_record_logs_the_cases_rule_set(sessions) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    policy = fast_policy(version="branch-QX01-7")
    report = VisitReport("MET", ["QX01-C01", "QX01-C02"], NOW, "talked at the door")
    record = wire(
        compact(VisitRecord(loan_no, 1, report, Stage.FIELD_VISIT, "", policy)), VisitRecord
    )
    assert record.policy is None
    acts.record_visit(record)
    with sessions() as session:
        row = session.scalar(select(ContactAttempt).where(ContactAttempt.channel == "VISIT"))
        assert row.ruleset == "cba-2026-fast/branch-QX01-7"


def test_a_compact_assessment_input_uses_the_cases_plan_bounds(sessions) -> None:
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    facts = acts.load_case(loan_no)
    whole = acts.assess_case(AssessRequest(facts, OPEN_POLICY, NOW))
    short = OPEN_POLICY.with_overrides({"max_installments": 2})
    compact_request = wire(compact(AssessRequest(facts, short, NOW)), AssessRequest)
    assert compact_request.policy is None
    assessed = acts.assess_case(compact_request)
    assert "2 monthly installments" in assessed.goal
    assert assessed.goal != whole.goal
