"""Collectors' free texts checked for forbidden wording (domain/wording.py) when they are stored:
a match is a task for the branch's supervisor and a line in the audit trail, never a refusal
(notes describe what happened; a person decides whether the collector said it)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.orm import Session

from db.models import AuditEvent, Case, Task
from db.repository import insert_ignore
from domain.stages import TaskKind
from domain.wording import LABELS, Category, categories, forbidden_phrases

AUDIT_ACTION = "wording_flagged"  # audit_events.action
KEY_LENGTH = 120  # tasks.key


def review_key(record_key: str) -> str:
    """The review task's key for a record stored under `record_key` (a call, a consent)."""
    key = f"wording:{record_key}"
    if len(key) <= KEY_LENGTH:
        return key
    return "wording:" + hashlib.sha256(record_key.encode()).hexdigest()


def flag_wording(
    session: Session, case: Case, loan_no: str, key: str, source: str, author: str,
    text: str, at: datetime,
) -> list[Category]:  # fmt: skip
    """In the caller's transaction: when `text` has forbidden wording, a REVIEW_WORDING task
    for `supervisor:<branch>` keyed `key` (a retry adds nothing) and, with the task, one audit
    event. The task names the categories and the words matched, not the text itself (it stays
    where it was stored: the case page shows it). Returns the categories, [] when clean."""
    findings = forbidden_phrases(text)
    if not findings:
        return []
    found = categories(findings)
    assignee = f"supervisor:{case.branch_code}"
    detail = (
        f"{source} by {author}: wording the collection guideline forbids — "
        + "; ".join(LABELS[c] for c in found)
        + f" (matched: {', '.join(dict.fromkeys(f.phrase for f in findings))}). "
        "Review it with the collector."
    )[:2000]
    inserted = insert_ignore(
        session,
        Task,
        dict(
            key=key[:KEY_LENGTH],
            case_id=case.id,
            kind=TaskKind.REVIEW_WORDING.value,
            assignees=assignee,
            due_at=None,
            detail=detail,
            created_at=at,
            status="OPEN",
        ),
        ["key"],
    )
    if inserted:
        session.add(
            AuditEvent(
                at=at,
                username="system",
                role="SYSTEM",
                action=AUDIT_ACTION,
                loan_no=loan_no,
                outcome="DONE",
                detail=f"{source} by {author}: {', '.join(found)} -> task for {assignee}",
            )
        )
    return found
