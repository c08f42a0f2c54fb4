"""Rendering repayment agreements (还款协议) as immutable, hashed versions."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.clock import activity_now
from activities.errors import not_found
from activities.texts import environment
from db.models import Agreement, AgreementInstallment, Branch
from db.repository import case_for_loan, insert_ignore, loan_by_no
from domain.models import AgreementRef, AgreementRequest
from domain.names import Activities as A
from domain.privacy import mask_id_number
from domain.timerules import local_date


def plan_hash(request: AgreementRequest) -> str:
    """Identifies the plan being rendered: a retry has the same, a renegotiation another."""
    plan = request.plan
    canonical = json.dumps(
        {
            "loan": request.loan_no,
            "plan": plan.number,
            "down": plan.first_is_down_payment,
            "items": [[i.seq, i.due_at.isoformat(), i.amount_fen] for i in plan.installments],
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class AgreementActivities:
    def __init__(self, sessions: sessionmaker[Session], store: Path) -> None:
        self.sessions = sessions
        self.store = store
        self.env = environment(autoescape=True)

    @activity.defn(name=A.RENDER_AGREEMENT)
    def render_agreement(self, request: AgreementRequest) -> AgreementRef:
        key = plan_hash(request)
        with self.sessions.begin() as session:
            loan = loan_by_no(session, request.loan_no)
            if loan is None:
                raise not_found(f"loan {request.loan_no} is not in the database")
            case = case_for_loan(session, loan, request.plan.accepted_at)
            existing = session.scalar(
                select(Agreement).where(Agreement.case_id == case.id, Agreement.plan_hash == key)
            )
            if existing is not None:
                return _ref(existing)
            version = 1 + (
                session.scalar(
                    select(func.max(Agreement.version)).where(Agreement.case_id == case.id)
                )
                or 0
            )
            branch = session.get(Branch, loan.branch_code)
            html = self._render(request, loan, branch, version)
            data = html.encode("utf-8")
            digest = hashlib.sha256(data).hexdigest()
            path = self._write(request.loan_no, version, digest, data)
            inserted = insert_ignore(
                session,
                Agreement,
                dict(
                    case_id=case.id,
                    version=version,
                    plan_number=request.plan.number,
                    plan_hash=key,
                    sha256=digest,
                    html_path=str(path),
                    size_bytes=len(data),
                    total_fen=request.plan.total_fen,
                    created_at=activity_now(),
                ),
                ["case_id", "plan_hash"],
            )
            row = session.scalar(
                select(Agreement).where(Agreement.case_id == case.id, Agreement.plan_hash == key)
            )
            assert row is not None
            if inserted:
                for inst in request.plan.installments:
                    session.add(
                        AgreementInstallment(
                            agreement_id=row.id,
                            seq=inst.seq,
                            due_at=inst.due_at,
                            amount_fen=inst.amount_fen,
                        )
                    )
            return _ref(row)

    def _render(self, request: AgreementRequest, loan, branch, version: int) -> str:  # type: ignore[no-untyped-def]
        policy = request.policy
        borrower = loan.borrower
        return self.env.get_template("agreement/agreement.html.j2").render(
            version=version,
            loan=loan,
            branch_name=branch.name if branch else loan.branch_code,
            borrower_name=borrower.name,
            borrower_id_masked=mask_id_number(borrower.id_number),
            debt_fen=request.debt_fen,
            paid_fen=request.paid_fen,
            plan=request.plan,
            installments=[
                (i.seq, local_date(i.due_at, policy).isoformat(), i.amount_fen)
                for i in request.plan.installments
            ],
            collectors=request.collectors,
            drawn_up_on=local_date(request.plan.accepted_at, policy).isoformat(),
            grace_days=policy.grace_seconds // 86400,
        )

    def _write(self, loan_no: str, version: int, digest: str, data: bytes) -> Path:
        """Content-addressed and written atomically: a rewrite is the same bytes."""
        folder = self.store / loan_no
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"v{version}-{digest[:16]}.html"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path


def _ref(row: Agreement) -> AgreementRef:
    return AgreementRef(row.version, row.sha256, row.plan_number, row.html_path)
