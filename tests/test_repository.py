"""db/repository.py's shared statements (built once, run on the table: issue 17) behave as
the ORM statements they replaced, on SQLite and PostgreSQL: they see the session's pending
changes, leave out columns to their defaults, and only a newer time overwrites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Case, Task
from db.repository import (
    case_for_loan,
    insert_ignore,
    loan_and_case,
    loan_by_no,
    set_next_action,
    set_outstanding,
)
from db.seed import add_loan
from tests.harness import loan_spec

NOW = datetime.now(UTC)


def new_loan(sessions: sessionmaker[Session]) -> str:
    spec = loan_spec()
    with sessions.begin() as session:
        add_loan(session, spec)
    return spec.loan_no


def task_values(case_id: int, key: str) -> dict[str, object]:
    return dict(
        key=key, case_id=case_id, kind="PHONE_CALL", assignees="QX01-C01", due_at=None,
        detail="call", created_at=NOW,
    )  # fmt: skip


def test_insert_ignore_sees_a_pending_row_and_fills_defaults(sessions) -> None:
    loan_no = new_loan(sessions)
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        case = case_for_loan(session, loan, NOW)
        # Added, not flushed: the INSERT must still find it (the ORM statement autoflushed).
        session.add(Task(**task_values(case.id, "k-pending"), status="DONE"))
        assert not insert_ignore(session, Task, task_values(case.id, "k-pending"), ["key"])
        assert insert_ignore(session, Task, task_values(case.id, "k-new"), ["key"])
        assert not insert_ignore(session, Task, task_values(case.id, "k-new"), ["key"])  # retry
    with sessions() as session:
        rows = {k: s for k, s in session.execute(select(Task.key, Task.status))}
        assert rows == {"k-pending": "DONE", "k-new": "OPEN"}  # left out: the default
        assert session.scalar(select(func.count()).select_from(Task)) == 2


def test_outstanding_and_next_action_only_newer_and_aware(sessions) -> None:
    loan_no = new_loan(sessions)
    shanghai = ZoneInfo("Asia/Shanghai")
    at = NOW.astimezone(shanghai)  # another zone: stored and compared as UTC
    with sessions.begin() as session:
        found = loan_and_case(session, loan_no, NOW)
        assert found is not None
        _, case = found
        set_outstanding(session, case, 5_000, at)
        set_outstanding(session, case, 9_999, at - timedelta(seconds=1))  # older: refused
        set_outstanding(session, case, 9_999, at)  # the same time (a retry): refused
        set_next_action(session, case, "visit" * 50, at + timedelta(days=3), at)
        set_next_action(session, case, "old", NOW, at - timedelta(minutes=1))
        set_next_action(session, case, "same stamp", NOW, at)  # a retry: refused
        set_outstanding(session, case, 4_000, None)  # no time: nothing written
        set_next_action(session, case, "none", NOW, None)
        case_id = case.id
    with sessions() as session:
        row = session.get(Case, case_id)
        assert row is not None
        assert (row.outstanding_fen, row.outstanding_at) == (5_000, NOW)
        assert row.outstanding_at is not None and row.outstanding_at.tzinfo is not None
        assert row.next_action == ("visit" * 50)[:120] and row.next_action_stamp == NOW
        assert row.next_action_at == NOW + timedelta(days=3)
        assert row.next_action_at is not None and row.next_action_at.tzinfo is not None
    with sessions.begin() as session:
        set_outstanding(session, session.get(Case, case_id), 3_000, NOW + timedelta(seconds=1))
    with sessions() as session:
        assert session.scalar(select(Case.outstanding_fen).where(Case.id == case_id)) == 3_000
    # A case started again writes "no amount" as of a newer time: NULL, not the old amount.
    with sessions.begin() as session:
        set_outstanding(session, session.get(Case, case_id), None, NOW + timedelta(seconds=2))
    with sessions() as session:
        row = session.get(Case, case_id)
        assert row is not None
        assert (row.outstanding_fen, row.outstanding_at) == (None, NOW + timedelta(seconds=2))


def test_loan_and_case_makes_the_case_once(sessions) -> None:
    loan_no = new_loan(sessions)
    with sessions.begin() as session:
        assert loan_and_case(session, "NO-SUCH-LOAN", NOW) is None
        found = loan_and_case(session, loan_no, NOW)
        assert found is not None
        loan, case = found
        assert loan.loan_no == loan_no and case.loan_id == loan.id and case.stage_since == NOW
    with sessions.begin() as session:
        again = loan_and_case(session, loan_no, NOW + timedelta(days=1))
        assert again is not None and again[1].id == case.id and again[1].opened_at == NOW
        assert session.scalar(select(func.count()).select_from(Case)) == 1
