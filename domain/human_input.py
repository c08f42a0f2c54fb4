"""Checks on what people send a case (the workflow's Update validators), before anything
enters its history. Pure: each refusal is a `Refused` whose message names the field and the
fix, unit-tested without a server (tests/test_case_rules.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from domain.complaints import pausing
from domain.models import (
    AlertAck,
    CallReport,
    CaseState,
    CheckIn,
    CheckOut,
    CloseRequest,
    ComplaintAction,
    ComplaintReport,
    ConsentChange,
    HardshipHold,
    HelpRequest,
    LegalDecisionRequest,
    LiftHold,
    LiftHostileTeam,
    PlanProposal,
    Reassignment,
    SignatureConfirmation,
    ThirdPartyMessage,
    VisitReport,
)
from domain.plans import PlanRejected, check_plan, plan_policy
from domain.policy import Policy
from domain.rulebook import call_refusal, night_refusal, third_party_refusal
from domain.stages import (
    CLOSED_STAGES,
    MANUAL_CLOSE_STAGES,
    CallOutcome,
    ConsentKind,
    Counselling,
    Hardship,
    LegalDecision,
    Stage,
    VisitOutcome,
)
from domain.wording import forbidden_phrases

MAX_NOTES = 2000
VISIT_STAGES = (Stage.FIELD_VISIT, Stage.NEGOTIATION, Stage.AGREEMENT_SIGNING, Stage.FOLLOW_UP)


class Refused(ValueError):
    """Human input a case does not take; the message starts with the field at fault."""


def check_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Refused(f"{name}: a time must carry its time zone")


def clock_skew(policy: Policy) -> timedelta:
    """How far ahead of the server's clock a recorded time may lie (a phone's clock)."""
    return timedelta(minutes=policy.offline_clock_skew_minutes)


def recorded_time(request: object) -> tuple[str, datetime] | None:
    """The field holding the time a person recorded in a request, and its value."""
    if isinstance(request, CheckOut):
        return "visited_at", request.report.visited_at
    for kind, name in RECORDED_FIELDS:
        if isinstance(request, kind):
            return name, getattr(request, name)
    return None


def check_offline_time(policy: Policy, request: object, now: datetime) -> None:
    """An action a phone sent with its own id (perhaps queued offline for hours): the time
    the collector recorded it lies within the policy's clock skew ahead of `now` and its
    maximum age back. Checked by the case's validators and again by the service."""
    found = recorded_time(request)
    if found is None:
        return
    name, at = found
    check_aware(at, name)
    if at > now + clock_skew(policy):
        raise Refused(
            f"{name}: more than {policy.offline_clock_skew_minutes} minutes ahead of the "
            "server's clock; set the phone's clock right (手机时间不准) and send it again"
        )
    if at < now - timedelta(hours=policy.offline_max_age_hours):
        raise Refused(
            f"{name}: recorded more than {policy.offline_max_age_hours} hours ago, too late "
            "to send from the phone (离线记录已超时); ask the supervisor to record it"
        )


def check_open(s: CaseState) -> None:
    if s.stage in CLOSED_STAGES:
        raise Refused(f"stage: the case is closed ({s.stage})")


def check_collectors(s: CaseState, ids: list[str]) -> None:
    if not ids:
        raise Refused("collector_ids: name the collector(s)")
    # Whoever is out on the visit in progress may still check out, report it and call for
    # help, even if the case's team changed meanwhile.
    on_visit = s.visit.collector_ids if s.visit is not None else []
    strangers = [i for i in ids if i not in s.collectors and i not in on_visit]
    if strangers:
        raise Refused(
            f"collector_ids: {', '.join(strangers)} not assigned to this case "
            f"(assigned: {', '.join(s.collectors) or 'nobody'})"
        )


def visit_team(s: CaseState) -> int:
    """Collectors every visit needs by the rule set (0: the released rule), at least the
    policy's hostile team after a hostile visit until a supervisor lifts it."""
    if s.hostile_team:
        return max(s.team_size, s.policy.hostile_visit_team_size)
    return s.team_size


def check_team(s: CaseState, ids: list[str]) -> None:
    check_collectors(s, ids)
    team = visit_team(s)
    if team:  # the rule set: every visit, in any stage, by the team
        if len(set(ids)) < team:
            why = "after a hostile visit" if s.hostile_team else f"({s.policy.ruleset})"
            raise Refused(
                f"collector_ids: every visit is made by at least {team} collectors "
                f"{why}; the report names {len(set(ids))}"
            )
    elif s.stage == Stage.FIELD_VISIT and s.team_required and len(set(ids)) < 2:
        raise Refused("collector_ids: this case needs a team of two collectors at a visit")


def check_visit_time(s: CaseState, at: datetime, now: datetime, name: str) -> None:
    check_aware(at, name)
    if s.team_size and (why := night_refusal(at, s.consents, s.policy)):
        raise Refused(f"{name}: {why}")
    if at > now + clock_skew(s.policy):
        raise Refused(f"{name}: the visit cannot be in the future")
    if at < s.opened_at:
        raise Refused(f"{name}: the visit is before the case was opened")


def check_visit_report(s: CaseState, report: VisitReport, now: datetime) -> None:
    if s.stage not in VISIT_STAGES:
        raise Refused(f"stage: no visit report is expected while the case is {s.stage}")
    check_visit_fields(s, report, now)
    # collection-v4 (overdue_attribute: every v4 run): a report by the team checked in
    # checks the visit out (workflows/visit_updates.py), so the check-out's time rule holds.
    visit = s.visit
    if s.overdue_attribute and visit and set(report.collector_ids) & set(visit.collector_ids):
        check_not_before_check_in(s, report.visited_at)


def check_not_before_check_in(s: CaseState, at: datetime) -> None:
    """A visit ends no earlier than its check-in (less the clock skew)."""
    if s.visit is not None and at < s.visit.checked_in_at - clock_skew(s.policy):
        raise Refused("visited_at: before the team checked in")


def check_visit_fields(s: CaseState, report: VisitReport, now: datetime) -> None:
    """A visit report's own fields, whatever the stage (a check-out ends a visit in any
    stage: the case may have been paid, closed or put on hold while the team was out)."""
    if report.outcome not in VisitOutcome.__members__:
        raise Refused(
            f"outcome: {report.outcome!r} is not one of {', '.join(VisitOutcome.__members__)}"
        )
    check_team(s, report.collector_ids)
    check_visit_time(s, report.visited_at, now, "visited_at")
    if len(report.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")
    check_counselling(report)


def check_counselling(report: VisitReport) -> None:
    """Help recorded at a visit: known kinds of counselling and hardship, short words."""
    for name, values, kinds in (
        ("counselling", report.counselling, Counselling),
        ("hardships", report.hardships, Hardship),
    ):
        if unknown := [v for v in values if v not in kinds.__members__]:
            raise Refused(f"{name}: {', '.join(unknown)} not one of {', '.join(kinds.__members__)}")
    if len(report.situation) > MAX_NOTES:
        raise Refused(f"situation: at most {MAX_NOTES} characters")


def check_location(latitude: float | None, longitude: float | None) -> None:
    if (latitude is None) != (longitude is None):
        raise Refused("latitude: give both latitude and longitude, or neither")
    if latitude is not None and not -90 <= latitude <= 90:
        raise Refused("latitude: between -90 and 90")
    if longitude is not None and not -180 <= longitude <= 180:
        raise Refused("longitude: between -180 and 180")


def check_check_in(s: CaseState, check_in: CheckIn, now: datetime) -> None:
    check_check_in_state(s, check_in)
    check_visit_time(s, check_in.checked_in_at, now, "checked_in_at")
    if check_in.checked_in_at < now - timedelta(hours=12):
        raise Refused("checked_in_at: check in on arrival, not later")
    check_location(check_in.latitude, check_in.longitude)


def check_check_in_state(s: CaseState, check_in: CheckIn) -> None:
    """What a check-in needs of the case as it is now: checked by the validator, and again by
    the handler after an awaited step (the case may have been paid, held or reassigned)."""
    if s.stage not in VISIT_STAGES:
        raise Refused(f"stage: no visit is expected while the case is {s.stage}")
    if s.visit is not None:
        raise Refused(
            f"visit: visit {s.visit.number} by {', '.join(s.visit.collector_ids)} is in "
            "progress; check it out first"
        )
    check_team(s, check_in.collector_ids)


def check_check_out(s: CaseState, check_out: CheckOut, now: datetime) -> None:
    if s.visit is None:
        raise Refused("visit: no visit is checked in; check in first (or report the visit)")
    if s.stage in VISIT_STAGES:
        check_visit_report(s, check_out.report, now)
    else:  # paid, closed or on hold while the team was out: the team still checks out
        check_visit_fields(s, check_out.report, now)
    check_not_before_check_in(s, check_out.report.visited_at)


def check_help(s: CaseState, request: HelpRequest, now: datetime) -> None:
    if s.visit is None:  # a team out on a visit may always call for help
        check_open(s)
    check_collectors(s, [request.collector_id])
    check_aware(request.at, "at")
    if request.at > now + clock_skew(s.policy):
        raise Refused("at: cannot be in the future")
    check_location(request.latitude, request.longitude)
    if len(request.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")


def check_alert_ack(s: CaseState, ack: AlertAck) -> None:
    open_alerts = [a.number for a in s.alerts]
    if ack.alert_no not in open_alerts:
        shown = ", ".join(str(n) for n in open_alerts) or "none"
        raise Refused(f"alert_no: {ack.alert_no} is not an open alert (open: {shown})")
    if not ack.by.strip():
        raise Refused("by: say who acknowledges the alert")
    if len(ack.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")


def check_lift_hostile(s: CaseState, request: LiftHostileTeam) -> None:
    check_open(s)
    if not s.hostile_team:
        raise Refused("hostile_team: the case has no hostile-visit team to lift")
    if not request.by.strip() or not request.reason.strip():
        raise Refused("reason: say who lifts the hostile-visit team and why")


def check_plan_proposal(
    s: CaseState, proposal: PlanProposal, outstanding_fen: int | None, now: datetime
) -> None:
    if s.stage != Stage.NEGOTIATION:
        raise Refused(f"stage: plans are proposed in NEGOTIATION, the case is {s.stage}")
    if s.pending_plan is not None:
        raise Refused("stage: a plan was just accepted and is being prepared")
    if s.promises and s.promises[-1].status == "OPEN":  # domain.promises.open_promise
        open_one = s.promises[-1]
        raise Refused(
            f"promise: promise {open_one.seq} (due {open_one.due_date}) is still open; propose "
            "a plan once it is kept or broken (承诺还款未到期)"
        )
    if outstanding_fen is None:
        raise Refused("stage: the debt is not known yet")
    try:
        check_plan(proposal, outstanding_fen, plan_policy(s.policy, s.hardships), now)
    except PlanRejected as e:
        raise Refused(str(e)) from None
    if len(proposal.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")


def check_signature(s: CaseState, confirmation: SignatureConfirmation, now: datetime) -> None:
    if s.stage != Stage.AGREEMENT_SIGNING or s.agreement is None:
        raise Refused(f"stage: no agreement awaits a signature while the case is {s.stage}")
    if confirmation.version != s.agreement.version:
        raise Refused(
            f"version: the agreement to sign is version {s.agreement.version}, "
            f"not {confirmation.version}"
        )
    if confirmation.sha256.strip().lower() != s.agreement.sha256:
        raise Refused(
            f"sha256: does not match agreement version {s.agreement.version}; "
            "read it again from the signed document"
        )
    check_collectors(s, [confirmation.collector_id])
    check_aware(confirmation.signed_at, "signed_at")
    if confirmation.signed_at > now + clock_skew(s.policy):
        raise Refused("signed_at: the signature cannot be in the future")
    if not confirmation.place.strip():
        raise Refused("place: say where the agreement was signed")


def check_reassignment(s: CaseState, request: Reassignment) -> None:
    check_open(s)
    ids = request.collector_ids
    if team := visit_team(s):
        most = max(team, 2)  # the case's record keeps a team of two by name
        if len(set(ids)) != len(ids) or not team <= len(ids) <= most:
            raise Refused(
                f"collector_ids: name {team} to {most} different collectors: "
                f"every visit is made by at least {team} ({s.policy.ruleset})"
            )
    elif not ids or len(ids) > 2 or len(set(ids)) != len(ids):
        raise Refused("collector_ids: name one collector, or two different ones for a team")
    if not all(i.strip() for i in ids):
        raise Refused("collector_ids: a collector id is empty")
    if not request.by.strip() or not request.reason.strip():
        raise Refused("reason: say who reassigns and why")


def check_hold(s: CaseState, request: HardshipHold, now: datetime) -> None:
    check_open(s)
    check_aware(request.until, "until")
    if request.until <= now:
        raise Refused("until: a hold must end in the future")
    if request.until - now > timedelta(seconds=s.policy.max_hold_seconds):
        raise Refused(f"until: a hold may last at most {s.policy.max_hold_seconds // 86400} days")
    if not request.reason.strip() or not request.by.strip():
        raise Refused("reason: say who holds the case and why")


def check_lift_hold(s: CaseState, request: LiftHold) -> None:
    check_open(s)
    if s.hold is None:
        raise Refused("stage: the case is not on hold")
    if not request.by.strip():
        raise Refused("by: say who lifts the hold")


def check_close(s: CaseState, request: CloseRequest, legal_review: bool = False) -> None:
    """`legal_review` (collection-v4): LEGAL_ESCALATION only by the legal review's decision;
    a supervisor may still write off or cancel, also during a review."""
    check_open(s)
    if request.outcome not in {m.value for m in MANUAL_CLOSE_STAGES}:
        raise Refused(
            "outcome: must be one of " + ", ".join(sorted(m.value for m in MANUAL_CLOSE_STAGES))
        )
    if legal_review and request.outcome == Stage.LEGAL_ESCALATION:
        raise Refused(
            "outcome: LEGAL_ESCALATION only by a legal reviewer's decision (法务审查); a case "
            "reaches the legal review at its dead end"
        )
    if not request.reason.strip() or not request.by.strip():
        raise Refused("reason: say who closes the case and why")


# The recorded time of each kind of request (a CheckOut's is its report's visited_at).
RECORDED_FIELDS: tuple[tuple[type, str], ...] = (
    (VisitReport, "visited_at"),
    (CheckIn, "checked_in_at"),
    (HelpRequest, "at"),
    (CallReport, "called_at"),
    (ConsentChange, "at"),
    (ComplaintReport, "received_at"),
    (SignatureConfirmation, "signed_at"),
)
PARTIES = ("borrower", "contact:")
CONSENT_CHANNELS = ("AGREEMENT", "SMS", "VISIT", "CALL")


PARTY = re.compile(r"borrower|contact:[1-9][0-9]{0,9}", re.ASCII)


def check_party(party: str) -> None:
    """One spelling per party: the daily call cap counts by it."""
    if not PARTY.fullmatch(party):
        raise Refused("party: 'borrower' or 'contact:<id>' of a loan contact")


def check_call(s: CaseState, report: CallReport, now: datetime) -> None:
    check_open(s)
    if report.outcome not in CallOutcome.__members__:
        raise Refused(
            f"outcome: {report.outcome!r} is not one of {', '.join(CallOutcome.__members__)}"
        )
    check_party(report.party)
    if paused := pausing(s.complaints, s.policy):
        raise Refused(
            f"stage: collection contact is paused while complaint {paused.number} is open"
        )
    check_collectors(s, [report.collector_id])
    check_aware(report.called_at, "called_at")
    if report.called_at > now + clock_skew(s.policy):
        raise Refused("called_at: the call cannot be in the future")
    if report.called_at < now - timedelta(days=1):
        raise Refused("called_at: record a call on the day it was made")
    consents = s.consents if report.party == "borrower" else []  # the debtor's consent only
    if why := night_refusal(report.called_at, consents, s.policy):
        raise Refused(f"called_at: {why}")
    if why := call_refusal(
        s.calls, report.party, report.called_at, CallOutcome(report.outcome), s.policy
    ):
        raise Refused(why)
    if len(report.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")


def check_consent(s: CaseState, change: ConsentChange, now: datetime) -> None:
    check_open(s)
    if change.kind not in ConsentKind.__members__:
        raise Refused(f"kind: {change.kind!r} is not one of {', '.join(ConsentKind.__members__)}")
    if change.how not in CONSENT_CHANNELS:
        raise Refused(f"how: {change.how!r} is not one of {', '.join(CONSENT_CHANNELS)}")
    check_aware(change.at, "at")
    if change.at > now + clock_skew(s.policy):
        raise Refused("at: consent cannot be given in the future")
    if not change.by.strip():
        raise Refused("by: say who recorded the consent")
    if len(change.notes) > MAX_NOTES:
        raise Refused(f"notes: at most {MAX_NOTES} characters")


def check_third_party(s: CaseState, message: ThirdPartyMessage, lost: bool, now: datetime) -> None:
    check_open(s)
    if message.contact_id <= 0:
        raise Refused("contact_id: name a loan contact")
    if not message.by.strip():
        raise Refused("by: say who sends the message")
    if why := third_party_refusal(
        message.related, lost, s.third_party, message.contact_id, now, s.policy
    ):
        raise Refused(why)


def check_legal_decision(s: CaseState, request: LegalDecisionRequest) -> None:
    if s.stage != Stage.LEGAL_REVIEW:
        raise Refused(f"stage: no legal review is open while the case is {s.stage}")
    if s.legal_decision is not None:
        raise Refused("stage: a legal decision was just taken")
    if request.decision not in LegalDecision.__members__:
        raise Refused(
            f"decision: {request.decision!r} is not one of {', '.join(LegalDecision.__members__)}"
        )
    if request.role != "LEGAL":
        raise Refused("role: only a legal reviewer (LEGAL, 法务) decides a legal review")
    if not request.by.strip() or not request.reason.strip():
        raise Refused("reason: say who decides and why")
    if request.decision == LegalDecision.RETURN_TO_NEGOTIATION and not request.advice.strip():
        raise Refused("advice: say what the collectors should try in the negotiation")
    if len(request.reason) > MAX_NOTES or len(request.advice) > MAX_NOTES:
        raise Refused(f"advice: at most {MAX_NOTES} characters")


COMPLAINT_SOURCES = ("VISIT", "CALL")


def check_complaint(s: CaseState, report: ComplaintReport, now: datetime) -> None:
    check_open(s)
    if report.source not in COMPLAINT_SOURCES:
        raise Refused(f"source: one of {', '.join(COMPLAINT_SOURCES)} (SMS ones come by SMS)")
    if not report.summary.strip():
        raise Refused("summary: write down what the borrower complains about")
    if not report.by.strip():
        raise Refused("by: say who records the complaint")
    check_aware(report.received_at, "received_at")
    if report.received_at > now + clock_skew(s.policy):
        raise Refused("received_at: cannot be in the future")
    if len(report.summary) > MAX_NOTES:
        raise Refused(f"summary: at most {MAX_NOTES} characters")


def _open_complaint(s: CaseState, action: ComplaintAction) -> None:
    numbers = [c.number for c in s.complaints]
    if action.number not in numbers:
        shown = ", ".join(str(n) for n in numbers) or "none"
        raise Refused(f"number: {action.number} is not an open complaint (open: {shown})")
    if not action.by.strip():
        raise Refused("by: say who acts on the complaint")


def check_complaint_ack(s: CaseState, action: ComplaintAction) -> None:
    _open_complaint(s, action)
    if any(c.number == action.number and c.acknowledged_at for c in s.complaints):
        raise Refused(f"number: complaint {action.number} is acknowledged already")


def check_complaint_resolution(s: CaseState, action: ComplaintAction) -> None:
    _open_complaint(s, action)
    if not action.outcome.strip():
        raise Refused("outcome: say what the borrower is told (it is sent by SMS)")
    if len(action.outcome) > 200:
        raise Refused("outcome: at most 200 characters (one SMS)")
    if findings := forbidden_phrases(action.outcome):
        words = ", ".join(sorted({f.category for f in findings}))
        raise Refused(f"outcome: wording the collection guideline forbids ({words})")
