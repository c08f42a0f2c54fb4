"""Queries the activities share, written to behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Executable, bindparam, inspect, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Base, Borrower, Case, Loan
from domain.names import workflow_id

# The activities run these statements a few times a case each (issue 17: most of a case
# worker's own CPU was SQLAlchemy building, keying and ORM-processing a new statement object
# for every call). They are built once, with bound parameters, and run on the table (Core):
# the same SQL, no ORM bookkeeping (the ORM statement did none: synchronize_session=False,
# no returned objects), and the statement's cache key is computed once. The session
# autoflushes before a statement on the table as before an ORM one (SQLAlchemy >= 2.0.16).


@lru_cache(maxsize=256)
def _insert_ignore_stmt(dialect: str, model: type[Base], keys: tuple[str, ...]) -> Executable:
    """INSERT … ON CONFLICT (keys) DO NOTHING RETURNING 1 into `model`'s table: its VALUES
    are the columns the parameters name (those left out take their defaults, as before)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(model.__table__)
        .on_conflict_do_nothing(index_elements=list(keys))
        # Not rowcount: with psycopg it is -1 (the INSERT carries an implicit RETURNING),
        # which read as "inserted" every time. A row returned is the sign on both databases.
        .returning(literal_column("1"))
    )


@lru_cache(maxsize=64)
def _plain_columns(model: type[Base]) -> frozenset[str]:
    """`model`'s attributes that are its table's column of the same name (a statement on
    the table takes the values by column name)."""
    mapper = inspect(model)
    return frozenset(
        key
        for key, col in mapper.columns.items()
        if col.key == key and col.table is model.__table__
    )


def insert_ignore(
    session: Session, model: type[Base], values: dict[str, Any], keys: list[str]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on the natural key; True when a row was inserted."""
    dialect = session.get_bind().dialect.name
    if not set(values) <= _plain_columns(model):  # never so far: the ORM statement
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        orm = insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        return session.execute(orm.returning(literal_column("1"))).first() is not None
    stmt = _insert_ignore_stmt(dialect, model, tuple(keys))
    return session.execute(stmt, values).first() is not None


_BORROWER_FOR_UPDATE = (
    select(Borrower)
    .where(Borrower.id == bindparam("p_borrower_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_BORROWERS = Borrower.__table__.c
_TOUCH_BORROWER = (  # a no-op UPDATE: SQLite's write lock (lock_borrower)
    update(Borrower.__table__)
    .where(_BORROWERS.id == bindparam("p_borrower_id"))
    .values(sms_opted_out=_BORROWERS.sms_opted_out)
)


def lock_borrower(session: Session, borrower_id: int) -> Borrower:
    """The borrower's row, locked until this transaction ends, and read afresh.

    What counts a borrower's messages and then adds one (the SMS caps, across all their loans)
    holds this lock, so that two such transactions cannot both count before either writes.
    PostgreSQL: SELECT … FOR UPDATE. SQLite has one writer at a time but starts a transaction
    at its first write, not at a read: a no-op UPDATE takes the write lock first (as BEGIN
    IMMEDIATE would), and the reads that follow see every earlier writer's commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.scalars(_BORROWER_FOR_UPDATE, {"p_borrower_id": borrower_id}).one()
    session.execute(_TOUCH_BORROWER, {"p_borrower_id": borrower_id})
    borrower = session.get(Borrower, borrower_id, populate_existing=True)
    assert borrower is not None
    return borrower


_LOAN_BY_NO = select(Loan).where(Loan.loan_no == bindparam("p_loan_no"))
_CASE_OF_LOAN = select(Case).where(Case.loan_id == bindparam("p_loan_id"))


def loan_by_no(session: Session, loan_no: str) -> Loan | None:
    return session.scalar(_LOAN_BY_NO, {"p_loan_no": loan_no})


def case_for_loan(session: Session, loan: Loan, now: datetime) -> Case:
    """The case row of a loan, created on first use (whichever activity comes first)."""
    case = session.scalar(_CASE_OF_LOAN, {"p_loan_id": loan.id})
    if case is None:
        insert_ignore(
            session,
            Case,
            dict(
                loan_id=loan.id,
                workflow_id=workflow_id(loan.loan_no),
                branch_code=loan.branch_code,
                stage="INVESTIGATION",
                stage_since=now,
                opened_at=now,
                last_seq=0,
                risk_tier="",
                paid_fen=0,
                next_action="",
            ),
            ["loan_id"],
        )
        case = session.scalar(_CASE_OF_LOAN, {"p_loan_id": loan.id})
    assert case is not None
    return case


_LOAN_AND_CASE = (
    select(Loan, Case)
    .outerjoin(Case, Case.loan_id == Loan.id)
    .where(Loan.loan_no == bindparam("p_loan_no"))
)


def loan_and_case(session: Session, loan_no: str, now: datetime) -> tuple[Loan, Case] | None:
    """A loan and its case row in one query (loan_by_no, then case_for_loan: the row made
    on first use); None when the loan is not in the database."""
    found = session.execute(_LOAN_AND_CASE, {"p_loan_no": loan_no}).first()
    if found is None:
        return None
    loan, case = found
    return loan, case if case is not None else case_for_loan(session, loan, now)


def case_loan_borrower(session: Session, loan_no: str) -> tuple[Case, Loan, Borrower] | None:
    """A loan's case row with its loan and borrower (the case page and the record read them)."""
    found = session.execute(
        select(Case, Loan, Borrower)
        .join(Loan, Loan.id == Case.loan_id)
        .join(Borrower, Borrower.id == Loan.borrower_id)
        .where(Loan.loan_no == loan_no)
    ).first()
    return None if found is None else (found[0], found[1], found[2])


def mark_told(session: Session, loan_no: str, figures: tuple[int, int, int, date]) -> None:
    """The figures (outstanding principal, interest, penalty in fen; overdue date) the loan's
    running case now knows: read at its investigation, or told by an export's debt update
    (feeds/debt_updates.py compares the next export with them)."""
    p, i, n, since = figures
    session.execute(
        update(Loan)
        .where(Loan.loan_no == loan_no)
        .values(
            told_principal_fen=p, told_interest_fen=i, told_penalty_fen=n, told_overdue_since=since
        )
    )


_CASES = Case.__table__.c
# Parameter names start with p_: a parameter named as a column would be SET too.
_SET_NEXT_ACTION = (
    update(Case.__table__)
    .where(
        _CASES.id == bindparam("p_case_id"),
        or_(_CASES.next_action_stamp.is_(None), _CASES.next_action_stamp < bindparam("p_stamp")),
    )
    .values(
        next_action=bindparam("p_action"),
        next_action_at=bindparam("p_at"),
        next_action_stamp=bindparam("p_new_stamp"),
    )
)
_SET_OUTSTANDING = (
    update(Case.__table__)
    .where(
        _CASES.id == bindparam("p_case_id"),
        or_(_CASES.outstanding_at.is_(None), _CASES.outstanding_at < bindparam("p_at")),
    )
    .values(outstanding_fen=bindparam("p_fen"), outstanding_at=bindparam("p_new_at"))
)


def set_next_action(
    session: Session, case: Case, action: str, at: datetime | None, stamp: datetime | None
) -> None:
    """The case row's next action as of the workflow time `stamp` (collection-v6), in the
    caller's transaction; only a newer `stamp` overwrites (as set_outstanding)."""
    if stamp is None:
        return
    params = dict(p_case_id=case.id, p_stamp=stamp, p_action=action[:120], p_at=at)
    session.execute(_SET_NEXT_ACTION, {**params, "p_new_stamp": stamp})


def set_outstanding(session: Session, case: Case, fen: int | None, at: datetime | None) -> None:
    """The case row's outstanding amount as of the workflow time `at` (collection-v5), in
    the caller's transaction; only a newer `at` overwrites, so a late or retried record
    cannot roll it back. One conditional UPDATE: on PostgreSQL a concurrent writer's row
    lock makes this one check the condition again against the committed row.

    A record with a time but no amount (a case started again: its "case opened" comes
    before the debt is read) writes NULL as of that time: the lists fall back to the
    search attribute instead of showing the previous generation's amount, and a late
    record of that generation (stamped before) is refused."""
    if at is None:
        return
    session.execute(_SET_OUTSTANDING, dict(p_case_id=case.id, p_at=at, p_fen=fen, p_new_at=at))
