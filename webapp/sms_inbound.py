"""What a provider's callbacks mean, whichever provider sent them (Twilio's webhooks, Aliyun's
SmsUp and SmsReport): a borrower's reply stored, classified and told to their open case once;
a delivery receipt on its outbox row and a failure told to the case once."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.sms import THIRD_PARTY_PURPOSES
from activities.sms_receipts import delivery_failure, record_receipt
from db.models import Borrower, Branch, Case, InboundMessage, Loan, Task, WebhookEvent
from db.repository import insert_ignore
from domain.models import BorrowerReply
from domain.names import workflow_id
from domain.privacy import mask_loan_no, mask_phone, mask_text
from domain.replies import claims_payment, interpret
from domain.safety import STAFF_PURPOSES as STAFF
from domain.stages import CLOSED_STAGES, ReplyIntent, TaskKind

log = logging.getLogger(__name__)

Signal = Callable[[str, str, object], Awaitable[bool]]


@dataclass
class Inbound:
    new: bool  # to process: stored now, or stored before but its case never told
    loan_no: str | None = None
    first_opt_out: bool = False
    cooperative: str = "信用社"
    received_at: datetime | None = None  # when first stored, for a retry
    # The number is several borrowers' (spouses sharing a phone): an opt-out is every one's,
    # and their open cases are told it too (`others`); another reply goes to none of them
    # but is a READ_REPLY task on each open case for the branch to sort out.
    shared: bool = False
    others: tuple[str, ...] = ()


@dataclass
class Reply:
    """What became of a reply: processed now (`new`), and the text to answer it with, if any
    (`answer`: the template's purpose; on a channel that can answer in its response)."""

    new: bool
    intent: ReplyIntent
    answer: str | None = None
    cooperative: str = "信用社"


def callback_items(
    provider: str, token: str
) -> Callable[[Request, str, tuple[str, ...]], Awaitable[list[dict]]]:  # type: ignore[type-arg]
    """A provider callback's reader (Aliyun, Tencent: they do not sign theirs): the secret in
    its URL path compared in constant time (403 otherwise), then a JSON object or array whose
    items each have `fields` (400 naming the item and the fields otherwise)."""

    async def items(request: Request, given: str, fields: tuple[str, ...]) -> list[dict]:  # type: ignore[type-arg]
        if not hmac.compare_digest(given.encode(), token.encode()):
            log.warning(
                "refused a %s callback with a wrong token on %s", provider, request.url.path
            )
            raise HTTPException(403, "invalid callback token")
        try:
            data = await request.json()
        except ValueError:
            raise HTTPException(400, "body: not JSON") from None
        data = data if isinstance(data, list) else [data]
        for n, item in enumerate(data):
            missing = [f for f in fields if not isinstance(item, dict) or item.get(f) in (None, "")]
            if missing:
                raise HTTPException(400, f"item {n}: {', '.join(missing)} missing")
        return data

    return items


def case_signal(temporal: Callable[[], Awaitable[Client]]) -> Signal:
    async def signal(loan_no: str, name: str, arg: object) -> bool:
        """False when the case is gone (closed); other failures propagate (503)."""
        client = await temporal()
        try:
            await client.get_workflow_handle(workflow_id(loan_no)).signal(name, arg)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    return signal


async def handle_reply(
    sessions: sessionmaker[Session], signal: Signal, sid: str, phone: str, body: str
) -> Reply:
    """A borrower's reply, identified by the provider's id for it (`sid`): stored, matched
    by phone to their open case, classified and signalled once. A replay of the same id acts
    once; a signal that fails is 503, and the provider's retry tells the case."""
    intent = interpret(body)
    now = datetime.now(UTC)
    found = await run_in_threadpool(store_inbound, sessions, sid, phone, body, intent, now)
    if not found.new:
        return Reply(False, intent)  # the provider retried: already processed
    log.info("SMS %s from %s: %s", sid, mask_phone(phone), intent)
    if found.loan_no:
        try:
            reply = BorrowerReply(sid, intent, found.received_at or now, claims_payment(body))
            await signal(found.loan_no, "borrower_reply", reply)
        except Exception:
            # Not processed: kept (record retention) but not marked, so that the provider's
            # retry tells the case (the case ignores a reply it has seen).
            log.exception("could not signal the case of SMS %s", sid)
            raise HTTPException(503, "try again") from None
        await run_in_threadpool(mark_inbound_processed, sessions, sid)
    for loan_no in found.others:  # their texts are blocked at sending already: told besides
        try:
            await signal(loan_no, "borrower_reply", BorrowerReply(sid, intent, now))
        except Exception:
            log.exception(
                "could not tell case %s of the opt-out in SMS %s", mask_loan_no(loan_no), sid
            )
    if intent == ReplyIntent.OPT_OUT and found.first_opt_out:
        answer: str | None = "opt_out_confirmation"
    elif found.loan_no is None and intent != ReplyIntent.OPT_OUT and not found.shared:
        answer = "reply_without_case"
    else:
        answer = None
    return Reply(True, intent, answer, found.cooperative)


async def handle_receipt(
    sessions: sessionmaker[Session], signal: Signal, sid: str, status: str, error: str
) -> bool:
    """A delivery receipt (`status` in Twilio's words: delivered, undelivered, failed, ...)
    on its outbox row, a failure told to the case; once. False: already processed."""
    seen, loan_no = await run_in_threadpool(store_status, sessions, sid, status, error)
    if seen:
        return False
    failure = delivery_failure(sid, status, error)
    if loan_no and failure:
        try:
            await signal(loan_no, "sms_delivery_failed", failure)
        except Exception:
            # Not processed: not marked either, so that the provider's retry is processed.
            log.exception("could not signal the case of delivery receipt %s", sid)
            raise HTTPException(503, "try again") from None
    await run_in_threadpool(mark_processed, sessions, sid, status)
    return True


def store_inbound(
    sessions: sessionmaker[Session],
    sid: str,
    phone: str,
    body: str,
    intent: ReplyIntent,
    now: datetime,
) -> Inbound:
    with sessions.begin() as session:
        borrowers = session.scalars(
            select(Borrower).where(Borrower.phone == phone).order_by(Borrower.id)
        ).all()
        # A reply is one borrower's only when the number is one borrower's.
        borrower = borrowers[0] if len(borrowers) == 1 else None
        case = _open_case(session, borrower.id) if borrower is not None else None
        new = insert_ignore(
            session,
            InboundMessage,
            dict(
                message_sid=sid,
                from_number=phone,
                body=body,
                intent=intent.value,
                borrower_id=borrower.id if borrower else None,
                case_id=case.id if case else None,
                received_at=now,
                processed_at=None if case else now,  # no case to tell: processed
            ),
            ["message_sid"],
        )
        if not new:
            return _retried_inbound(session, sid)
        first_opt_out = False
        if intent == ReplyIntent.OPT_OUT:  # whoever's the number is: every one of them
            for each in borrowers:
                first_opt_out = first_opt_out or not each.sms_opted_out
                each.sms_opted_out = True
                each.opted_out_at = each.opted_out_at or now
        shared_cases: list[Case] = []
        if len(borrowers) > 1:
            shared_cases = [c for b in borrowers if (c := _open_case(session, b.id)) is not None]
        if intent != ReplyIntent.OPT_OUT:
            for other in shared_cases:
                _read_reply_task(session, sid, other, phone, body, now)
        cooperative = "信用社"
        if case is not None:
            branch = session.get(Branch, case.branch_code)
            cooperative = branch.name if branch else cooperative
        loan_no = case.loan.loan_no if case else None
        others = (
            tuple(c.loan.loan_no for c in shared_cases) if intent == ReplyIntent.OPT_OUT else ()
        )
        return Inbound(
            True, loan_no, first_opt_out, cooperative, shared=len(borrowers) > 1, others=others
        )


def _open_case(session: Session, borrower_id: int) -> Case | None:
    return session.scalar(
        select(Case)
        .join(Loan, Loan.id == Case.loan_id)
        .where(
            Loan.borrower_id == borrower_id,
            Case.stage.not_in([s.value for s in CLOSED_STAGES]),
        )
        .order_by(Case.opened_at.desc())
    )


def _read_reply_task(
    session: Session, sid: str, case: Case, phone: str, body: str, now: datetime
) -> None:
    """A reply from a number several borrowers share, on each one's open case: the branch
    finds out whose it is (the text masked: it may name another number)."""
    insert_ignore(
        session,
        Task,
        dict(
            key=f"shared-reply:{case.id}:{sid}"[:120],
            case_id=case.id,
            kind=TaskKind.READ_REPLY.value,
            assignees=f"supervisor:{case.branch_code}",
            due_at=None,
            detail=(
                f"多位借款人共用号码 {mask_phone(phone)} 的回复，无法确定是谁：请核实后处理 "
                f"(a reply from a number several borrowers share): {mask_text(body)}"
            )[:2000],
            created_at=now,
            status="OPEN",
        ),
        ["key"],
    )


def _retried_inbound(session: Session, sid: str) -> Inbound:
    """The provider's retry of a message already stored: processed, or its case still to be told
    (the signal failed before; the message stays stored, as all evidence does)."""
    row = session.scalar(select(InboundMessage).where(InboundMessage.message_sid == sid))
    if row is None or row.processed_at is not None or row.case_id is None:
        return Inbound(False)
    case = session.get(Case, row.case_id)
    if case is None:
        return Inbound(False)
    return Inbound(True, case.loan.loan_no, received_at=row.received_at)


def mark_inbound_processed(sessions: sessionmaker[Session], sid: str) -> None:
    """Its case was told: the provider's next retry, if any, is answered as already processed."""
    with sessions.begin() as session:
        row = session.scalar(select(InboundMessage).where(InboundMessage.message_sid == sid))
        if row is not None and row.processed_at is None:
            row.processed_at = datetime.now(UTC)


def store_status(
    sessions: sessionmaker[Session], sid: str, status: str, error: str
) -> tuple[bool, str | None]:
    """(already processed, the message's loan number): the receipt on its outbox row, or
    kept until the send activity stores the row's Message SID."""
    with sessions.begin() as session:
        seen = session.scalar(
            select(WebhookEvent.id).where(
                WebhookEvent.kind == "status",
                WebhookEvent.message_sid == sid,
                WebhookEvent.status == status[:16],
            )
        )
        if seen is not None:
            return True, None
        row = record_receipt(session, sid, status, error, datetime.now(UTC))
        if row is not None and (row.purpose in THIRD_PARTY_PURPOSES or row.purpose in STAFF):
            return False, None  # a third party's or a colleague's: nothing the case learns
        case = session.get(Case, row.case_id) if row is not None else None
        return False, case.loan.loan_no if case else None


def mark_processed(sessions: sessionmaker[Session], sid: str, status: str) -> None:
    """Marked only once processed (the case signalled): a callback that failed on its way is
    processed again when the provider retries it."""
    with sessions.begin() as session:
        insert_ignore(
            session,
            WebhookEvent,
            dict(kind="status", message_sid=sid, status=status[:16], received_at=datetime.now(UTC)),
            ["kind", "message_sid", "status"],
        )
