"""Delivery receipts (the provider's status callbacks) on the outbox rows, whichever comes
first: the receipt, or our commit of the Message SID the provider answered with.

The status webhook and the send activity both serialise on the Message SID, so that a
receipt is either applied to its row or kept, and a kept one is applied when the row gets its
SID, never missed by both.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from db.models import SmsOutbox, UnmatchedReceipt
from db.repository import insert_ignore
from domain.models import DeliveryFailure

FAILED = ("undelivered", "failed")
# The statuses a message ends in: a late "sent" does not overwrite "delivered".
FINAL = {"delivered", "undelivered", "failed", "read", "canceled"}
# Delivery errors that mean the number itself cannot take SMS (unknown, landline, ...).
UNUSABLE_DELIVERY_ERRORS = {"30005", "30006"}
# A receipt no message of ours claimed within this long was for a message we did not send.
KEEP_UNMATCHED = timedelta(days=7)


def serialize_on_sid(session: Session, sid: str) -> None:
    """Until this transaction ends, no other receipt or SID for `sid` is written.

    PostgreSQL: a transaction-level advisory lock on the SID. SQLite: the database's write
    lock, taken now (a write that changes nothing) rather than at the first real write, so
    the reads that follow see every earlier writer's commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:sid, 0))"), {"sid": sid}
        )
    else:
        session.execute(text("UPDATE sms_unmatched_receipts SET id = id WHERE 0 = 1"))


def record_receipt(
    session: Session, sid: str, status: str, error: str, now: datetime
) -> SmsOutbox | None:
    """The receipt on its outbox row (returned), or kept for that row (None)."""
    serialize_on_sid(session, sid)
    row = session.scalar(select(SmsOutbox).where(SmsOutbox.provider_sid == sid))
    if row is not None:
        apply_receipt(row, status, error)
        return row
    insert_ignore(
        session,
        UnmatchedReceipt,
        dict(message_sid=sid, status=status[:16], error_code=error[:16] or None, received_at=now),
        ["message_sid", "status"],
    )
    session.execute(
        delete(UnmatchedReceipt).where(UnmatchedReceipt.received_at < now - KEEP_UNMATCHED)
    )
    return None


def apply_unmatched(session: Session, row: SmsOutbox) -> None:
    """The receipts that came before `row` got its SID (just set, in this transaction)."""
    if not row.provider_sid:
        return
    serialize_on_sid(session, row.provider_sid)
    kept = session.scalars(
        select(UnmatchedReceipt)
        .where(UnmatchedReceipt.message_sid == row.provider_sid)
        .order_by(UnmatchedReceipt.received_at, UnmatchedReceipt.id)
    ).all()
    for receipt in sorted(kept, key=lambda r: r.status in FINAL):  # in time, the final last
        apply_receipt(row, receipt.status, receipt.error_code or "")
        session.delete(receipt)


def apply_receipt(row: SmsOutbox, status: str, error: str) -> None:
    if row.delivery_status in FINAL and status not in FINAL:
        return  # callbacks can arrive out of order
    row.delivery_status, row.delivery_error = status[:16], error[:16] or None


def delivery_failure(sid: str, status: str, error: str) -> DeliveryFailure | None:
    """What the case is told of a receipt: None unless the message was not delivered."""
    if status not in FAILED:
        return None
    return DeliveryFailure(sid, status, error, error in UNUSABLE_DELIVERY_ERRORS)


def failure_of(row: SmsOutbox) -> DeliveryFailure | None:
    if not row.provider_sid:
        return None
    return delivery_failure(row.provider_sid, row.delivery_status or "", row.delivery_error or "")
