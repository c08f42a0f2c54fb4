"""Issue 14, item 7: nothing is deleted before the record retention period (2 years).

Each evidence table gets a row made now and one made just over the period ago (its record
time moved back with an UPDATE). Raw SQL, past the application's sessions, meets the
database's triggers (migration 0007); a session meets db/retention.py first. Each test on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from activities.cases import CaseActivities
from db.engine import make_engine
from db.models import (
    Agreement,
    AgreementInstallment,
    AuditEvent,
    Consent,
    ContactAttempt,
    Payment,
    SignedScan,
    StageChange,
    Visit,
)
from db.repository import case_for_loan, loan_by_no
from db.retention import EVIDENCE, RETENTION_DAYS, RetentionError
from domain.models import PaymentPosted, PaymentRecord, VisitRecord, VisitReport
from domain.policy import Policy
from domain.stages import Stage
from tests.test_activities import new_loan, transition

MODELS = {
    m.__tablename__: m
    for m in (
        ContactAttempt,
        Visit,
        StageChange,
        Agreement,
        SignedScan,
        Payment,
        AuditEvent,
        Consent,
    )
}
OLD = timedelta(days=RETENTION_DAYS + 1)
ALMOST = timedelta(days=RETENTION_DAYS - 1)


def test_assumptions() -> None:
    assert RETENTION_DAYS == Policy().record_retention_days == 730
    assert set(MODELS) == set(EVIDENCE)


def one_case_of_evidence(sessions: sessionmaker[Session]) -> None:
    """A row in every evidence table, made now."""
    now = datetime.now(UTC)
    acts = CaseActivities(sessions)
    loan_no = new_loan(sessions)
    acts.record_transition(transition(loan_no, 1, Stage.INITIAL_CONTACT, at=now))
    acts.record_visit(
        VisitRecord(loan_no, 1, VisitReport("MET", ["QX01-C01"], now, ""), Stage.FIELD_VISIT)
    )
    acts.record_payment(PaymentRecord(loan_no, PaymentPosted("R-1", 100, now), True, 100, 0))
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        case = case_for_loan(session, loan, now)
        agreement = Agreement(
            case_id=case.id, version=1, plan_number=1, plan_hash="p" * 64, sha256="s" * 64,
            pdf_path="a.pdf", size_bytes=1, html_path="a.html", html_sha256="h" * 64,
            total_fen=100, created_at=now,
            installments=[AgreementInstallment(seq=1, due_at=now, amount_fen=100)],
        )  # fmt: skip
        session.add(agreement)
        session.flush()
        session.add(
            SignedScan(
                agreement_id=agreement.id, sha256="x" * 64, path="scan.jpg", size_bytes=1,
                content_type="image/jpeg", uploaded_by="QX01-C01", uploaded_at=now,
            )
        )  # fmt: skip
        session.add(
            AuditEvent(
                at=now, username="sup", role="SUPERVISOR", action="hold", loan_no=loan_no,
                outcome="ACCEPTED", detail="",
            )
        )  # fmt: skip
        session.add(
            Consent(
                key=f"{loan_no}:consent:1", borrower_id=loan.borrower_id, case_id=case.id,
                kind="NIGHT_CONTACT", given=True, how="VISIT", at=now, by="QX01-C01",
            )
        )  # fmt: skip


def age(engine: Engine, table: str, by: timedelta) -> None:
    """Every row of `table` made `by` earlier than recorded (an UPDATE is not refused)."""
    model = MODELS[table]
    column = getattr(model, EVIDENCE[table])
    with engine.begin() as conn:
        for row_id, made in conn.execute(select(model.id, column)).all():
            conn.execute(update(model).where(model.id == row_id).values({column: made - by}))


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(MODELS[table])) or 0


@pytest.mark.parametrize("table", sorted(EVIDENCE))
def test_raw_sql_cannot_delete_evidence_younger_than_the_retention_period(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    one_case_of_evidence(sessions)
    engine = make_engine(db_url)
    try:
        with pytest.raises(DBAPIError, match="record retention"):
            with engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {table}"))
        age(engine, table, ALMOST)  # a day short of two years: still kept
        with pytest.raises(DBAPIError, match="record retention"):
            with engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {table}"))
        assert count(engine, table) == 1
        age(engine, table, OLD - ALMOST)  # now past the period
        if table == "agreements":  # what refers to it goes first: installments, scans
            age(engine, "signed_scans", OLD)
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM agreement_installments"))
                conn.execute(text("DELETE FROM signed_scans"))
        with engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
        assert count(engine, table) == 0
    finally:
        engine.dispose()


def test_an_agreements_installments_are_kept_as_long_as_the_agreement(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    one_case_of_evidence(sessions)
    engine = make_engine(db_url)
    try:
        with pytest.raises(DBAPIError, match="record retention"):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM agreement_installments"))
        age(engine, "agreements", OLD)
        with engine.begin() as conn:
            assert conn.execute(text("DELETE FROM agreement_installments")).rowcount == 1
    finally:
        engine.dispose()


def test_the_applications_sessions_refuse_before_the_database_does(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    one_case_of_evidence(sessions)
    with sessions.begin() as session:
        fresh = session.scalar(select(ContactAttempt))
        session.add(
            ContactAttempt(
                key="old", case_id=fresh.case_id, channel="SMS", outcome="SENT",
                at=datetime.now(UTC) - OLD,
            )
        )  # fmt: skip
    with pytest.raises(RetentionError, match=r"contact_attempts row \d+ .* kept 730 days"):
        with sessions.begin() as session:
            session.delete(
                session.scalar(select(ContactAttempt).where(ContactAttempt.key != "old"))
            )
    with pytest.raises(RetentionError, match="would remove 1 contact_attempts rows"):
        with sessions.begin() as session:
            session.execute(delete(ContactAttempt))
    with sessions.begin() as session:  # the old row alone may go
        session.delete(session.scalar(select(ContactAttempt).where(ContactAttempt.key == "old")))
    with sessions.begin() as session:
        assert session.scalars(select(ContactAttempt.key)).all() != []
        session.execute(delete(ContactAttempt).where(ContactAttempt.key == "old"))  # none left


def test_every_evidence_table_has_its_trigger_at_head(db_url: str) -> None:
    """A later migration that rebuilds a table (SQLite batch mode) must create it again."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                names = conn.scalars(
                    text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
                ).all()
            else:
                names = conn.scalars(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).all()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    for table in [*EVIDENCE, "agreement_installments"]:
        assert table in tables
        assert f"{table}_retained" in names, table
        if engine.dialect.name == "postgresql":
            assert f"{table}_not_truncated" in names, table


def test_postgresql_refuses_to_truncate_evidence(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's")
    engine = make_engine(db_url)
    try:
        with pytest.raises(DBAPIError, match="never truncated"):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE contact_attempts"))
    finally:
        engine.dispose()
