"""The visit report, shared by `report_visit` and `check_out` (which carries the report of
the visit it ends): counted and noted first, recorded by the `record_visit` activity."""

from __future__ import annotations

from temporalio import workflow

from workflows import phone_ops
from workflows.case import Case
from workflows.safety import Safety

with workflow.unsafe.imports_passed_through():
    from domain.models import CheckOut, UpdateAccepted, VisitRecord, VisitReport
    from domain.names import Activities as A
    from domain.stages import Stage, VisitOutcome


async def report(case: Case, safety: Safety, report: VisitReport) -> UpdateAccepted:
    s = case.s
    if (done := phone_ops.repeated(s, report)) is not None:
        return done  # sent again by a phone after the case continued as new
    s.counters.visits += 1
    number = s.counters.visits
    record = VisitRecord(s.loan_no, number, report, s.stage, s.generation, s.policy)
    if not case.versions.v4():
        await case.act(A.RECORD_VISIT, record)
    outcome = VisitOutcome(report.outcome)
    by = report.reported_by or report.collector_ids[0]
    visit = s.visit
    if case.versions.v4() and visit and set(report.collector_ids) & set(visit.collector_ids):
        # The team checked in (perhaps offline) and reports the visit: that checks it out.
        safety.check_out(CheckOut(report, by))
    if outcome == VisitOutcome.HOSTILE:
        s.hostile = True
        if case.versions.v4():  # collection-v4: the supervisor is alerted, a bigger team
            safety.hostile(report.collector_ids, by)
    if outcome in (VisitOutcome.MET, VisitOutcome.PROMISED_TO_PAY):
        s.failures_in_row = 0
    elif outcome in (VisitOutcome.NOT_HOME, VisitOutcome.MOVED):
        s.failures_in_row += 1
    case.note("visit", f"visit {number}: {outcome} by {', '.join(report.collector_ids)}", by)
    if report.hardships or report.counselling:  # help recorded: the next plan's limits
        s.hardships = sorted(set(s.hardships) | set(report.hardships))
        s.counselling_given = sorted(set(s.counselling_given) | set(report.counselling))
        help_given = ", ".join(report.counselling) or "none"
        stated = ", ".join(report.hardships) or "none"
        case.note("help", f"visit {number}: counselling {help_given}; hardship {stated}", by)
    if s.stage == Stage.FIELD_VISIT:
        s.pending_visit_outcome = outcome
    if case.versions.v4():
        # The case takes the report first, so a deadline that fires while the record is
        # written cannot leave the caller with an answer the case no longer holds to.
        await case.act(A.RECORD_VISIT, record)
    answer = UpdateAccepted(s.stage, f"visit {number} recorded: {outcome}", number)
    return phone_ops.remember(s, report, answer)
