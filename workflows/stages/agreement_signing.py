"""AGREEMENT_SIGNING (签署协议): the accepted plan rendered as a 还款协议 (a new immutable
version per plan), a task and an SMS to have it signed, then a wait for the signature bound
to the document's SHA-256. Unsigned by the deadline: back to negotiation."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.case import Case
from workflows.contact import send_sms
from workflows.stages import negotiation

with workflow.unsafe.imports_passed_through():
    from domain.models import AgreementRef, AgreementRequest
    from domain.names import Activities as A
    from domain.stages import Stage, TaskKind


async def run(case: Case) -> None:
    s, p = case.s, case.s.policy
    assert s.plan is not None and s.debt_fen is not None
    if s.agreement is None or s.agreement.plan_number != s.plan.number:
        s.agreement = await case.act(
            A.RENDER_AGREEMENT,
            AgreementRequest(
                s.loan_no, s.plan, list(s.collectors), s.debt_fen, s.paid_fen, p, s.generation
            ),
            AgreementRef,
        )
        case.note(
            "agreement", f"version {s.agreement.version} rendered, sha256 {s.agreement.sha256}"
        )
    if s.phase == "":
        s.phase = "AWAIT_SIGNATURE"
        s.phase_due = workflow.now() + timedelta(seconds=p.signature_deadline_seconds)
        await case.task(
            TaskKind.COLLECT_SIGNATURE,
            f"have agreement version {s.agreement.version} signed "
            f"(sha256 {s.agreement.sha256[:12]}…)",
            s.phase_due,
            then=("signature", s.phase_due),  # the wait below (its next action)
        )
        total, version = s.plan.total_fen, s.agreement.version
        await send_sms(  # not needed any more once signed (collection-v4)
            case,
            "agreement_ready",
            lambda: None if s.signed_version == version else {"amount_fen": str(total)},
        )
    agreement = s.agreement
    assert s.phase_due is not None
    if await case.wait(lambda: s.signed_version == agreement.version, s.phase_due, "signature"):
        s.reminded_seqs = []
        s.next_revisit_at = workflow.now() + timedelta(seconds=p.revisit_interval_seconds)
        await case.enter(Stage.FOLLOW_UP, f"agreement version {agreement.version} signed")
        return
    await negotiation.failed(case, "agreement not signed before the deadline", Stage.NEGOTIATION)
