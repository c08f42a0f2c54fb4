"""Rendering repayment agreements (还款协议) as immutable, hashed versions (HTML and PDF)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.clock import activity_now
from activities.documents import PdfRenderer
from activities.errors import invalid_input, not_found, with_case_policy
from activities.texts import environment
from activities.wording_review import flag_wording
from db.models import Agreement, AgreementInstallment, Branch, Loan, SignedScan
from db.repository import case_for_loan, insert_ignore, loan_by_no
from domain.models import AgreementRef, AgreementRequest
from domain.names import Activities as A
from domain.names import case_key
from domain.privacy import mask_id_number
from domain.timerules import local_date

SCAN_TYPES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"%PDF-": "application/pdf",
}
MAX_SCAN_BYTES = 20 * 1024 * 1024


def plan_hash(request: AgreementRequest) -> str:
    """Identifies the plan being rendered: a retry has the same, a renegotiation another."""
    plan = request.plan
    canonical = json.dumps(
        {
            "loan": request.loan_no,
            "plan": plan.number,
            "down": plan.first_is_down_payment,
            "items": [[i.seq, i.due_at.isoformat(), i.amount_fen] for i in plan.installments],
            # A case started again renders its own versions (omitted when empty, so the
            # released code's hashes stay the same).
            **({"generation": request.generation} if request.generation else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_once(path: Path, data: bytes) -> Path:
    """Content-addressed files are written atomically and never rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


class AgreementActivities:
    def __init__(
        self, sessions: sessionmaker[Session], store: Path, pdf: PdfRenderer | None = None
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.env = environment(autoescape=True)
        self._pdf = pdf
        self._pdf_lock = threading.Lock()

    @property
    def pdf(self) -> PdfRenderer:
        """The renderer given, else one made at the first render that renders in this
        process: a cases-only worker renders a released case's agreement (its runs schedule
        it on the case's queue) without loading WeasyPrint or starting a PDF pool at start."""
        with self._pdf_lock:  # two activity threads rendering at once make one renderer
            if self._pdf is None:
                self._pdf = PdfRenderer()
            return self._pdf

    def render_html(
        self, request: AgreementRequest, loan: Loan, branch: Branch | None, version: int
    ) -> str:
        policy = request.policy
        borrower = loan.borrower
        plan = request.plan
        return self.env.get_template("agreement/agreement.html.j2").render(
            version=version,
            loan=loan,
            branch_name=branch.name if branch else loan.branch_code,
            borrower_name=borrower.name,
            borrower_id_masked=mask_id_number(borrower.id_number),
            borrower_address=borrower.address,
            debt=debt_lines(request, loan),
            outstanding_fen=plan.total_fen,
            plan=plan,
            installments=[
                (i.seq, local_date(i.due_at, policy).isoformat(), i.amount_fen)
                for i in plan.installments
            ],
            collectors=request.collectors,
            drawn_up_on=local_date(plan.accepted_at, policy).isoformat(),
            grace_days=policy.grace_seconds // 86400,
        )

    @activity.defn(name=A.RENDER_AGREEMENT)
    def render_agreement(self, request: AgreementRequest) -> AgreementRef:
        request = with_case_policy(request)
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
                return _ref(existing)  # a retry, or the same plan rendered before
            version = 1 + (
                session.scalar(
                    select(func.max(Agreement.version)).where(Agreement.case_id == case.id)
                )
                or 0
            )
            html = self.render_html(request, loan, session.get(Branch, loan.branch_code), version)
            html_bytes = html.encode("utf-8")
            pdf_bytes = self.pdf.render(html)
            html_sha = hashlib.sha256(html_bytes).hexdigest()
            pdf_sha = hashlib.sha256(pdf_bytes).hexdigest()
            folder = self.store / request.loan_no
            html_path = write_once(folder / f"v{version}-{html_sha[:16]}.html", html_bytes)
            pdf_path = write_once(folder / f"v{version}-{pdf_sha[:16]}.pdf", pdf_bytes)
            inserted = insert_ignore(
                session,
                Agreement,
                dict(
                    case_id=case.id,
                    version=version,
                    plan_number=request.plan.number,
                    plan_hash=key,
                    sha256=pdf_sha,
                    pdf_path=str(pdf_path),
                    size_bytes=len(pdf_bytes),
                    html_path=str(html_path),
                    html_sha256=html_sha,
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
                # The plan's notes (kept in the workflow's state, not in our tables) reach the
                # database here first, whoever proposed the plan: forbidden wording in them is
                # a task for the supervisor, once per plan.
                plan = request.plan
                flag_wording(
                    session, case, request.loan_no,
                    case_key(request.loan_no, request.generation, "wording-plan", plan.number),
                    f"plan {plan.number} notes", plan.proposed_by, plan.notes, activity_now(),
                )  # fmt: skip
            return _ref(row)


def store_signed_scan(
    sessions: sessionmaker[Session],
    store: Path,
    loan_no: str,
    version: int,
    data: bytes,
    uploaded_by: str,
    now: datetime,
) -> SignedScan:
    """Keep a photo or scan of the signed paper beside its version; the same file twice is one."""
    content_type = next((t for magic, t in SCAN_TYPES.items() if data.startswith(magic)), None)
    if content_type is None:
        raise invalid_input("file: a signed scan must be a JPEG, PNG or PDF")
    if len(data) > MAX_SCAN_BYTES:
        raise invalid_input(f"file: at most {MAX_SCAN_BYTES // 2**20} MB")
    digest = hashlib.sha256(data).hexdigest()
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        if loan is None:
            raise not_found(f"loan {loan_no} is not in the database")
        agreement = session.scalar(
            select(Agreement).where(
                Agreement.case_id == case_for_loan(session, loan, now).id,
                Agreement.version == version,
            )
        )
        if agreement is None:
            raise not_found(f"loan {loan_no} has no agreement version {version}")
        suffix = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}[content_type]
        path = write_once(store / loan_no / f"v{version}-signed-{digest[:16]}.{suffix}", data)
        insert_ignore(
            session,
            SignedScan,
            dict(
                agreement_id=agreement.id,
                sha256=digest,
                path=str(path),
                size_bytes=len(data),
                content_type=content_type,
                uploaded_by=uploaded_by,
                uploaded_at=now,
            ),
            ["agreement_id", "sha256"],
        )
        scan = session.scalar(
            select(SignedScan).where(
                SignedScan.agreement_id == agreement.id, SignedScan.sha256 == digest
            )
        )
        assert scan is not None
        return scan


def _ref(row: Agreement) -> AgreementRef:
    return AgreementRef(row.version, row.sha256, row.plan_number, row.pdf_path)


@dataclass(frozen=True)
class DebtLines:
    """The agreement's first article: what is owed, what was paid before, what the plan covers."""

    principal_fen: int
    interest_fen: int
    penalty_fen: int
    debt_fen: int
    paid_fen: int
    waived_fen: int = 0  # approved waivers and settlements: principal + interest + penalty
    # - waived = debt


def debt_lines(request: AgreementRequest, loan: Loan) -> DebtLines:
    """From the plan's snapshot (collection-v4): the figures the plan was agreed on, which add
    up: principal + interest + penalty = debt, debt - paid = the plan's total. A plan accepted
    by the released code has no snapshot: its lines come from the loan row, as they did."""
    plan = request.plan
    if plan.debt_fen is not None and plan.principal_fen is not None:
        return DebtLines(
            principal_fen=plan.principal_fen,
            interest_fen=plan.interest_fen or 0,
            penalty_fen=plan.penalty_fen or 0,
            debt_fen=plan.debt_fen,
            paid_fen=plan.base_paid_fen,
            waived_fen=plan.waived_fen,
        )
    return DebtLines(
        loan.outstanding_principal_fen,
        loan.interest_fen,
        loan.penalty_fen,
        request.debt_fen,
        plan.base_paid_fen,  # paid when the plan was accepted, not when it is rendered
    )
