"""Activities that read and record the facts of a case in the application database."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.clock import activity_now
from activities.errors import invalid_input, not_found, with_case_policy
from activities.wording_review import flag_wording
from db.models import (
    Agreement,
    Assignment,
    AuditEvent,
    Borrower,
    Branch,
    Case,
    Collector,
    ContactAttempt,
    Loan,
    Payment,
    PromiseToPay,
    StageChange,
    Task,
    Visit,
    WaiverRequest,
)
from db.repository import (
    insert_ignore,
    loan_and_case,
    loan_by_no,
    mark_told,
    set_next_action,
    set_outstanding,
)
from domain.assessment import assess
from domain.evidence import ruleset_label
from domain.models import (
    Assessment,
    AssessRequest,
    AssignRequest,
    CaseFacts,
    DebtRecord,
    PaymentRecord,
    PromiseRecord,
    SignatureRecord,
    TaskRequest,
    TrainingCheck,
    Transition,
    VisitRecord,
    WaiverRecord,
)
from domain.names import Activities as A
from domain.names import case_key
from domain.policy import Policy
from domain.stages import CLOSED_STAGES, VisitOutcome
from domain.strategy import SegmentFacts, Strategy, load_strategy
from domain.timerules import days_past_due
from domain.training import may_visit_remote

log = logging.getLogger(__name__)

# Built once (issue 17: a statement built anew for every call was much of the worker's CPU).
_PAYMENT_BY_REFERENCE = select(Payment).where(Payment.reference == bindparam("p_reference"))


def _untrained(session: Session, branch: str, now: datetime) -> dict[str, date | None]:
    """The branch's collectors who may not go on a remote or hostile visit today (the
    branch's date): training expired (the date) or none on record (None)."""
    zone = session.get(Branch, branch)
    # A branch without a row (never in practice) takes the policy's default zone.
    today = now.astimezone(ZoneInfo(zone.timezone if zone else Policy().timezone)).date()
    rows = session.execute(
        select(Collector.id, Collector.training_expires_on).where(
            Collector.branch_code == branch,
            or_(Collector.training_expires_on.is_(None), Collector.training_expires_on < today),
        )
    ).all()
    return {cid: expires for cid, expires in rows if not may_visit_remote(expires, today)}


def _why_untrained(untrained: dict[str, date | None], cids: list[str]) -> str:
    """`collector_ids: …` refusal of a reassignment naming each collector and why."""
    parts = [
        f"{c} has no safety training on record (无安全培训记录)"
        if untrained[c] is None
        else f"the safety training of {c} expired ({untrained[c]}, 安全培训已过期)"
        for c in cids
    ]
    return f"collector_ids: {'; '.join(parts)}: not on a remote or hostile visit"


def _training_audit(
    session: Session,
    loan_no: str,
    now: datetime,
    untrained: dict[str, date | None],
    removed: list[str],
    wanted: list[str],
) -> None:
    """Why collectors were passed over, in the case's audit trail (once per decision): the
    active ones (and any taken off the case), expired and not on record said apart."""
    active = set(
        session.scalars(
            select(Collector.id).where(
                Collector.id.in_(list(untrained)), Collector.active.is_(True)
            )
        )
    )
    shown = sorted(c for c in untrained if c in active or c in removed)
    expired = [f"{c} ({untrained[c]})" for c in shown if untrained[c] is not None]
    missing = [c for c in shown if untrained[c] is None]
    reasons = []
    if expired:
        reasons.append(f"安全培训已过期 safety training expired: {', '.join(expired)}")
    if missing:
        reasons.append(f"无安全培训记录 no training on record: {', '.join(missing)}")
    if not reasons:
        return  # only collectors who left long ago: nobody was passed over
    detail = (
        f"remote or hostile visit: not assigned, {'; '.join(reasons)}"
        + (f"; taken off the case: {', '.join(removed)}" if removed else "")
        + f"; team: {', '.join(wanted) or 'nobody'}"
    )
    last = session.scalar(
        select(AuditEvent.detail)
        .where(AuditEvent.loan_no == loan_no, AuditEvent.action == "assignment_training")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if last == detail:
        return  # a retry, or the same decision again
    session.add(
        AuditEvent(
            at=now, username="system", role="SYSTEM", action="assignment_training",
            loan_no=loan_no, outcome="DONE", detail=detail,
        )
    )  # fmt: skip


class CaseActivities:
    def __init__(self, sessions: sessionmaker[Session], strategy: Strategy | None = None) -> None:
        self.sessions = sessions
        # The strategy file (COLLECTION_STRATEGY_FILE, else strategies/default.toml): read
        # once, so a worker's cases get one version; a bad file stops the worker at start.
        self.strategy = strategy or load_strategy(os.environ.get("COLLECTION_STRATEGY_FILE"))

    def _loan(self, session: Session, loan_no: str) -> Loan:
        loan = loan_by_no(session, loan_no)
        if loan is None:
            raise not_found(f"loan {loan_no} is not in the database")
        return loan

    def _loan_case(self, session: Session, loan_no: str, now: datetime) -> tuple[Loan, Case]:
        """The loan and its case row (made on first use): _loan, then case_for_loan."""
        found = loan_and_case(session, loan_no, now)
        if found is None:
            raise not_found(f"loan {loan_no} is not in the database")
        return found

    @activity.defn(name=A.LOAD_CASE)
    def load_case(self, loan_no: str) -> CaseFacts:
        """The loan as the investigation reads it; these figures are what the case knows
        until an export's debt update tells it others (feeds/debt_updates.py)."""
        with self.sessions.begin() as session:
            loan = self._loan(session, loan_no)
            mark_told(
                session,
                loan_no,
                (
                    loan.outstanding_principal_fen,
                    loan.interest_fen,
                    loan.penalty_fen,
                    loan.overdue_since,
                ),
            )
            borrower = loan.borrower
            branch = session.get(Branch, loan.branch_code)
            region = branch.region if branch else ""
            return CaseFacts(
                loan_no=loan.loan_no,
                branch=loan.branch_code,
                region=region,
                debt_fen=loan.debt_fen,
                principal_fen=loan.outstanding_principal_fen,
                interest_fen=loan.interest_fen,
                penalty_fen=loan.penalty_fen,
                overdue_since=loan.overdue_since,
                monthly_income_fen=borrower.monthly_income_fen,
                household_size=borrower.household_size,
                remote=borrower.remote,
                hostile=borrower.hostile,
                has_phone=bool(borrower.phone),
                sms_opted_out=borrower.sms_opted_out,
                disaster_affected=borrower.disaster_affected,
                prior_broken_promises=loan.prior_broken_promises,
            )

    @activity.defn(name=A.ASSESS_CASE)
    def assess_case(self, request: AssessRequest) -> Assessment:
        """The risk assessment, and the strategy file's segment, arm and treatment."""
        request = with_case_policy(request)
        assessment = assess(request.facts, request.policy, request.as_of)
        facts = request.facts
        choice = self.strategy.choose(
            SegmentFacts(
                loan_no=facts.loan_no,
                days_past_due=days_past_due(facts.overdue_since, request.as_of, request.policy),
                debt_fen=facts.debt_fen,
                risk_tier=assessment.risk_tier,
                remote=facts.remote,
                disaster_affected=facts.disaster_affected,
                prior_broken_promises=facts.prior_broken_promises,
            )
        )
        assessment.strategy_version, assessment.segment = choice.version, choice.segment
        assessment.arm, assessment.treatment = choice.arm, choice.treatment.name
        assessment.policy_overrides = choice.treatment.policy_overrides(request.policy)
        assessment.offer_promises = choice.treatment.offer_promises
        assessment.offer_settlements = choice.treatment.offer_settlements
        return assessment

    @activity.defn(name=A.ASSIGN_COLLECTORS)
    def assign_collectors(self, request: AssignRequest) -> list[str]:
        """Explicit collectors (reassignment), or the least loaded with capacity in the branch.

        Idempotent: a retry finds the assignments its first attempt committed.
        """
        now = activity_now()
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, request.loan_no, now)
            open_rows = list(
                session.scalars(
                    select(Assignment)
                    .where(Assignment.case_id == case.id, Assignment.ended_at.is_(None))
                    .order_by(Assignment.id)
                )
            )
            # Collectors of another branch are never kept: a loan moved by a later export
            # is collected by its new branch (who sees it, who visits).
            case.branch_code = loan.branch_code
            current = [
                a.collector_id
                for a in open_rows
                if (c := session.get(Collector, a.collector_id))
                and c.branch_code == loan.branch_code
            ]
            # Remote or hostile: training expired or none on record keeps a collector away.
            untrained = _untrained(session, loan.branch_code, now) if request.trained_only else {}
            removed = [c for c in current if c in untrained]
            current = [c for c in current if c not in untrained]
            if request.requested:
                wanted = self._check_requested(session, request, loan.branch_code)
                if refused := [c for c in wanted if c in untrained]:
                    raise invalid_input(_why_untrained(untrained, refused))
            elif len(current) >= request.team_size and set(request.keep) <= set(current):
                wanted = current
            else:
                keep = [c for c in request.keep if c in current] or current[: request.team_size]
                wanted = keep + self._least_loaded(
                    session, loan.branch_code, request.team_size - len(keep),
                    exclude=keep + list(untrained),
                )  # fmt: skip
            if untrained:
                _training_audit(session, request.loan_no, now, untrained, removed, wanted)
            for row in open_rows:
                if row.collector_id not in wanted:
                    row.ended_at = now
            for cid in wanted:
                if cid not in current:
                    session.add(
                        Assignment(
                            case_id=case.id,
                            collector_id=cid,
                            assigned_at=now,
                            by=request.by,
                            reason=request.reason or "assigned by capacity",
                        )
                    )
            case.primary_collector = wanted[0] if wanted else None
            case.second_collector = wanted[1] if len(wanted) > 1 else None
            return wanted

    @activity.defn(name=A.CHECK_VISIT_TRAINING)
    def check_visit_training(self, check: TrainingCheck) -> None:
        """A check-in on a remote or hostile case: refused (non-retryable, naming each
        collector and why) when one of the team has no valid safety training on their
        branch's date, as the assignment would have refused them. Reads only."""
        with self.sessions() as session:
            untrained: dict[str, date | None] = {}
            for cid in check.collector_ids:
                collector = session.get(Collector, cid)
                if collector is None:
                    raise invalid_input(f"collector_ids: no collector {cid}")
                branch = session.get(Branch, collector.branch_code)
                zone = ZoneInfo(branch.timezone if branch else Policy().timezone)
                if not may_visit_remote(
                    collector.training_expires_on, check.at.astimezone(zone).date()
                ):
                    untrained[cid] = collector.training_expires_on
        if untrained:
            raise invalid_input(_why_untrained(untrained, list(untrained)))

    def _check_requested(self, session: Session, request: AssignRequest, branch: str) -> list[str]:
        for cid in request.requested:
            collector = session.get(Collector, cid)
            if collector is None:
                raise invalid_input(f"collector_ids: no collector {cid}")
            if not collector.active:
                raise invalid_input(f"collector_ids: collector {cid} is not active")
            if collector.branch_code != branch:
                raise invalid_input(
                    f"collector_ids: collector {cid} works for branch {collector.branch_code}, "
                    f"the case belongs to {branch}"
                )
        return list(request.requested)

    def _least_loaded(
        self, session: Session, branch: str, count: int, exclude: list[str]
    ) -> list[str]:
        if count <= 0:
            return []
        open_cases = (
            select(Assignment.collector_id, func.count().label("load"))
            .join(Case, Case.id == Assignment.case_id)
            .where(
                Assignment.ended_at.is_(None),
                Case.stage.not_in([s.value for s in CLOSED_STAGES]),
            )
            .group_by(Assignment.collector_id)
            .subquery()
        )
        load = func.coalesce(open_cases.c.load, 0)
        rows = session.execute(
            select(Collector.id, load)
            .outerjoin(open_cases, open_cases.c.collector_id == Collector.id)
            .where(
                Collector.branch_code == branch,
                Collector.active.is_(True),
                Collector.id.not_in(exclude),
                load < Collector.capacity,
            )
            .order_by(load, Collector.id)
            .limit(count)
        ).all()
        return [r[0] for r in rows]

    @activity.defn(name=A.RECORD_TRANSITION)
    def record_transition(self, t: Transition) -> None:
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, t.loan_no, t.at)
            set_outstanding(session, case, t.outstanding_fen, t.outstanding_at)
            set_next_action(session, case, t.next_action, t.next_action_at, t.next_action_stamp)
            insert_ignore(
                session,
                StageChange,
                dict(
                    case_id=case.id,
                    generation=t.generation,
                    seq=t.seq,
                    from_stage=t.from_stage.value if t.from_stage else None,
                    to_stage=t.to_stage.value,
                    at=t.at,
                    actor=t.actor,
                    reason=t.reason,
                ),
                ["case_id", "generation", "seq"],
            )
            if t.generation != case.generation:
                if t.at < case.stage_since:
                    return  # a late write of an earlier generation
                # A case started again after a failed or terminated run: its numbering starts
                # again at 1. (A new-format generation also replaces the released code's "".)
                case.generation, case.last_seq = t.generation, 0
            if t.seq < case.last_seq:
                return  # a late retry of an older transition must not roll the projection back
            case.last_seq = t.seq
            case.stage = t.to_stage.value
            case.stage_since = t.at
            case.risk_tier = t.risk_tier
            if t.strategy_arm:
                case.strategy_version, case.segment = t.strategy_version, t.segment
                case.strategy_arm = t.strategy_arm
            case.debt_fen = t.debt_fen
            if case.entry_debt_fen is None and t.debt_fen is not None:
                case.entry_debt_fen = t.debt_fen  # the debt at entry: never changed after
            case.paid_fen = max(case.paid_fen, t.paid_fen)
            if t.next_action_stamp is None:  # a released run's (collection-v6: above)
                case.next_action = t.next_action[:120]
                case.next_action_at = t.next_action_at
            case.closed_at = t.at if t.to_stage in CLOSED_STAGES else None
            if t.to_stage in CLOSED_STAGES:
                for row in session.scalars(
                    select(Assignment).where(
                        Assignment.case_id == case.id, Assignment.ended_at.is_(None)
                    )
                ):
                    row.ended_at = t.at
            loan.status = {
                "PAID_IN_FULL": "PAID",
                "LEGAL_ESCALATION": "LEGAL",
                "WRITTEN_OFF": "WRITTEN_OFF",
                "CANCELLED": "CANCELLED",
            }.get(t.to_stage.value, "IN_COLLECTION")

    @activity.defn(name=A.CREATE_TASK)
    def create_task(self, task: TaskRequest) -> None:
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, task.loan_no, task.created_at)
            set_outstanding(session, case, task.outstanding_fen, task.outstanding_at)
            set_next_action(
                session, case, task.next_action, task.next_action_at, task.next_action_stamp
            )
            insert_ignore(
                session,
                Task,
                dict(
                    key=task.key,
                    case_id=case.id,
                    kind=task.kind.value,
                    assignees=",".join(task.assignees),
                    due_at=task.due_at,
                    detail=task.detail,
                    created_at=task.created_at,
                    status="OPEN",
                ),
                ["key"],
            )

    @activity.defn(name=A.RECORD_VISIT)
    def record_visit(self, record: VisitRecord) -> None:
        record = with_case_policy(record)
        report = record.report
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, record.loan_no, report.visited_at)
            inserted = insert_ignore(
                session,
                Visit,
                dict(
                    case_id=case.id,
                    generation=record.generation,
                    visit_no=record.visit_no,
                    visited_at=report.visited_at,
                    outcome=report.outcome,
                    collector_ids=",".join(report.collector_ids),
                    reported_by=report.reported_by or report.collector_ids[0],
                    stage=record.stage.value,
                    notes=report.notes,
                    counselling=",".join(report.counselling)[:120],
                    hardships=",".join(report.hardships)[:120],
                    situation=report.situation,
                ),
                ["case_id", "generation", "visit_no"],
            )
            insert_ignore(
                session,
                ContactAttempt,
                dict(
                    key=case_key(record.loan_no, record.generation, "visit", record.visit_no),
                    case_id=case.id,
                    channel="VISIT",
                    at=report.visited_at,
                    outcome=report.outcome,
                    detail=f"collectors {','.join(report.collector_ids)}",
                    ruleset=ruleset_label(record.policy),
                ),
                ["key"],
            )
            if inserted and report.outcome == VisitOutcome.HOSTILE:
                session.get(Borrower, loan.borrower_id).hostile = True  # type: ignore[union-attr]
            if inserted:  # forbidden wording in the notes stored: a task for the supervisor
                flag_wording(
                    session, case, record.loan_no,
                    case_key(record.loan_no, record.generation, "wording-visit", record.visit_no),
                    f"visit {record.visit_no} notes", report.reported_by or report.collector_ids[0],
                    report.notes, activity_now(),
                )  # fmt: skip

    @activity.defn(name=A.RECORD_DEBT)
    def record_debt(self, record: DebtRecord) -> None:
        """A later export's balances taken by the case: the case row's debt, and one entry in
        the audit trail per export date (a retry finds the entry its first attempt wrote)."""
        u = record.update
        detail = (
            f"as of {u.as_of}: principal {u.principal_fen}, interest {u.interest_fen}, "
            f"penalty {u.penalty_fen} fen in the export; case debt {record.debt_before_fen} → "
            f"{record.debt_after_fen} fen, outstanding {record.outstanding_fen} fen"
        )
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, record.loan_no, activity_now())
            case.debt_fen = record.debt_after_fen
            set_outstanding(session, case, record.outstanding_fen, record.outstanding_at)
            seen = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.loan_no == record.loan_no,
                    AuditEvent.action == "DEBT_UPDATED",
                    AuditEvent.detail == detail,
                )
            )
            if not seen:
                session.add(
                    AuditEvent(
                        at=activity_now(),
                        username=u.by[:64],
                        role="system",
                        action="DEBT_UPDATED",
                        loan_no=record.loan_no,
                        outcome="DONE",
                        detail=detail,
                    )
                )

    @activity.defn(name=A.RECORD_PAYMENT)
    def record_payment(self, record: PaymentRecord) -> bool:
        """Record the payment by its reference; True when the reference is this loan's, for
        this amount (a reference stored for another loan is never this case's money)."""
        p = record.payment
        if not p.reference.strip() or p.amount_fen <= 0:
            return False  # the workflow noted it; there is no fact to record
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, record.loan_no, p.paid_at)
            insert_ignore(
                session,
                Payment,
                dict(
                    reference=p.reference,
                    loan_id=loan.id,
                    amount_fen=p.amount_fen,
                    paid_at=p.paid_at,
                    source=p.source,
                    recorded_at=activity_now(),
                ),
                ["reference"],
            )
            stored = session.scalar(_PAYMENT_BY_REFERENCE, {"p_reference": p.reference})
            ours = (
                stored is not None
                and stored.loan_id == loan.id
                and stored.amount_fen == p.amount_fen
            )
            set_next_action(
                session, case, record.next_action, record.next_action_at, record.next_action_stamp
            )
            if ours and record.counted:
                case.paid_fen = max(case.paid_fen, record.paid_total_fen)
                set_outstanding(session, case, record.outstanding_fen, record.outstanding_at)
            return ours

    @activity.defn(name=A.RECORD_SIGNATURE)
    def record_signature(self, record: SignatureRecord) -> None:
        c = record.confirmation
        with self.sessions.begin() as session:
            loan, case = self._loan_case(session, record.loan_no, c.signed_at)
            agreement = session.scalar(
                select(Agreement).where(
                    Agreement.case_id == case.id, Agreement.version == c.version
                )
            )
            if agreement is None:
                raise not_found(f"agreement version {c.version} of loan {loan.loan_no}")
            if agreement.sha256 != c.sha256.strip().lower():
                raise invalid_input(f"sha256: does not match agreement version {c.version}")
            if agreement.signed_at is None:  # the first confirmation stands
                agreement.signed_at = c.signed_at
                agreement.signed_by = c.collector_id
                agreement.signed_place = c.place

    @activity.defn(name=A.RECORD_PROMISE)
    def record_promise(self, record: PromiseRecord) -> None:
        """The promise's row (by case, generation and number), its status as the case has
        it now; one audit entry per status."""
        p = record.promise
        with self.sessions.begin() as session:
            _, case = self._loan_case(session, record.loan_no, p.made_at)
            keys = dict(case_id=case.id, generation=record.generation, seq=p.seq)
            insert_ignore(
                session,
                PromiseToPay,
                dict(
                    **keys,
                    amount_fen=p.amount_fen,
                    due_date=p.due_date,
                    source=p.source,
                    made_by=p.by[:64],
                    made_at=p.made_at,
                    status=p.status,
                    resolved_at=p.resolved_at,
                    paid_fen=p.paid_fen,
                    notes=p.notes,
                ),
                list(keys),
            )
            row = session.scalars(select(PromiseToPay).filter_by(**keys)).one()
            if status_rank(p.status) >= status_rank(row.status):  # never back to OPEN
                row.status, row.resolved_at, row.paid_fen = p.status, p.resolved_at, p.paid_fen
            _audit_once(
                session,
                record.loan_no,
                f"PROMISE_{p.status}",
                p.by,
                f"{record.key}: {p.amount_fen} fen by {p.due_date} ({p.source}); "
                f"paid towards it {p.paid_fen} fen",
            )

    @activity.defn(name=A.RECORD_WAIVER)
    def record_waiver(self, record: WaiverRecord) -> None:
        """The request's row and its decision; one audit entry per status."""
        w = record.waiver
        with self.sessions.begin() as session:
            _, case = self._loan_case(session, record.loan_no, w.proposed_at)
            set_outstanding(session, case, record.outstanding_fen, record.outstanding_at)
            keys = dict(case_id=case.id, generation=record.generation, seq=w.seq)
            decision = dict(
                status=w.status,
                decided_by=w.decided_by[:64],
                decided_at=w.decided_at,
                decision_reason=w.decision_reason,
            )
            insert_ignore(
                session,
                WaiverRequest,
                dict(
                    **keys,
                    kind=w.kind,
                    principal_fen=w.principal_fen,
                    interest_fen=w.interest_fen,
                    penalty_fen=w.penalty_fen,
                    settle_fen=w.settle_fen,
                    level=w.level,
                    proposed_by=w.proposed_by[:64],
                    proposed_at=w.proposed_at,
                    deadline=w.deadline,
                    reason=w.reason,
                    **decision,
                ),
                list(keys),
            )
            row = session.scalars(select(WaiverRequest).filter_by(**keys)).one()
            if status_rank(w.status) >= status_rank(row.status):  # never back to PENDING
                for name, value in decision.items():
                    setattr(row, name, value)
            actor = w.decided_by if w.status != "PENDING" and w.decided_by else w.proposed_by
            _audit_once(
                session,
                record.loan_no,
                f"WAIVER_{w.status}",
                actor or "system",
                f"{record.key}: {w.kind} principal {w.principal_fen}, interest "
                f"{w.interest_fen}, penalty {w.penalty_fen} fen (settle {w.settle_fen}); "
                f"needs {w.level}; {w.decision_reason or w.reason}",
            )


def status_rank(status: str) -> int:
    """How far a promise's or a waiver's status has come: a row's status only moves forward
    (two record activities racing must not put a resolved row back to OPEN or PENDING, nor a
    settled settlement back to merely approved)."""
    if status in ("OPEN", "PENDING"):
        return 0
    if status == "APPROVED":
        return 1
    return 2


def _audit_once(session: Session, loan_no: str, action: str, actor: str, detail: str) -> None:
    """An audit entry, unless a retry's first attempt wrote the same one."""
    seen = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.loan_no == loan_no,
            AuditEvent.action == action,
            AuditEvent.detail == detail,
        )
    )
    if not seen:
        session.add(
            AuditEvent(
                at=activity_now(),
                username=actor[:64],
                role="system",
                action=action[:32],
                loan_no=loan_no,
                outcome="DONE",
                detail=detail,
            )
        )
