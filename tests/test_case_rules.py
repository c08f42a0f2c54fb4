"""The case's decisions that need no Temporal (domain/case_rules.py, domain/installments.py,
domain/human_input.py): closing, dead ends, the visit ladder, SMS blocks, installment
coverage, holds moving a plan, and every refusal of human input naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from domain import human_input as check
from domain.case_rules import (
    VisitStep,
    closing_decision,
    dead_end_stage,
    next_overdue_phase,
    outstanding,
    remember_send,
    sms_block_reason,
    visit_step,
)
from domain.installments import first_uncovered, is_covered, moved_for_hold, statuses
from domain.models import (
    AgreementRef,
    CaseState,
    CheckOut,
    CloseRequest,
    HardshipHold,
    Hold,
    Installment,
    LiftHold,
    Plan,
    PlannedInstallment,
    PlanProposal,
    Reassignment,
    SignatureConfirmation,
    VisitInProgress,
    VisitReport,
)
from domain.policy import Policy
from domain.stages import Stage, VisitOutcome

# Noon in Shanghai today: the caps count local days, so no test may straddle a midnight.
NOW = datetime.combine(datetime.now(UTC).date(), time(4, 0), tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
POLICY = Policy()


def plan(*amounts: int, base_paid: int = 0) -> Plan:
    return Plan(
        number=1,
        installments=[Installment(n, NOW + n * 30 * DAY, a) for n, a in enumerate(amounts, 1)],
        proposed_by="QX01-C01",
        accepted_at=NOW,
        base_paid_fen=base_paid,
    )


def state(stage: Stage = Stage.FIELD_VISIT, **fields: object) -> CaseState:
    s = CaseState(
        loan_no="L1",
        branch="QX01",
        policy=POLICY,
        stage=stage,
        stage_since=NOW - DAY,
        opened_at=NOW - 10 * DAY,
        collectors=["QX01-C01", "QX01-C02"],
    )
    for name, value in fields.items():
        setattr(s, name, value)
    return s


# ---------------------------------------------------------------- closing and dead ends


def test_paid_in_full_closes_and_wins_over_a_close_request() -> None:
    request = CloseRequest("CANCELLED", "paid at the counter", "ops")
    assert closing_decision(None, 500, request) == (Stage.CANCELLED, "paid at the counter", "ops")
    assert closing_decision(1000, 999, None) is None
    stage, reason, actor = closing_decision(1000, 1000, request)  # type: ignore[misc]
    assert (stage, actor) == (Stage.PAID_IN_FULL, "system")
    assert "10.00" in reason
    assert outstanding(None, 5) is None
    assert outstanding(1000, 1200) == -200


def test_a_dead_end_is_written_off_only_below_the_policy_amount() -> None:
    policy = Policy(write_off_below_fen=50_000)
    assert dead_end_stage(49_999, policy) == Stage.WRITTEN_OFF
    assert dead_end_stage(50_000, policy) == Stage.LEGAL_ESCALATION
    assert dead_end_stage(0, POLICY) == Stage.LEGAL_ESCALATION  # 0: always legal


def test_visit_outcomes_and_the_overdue_report_ladder() -> None:
    assert visit_step(VisitOutcome.MET) == VisitStep.NEGOTIATE
    assert visit_step(VisitOutcome.PROMISED_TO_PAY) == VisitStep.NEGOTIATE
    assert visit_step(VisitOutcome.NOT_HOME) == VisitStep.UNREACHED
    assert visit_step(VisitOutcome.MOVED) == VisitStep.UNREACHED
    assert visit_step(VisitOutcome.REFUSED) == VisitStep.REFUSED
    assert visit_step(VisitOutcome.HOSTILE) == VisitStep.REFUSED
    ladder = ["AWAIT_REPORT"]
    while ladder[-1] != "UNREACHED":
        ladder.append(next_overdue_phase(ladder[-1]))
    assert ladder == ["AWAIT_REPORT", "REMINDED", "ESCALATED", "UNREACHED"]
    assert next_overdue_phase("WAIT_REVISIT") == ""  # a revisit's wait ends: a new attempt


# ---------------------------------------------------------------- SMS blocks and caps


def test_sms_block_reasons_in_order_of_precedence() -> None:
    assert sms_block_reason(True, False, NOW, [], POLICY) == "borrower opted out of SMS"
    assert sms_block_reason(False, False, NOW, [], POLICY) == "no mobile number on file"
    assert sms_block_reason(False, True, NOW, [], POLICY) == ""
    full_day = [NOW - timedelta(minutes=m) for m in range(1, POLICY.sms_per_day + 1)]
    # Over the cap a DEFER policy waits (no block); a DROP policy blocks.
    assert sms_block_reason(False, True, NOW, full_day, POLICY) == ""
    drop = Policy(sms_over_cap="DROP", quiet_start="00:00", quiet_end="00:00")
    assert sms_block_reason(False, True, NOW, full_day, drop) == "contact cap reached"


def test_sends_are_remembered_for_eight_days() -> None:
    old, recent = NOW - 8 * DAY, NOW - 7 * DAY
    assert remember_send([old, recent], NOW) == [recent, NOW]


# ---------------------------------------------------------------- installments


def test_payments_cover_installments_in_order_from_the_plans_base() -> None:
    p = plan(30_000, 30_000, 40_000, base_paid=5_000)
    assert not is_covered(p, 34_999, 1)
    assert is_covered(p, 35_000, 1)
    assert not is_covered(p, 64_999, 2)
    assert first_uncovered(p, 35_000) == p.installments[1]
    assert first_uncovered(p, 105_000) is None


def test_installment_statuses_as_people_see_them() -> None:
    p = plan(30_000, 30_000, 40_000)
    p.installments[0].due_at = NOW - DAY  # due yesterday
    p.installments[1].due_at = NOW + DAY  # inside the reminder lead
    got = statuses(p, 10_000, NOW, timedelta(days=3))
    assert [(i.status, i.covered_fen) for i in got] == [
        ("OVERDUE", 10_000),
        ("DUE", 0),
        ("UPCOMING", 0),
    ]
    got = statuses(p, 45_000, NOW, timedelta(days=3))
    assert [(i.status, i.covered_fen) for i in got] == [
        ("PAID", 30_000),
        ("PARTLY_PAID", 15_000),
        ("UPCOMING", 0),
    ]
    assert statuses(None, 0, NOW, DAY) == []


def test_a_hold_moves_only_the_unpaid_installments() -> None:
    p = plan(30_000, 30_000, 40_000)
    moved = moved_for_hold(p, 30_000, 20 * DAY)
    assert moved.installments[0].due_at == p.installments[0].due_at  # paid: stays
    assert moved.installments[1].due_at == p.installments[1].due_at + 20 * DAY
    assert moved.installments[2].due_at == p.installments[2].due_at + 20 * DAY
    assert p.installments[1].due_at == NOW + 60 * DAY  # the original plan is untouched


# ---------------------------------------------------------------- human input


def refused(rule, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(check.Refused) as e:
        rule(*args)
    return str(e.value)


def test_visit_reports_are_refused_with_their_field() -> None:
    def report(**kw: object) -> VisitReport:
        base: dict[str, object] = dict(
            outcome="MET", collector_ids=["QX01-C01", "QX01-C02"], visited_at=NOW
        )
        base.update(kw)
        return VisitReport(**base)  # type: ignore[arg-type]

    s = state(team_required=True)
    check.check_visit_report(s, report(), NOW)  # accepted
    closed = state(Stage.INVESTIGATION)
    assert refused(check.check_visit_report, closed, report(), NOW).startswith("stage:")
    assert refused(check.check_visit_report, s, report(outcome="ASLEEP"), NOW).startswith(
        "outcome:"
    )
    assert "QX09-C09 not assigned" in refused(
        check.check_visit_report, s, report(collector_ids=["QX09-C09"]), NOW
    )
    assert "team of two" in refused(
        check.check_visit_report, s, report(collector_ids=["QX01-C01"]), NOW
    )
    naive = NOW.replace(tzinfo=None)
    assert refused(check.check_visit_report, s, report(visited_at=naive), NOW).startswith(
        "visited_at:"
    )
    skew = check.clock_skew(s.policy)  # the policy's, 10 minutes by default
    assert skew == timedelta(minutes=10)
    late = NOW + skew + timedelta(seconds=1)
    assert "future" in refused(check.check_visit_report, s, report(visited_at=late), NOW)
    check.check_visit_report(s, report(visited_at=NOW + skew), NOW)
    early = s.opened_at - timedelta(seconds=1)
    assert "before the case" in refused(check.check_visit_report, s, report(visited_at=early), NOW)
    long_notes = "x" * (check.MAX_NOTES + 1)
    assert refused(check.check_visit_report, s, report(notes=long_notes), NOW).startswith("notes:")


def test_a_report_that_checks_the_visit_out_is_not_before_its_check_in() -> None:
    """Weak signal review, finding 4: under collection-v4 a report by the team checked in
    checks the visit out, so it is held to the check-out's rule: not before the check-in
    (less the clock skew). Another team's report, or a released run's, is not."""
    team = ["QX01-C01", "QX01-C02"]
    arrived = NOW - timedelta(hours=1)
    visit = VisitInProgress(1, team, arrived, arrived + 2 * HOUR, arrived + 3 * HOUR)
    s = state(visit=visit, overdue_attribute=True)  # every collection-v4 run has it
    skew = check.clock_skew(s.policy)
    before = VisitReport("MET", team, arrived - skew - timedelta(seconds=1))
    assert refused(check.check_visit_report, s, before, NOW) == (
        "visited_at: before the team checked in"
    )
    assert refused(check.check_check_out, s, CheckOut(before), NOW) == (
        "visited_at: before the team checked in"
    )
    check.check_visit_report(s, VisitReport("MET", team, arrived - skew), NOW)
    released = state(visit=visit, overdue_attribute=False)  # its report checks nothing out
    check.check_visit_report(released, before, NOW)
    pair = ["QX01-C03", "QX01-C04"]
    others = state(visit=visit, overdue_attribute=True, collectors=[*team, *pair])
    check.check_visit_report(others, VisitReport("MET", pair, before.visited_at), NOW)


def test_plan_proposals_are_checked_against_stage_debt_and_policy() -> None:
    proposal = PlanProposal([PlannedInstallment(NOW + 30 * DAY, 100_000)], "QX01-C01")
    s = state(Stage.NEGOTIATION)
    check.check_plan_proposal(s, proposal, 100_000, NOW)
    assert refused(check.check_plan_proposal, state(), proposal, 100_000, NOW).startswith("stage:")
    assert "not known" in refused(check.check_plan_proposal, s, proposal, None, NOW)
    assert "whole debt" in refused(check.check_plan_proposal, s, proposal, 100_001, NOW)


def test_signatures_must_name_the_rendered_version_and_hash() -> None:
    agreement = AgreementRef(version=2, sha256="ab" * 32, plan_number=1)
    s = state(Stage.AGREEMENT_SIGNING, agreement=agreement)

    def sig(**kw: object) -> SignatureConfirmation:
        base: dict[str, object] = dict(
            version=2, sha256="AB" * 32, collector_id="QX01-C01", signed_at=NOW, place="村委会"
        )
        base.update(kw)
        return SignatureConfirmation(**base)  # type: ignore[arg-type]

    check.check_signature(s, sig(), NOW)  # the hash is compared case-insensitively
    assert refused(check.check_signature, s, sig(version=1), NOW).startswith("version:")
    assert refused(check.check_signature, s, sig(sha256="cd" * 32), NOW).startswith("sha256:")
    assert refused(check.check_signature, s, sig(place=" "), NOW).startswith("place:")
    assert refused(check.check_signature, state(), sig(), NOW).startswith("stage:")


def test_supervisor_requests_are_refused_with_their_field() -> None:
    s = state()
    good = Reassignment(["QX01-C03"], "li", "hostile")
    check.check_reassignment(s, good)
    for ids in ([], ["a", "b", "c"], ["a", "a"]):
        assert refused(check.check_reassignment, s, Reassignment(ids, "li", "x")).startswith(
            "collector_ids:"
        )
    assert refused(check.check_reassignment, s, Reassignment(["a"], "li", "")).startswith("reason:")
    limit = timedelta(seconds=POLICY.max_hold_seconds)
    check.check_hold(s, HardshipHold(NOW + limit, "洪灾", "li"), NOW)
    assert "at most" in refused(
        check.check_hold, s, HardshipHold(NOW + limit + DAY, "洪灾", "li"), NOW
    )
    assert "future" in refused(check.check_hold, s, HardshipHold(NOW, "洪灾", "li"), NOW)
    assert "not on hold" in refused(check.check_lift_hold, s, LiftHold("li", "x"))
    check.check_lift_hold(state(hold=Hold(NOW + DAY, "洪灾", "li", NOW)), LiftHold("li", "x"))
    assert refused(check.check_close, s, CloseRequest("PAID_IN_FULL", "x", "li")).startswith(
        "outcome:"
    )
    closed = state(Stage.CANCELLED)
    assert "closed" in refused(check.check_close, closed, CloseRequest("CANCELLED", "x", "li"))


def test_whoever_is_out_on_the_visit_may_check_out_and_call_for_help() -> None:
    """Issue 15 review, item 4: a collector taken off the case while out on the visit (the
    team changed meanwhile) may still check out and ask for help; a stranger may not."""
    from domain.models import CheckOut, HelpRequest, VisitInProgress

    out = VisitInProgress(1, ["QX01-C01", "QX01-C02"], NOW - DAY / 12, NOW, NOW + DAY / 24)
    s = state(collectors=["QX01-C02", "QX01-C03"], visit=out)
    report = VisitReport("NOT_HOME", ["QX01-C01", "QX01-C02"], NOW - DAY / 24)
    check.check_check_out(s, CheckOut(report), NOW)
    check.check_help(s, HelpRequest("QX01-C01", NOW), NOW)
    with pytest.raises(check.Refused, match="collector_ids: QX01-C09 not assigned"):
        check.check_help(s, HelpRequest("QX01-C09", NOW), NOW)
    s.visit = None  # once checked out, they are off the case
    with pytest.raises(check.Refused, match="collector_ids: QX01-C01 not assigned"):
        check.check_help(s, HelpRequest("QX01-C01", NOW), NOW)
