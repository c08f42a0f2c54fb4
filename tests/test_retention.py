"""Issue 14, item 7: nothing is deleted before the record retention period (2 years), and no
evidence is changed, its record time least of all.

Evidence of every table is made now, a day short of the period ago and just over it ago:
inserted with those record times, since an UPDATE of a record time is refused. Raw SQL, past
the application's sessions, meets the database's triggers (migrations 0007 and 0008, defined
in db/retention.py); a session meets db/retention.py first. Each test on SQLite and on
PostgreSQL. A migration that alters an evidence table keeps its rows and its triggers when it
does so inside `retention_lifted` (db/migrations/README.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, delete, inspect, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from db.engine import make_engine
from db.migrate import MIGRATIONS, check_foreign_keys, migration_engine
from db.models import (
    Agreement,
    AgreementInstallment,
    AuditEvent,
    Consent,
    ContactAttempt,
    InboundMessage,
    Payment,
    SignedScan,
    SmsOutbox,
    StageChange,
    Visit,
)
from db.repository import case_for_loan, loan_by_no
from db.retention import (
    CHANGEABLE,
    DATABASE_RETENTION_DAYS,
    EVIDENCE,
    INSTALLMENTS,
    RETAINED,
    RETENTION_DAYS,
    RetentionError,
    check_retention_triggers,
    missing_retention_triggers,
    retention_lifted,
)
from domain.policy import Policy
from tests.test_activities import new_loan
from webapp.app import create_app
from webapp.twilio_webhooks import WebhookConfig

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
        SmsOutbox,
        InboundMessage,
    )
}
OLD = timedelta(days=RETENTION_DAYS + 1)
ALMOST = timedelta(days=RETENTION_DAYS - 1)


def test_assumptions() -> None:
    assert RETENTION_DAYS == DATABASE_RETENTION_DAYS == Policy().record_retention_days == 730
    assert set(MODELS) == set(EVIDENCE)
    assert (EVIDENCE["sms_outbox"], EVIDENCE["inbound_messages"]) == ("created_at", "received_at")
    for table, rule in CHANGEABLE.items():  # every column named is one of the table's
        names = set(MODELS[table].__table__.c.keys())
        assert {*rule.always, *rule.until, rule.guard} <= names, table
        assert EVIDENCE[table] not in (*rule.always, *rule.until), table


def evidence_made(sessions: sessionmaker[Session], made: datetime) -> str:
    """A loan with one row in every evidence table (and an installment), all made at `made`."""
    loan_no = new_loan(sessions)
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        case = case_for_loan(session, loan, made)
        agreement = Agreement(
            case_id=case.id, version=1, plan_number=1, plan_hash="p" * 64, sha256="s" * 64,
            pdf_path="a.pdf", size_bytes=1, html_path="a.html", html_sha256="h" * 64,
            total_fen=100, created_at=made,
            installments=[AgreementInstallment(seq=1, due_at=made, amount_fen=100)],
        )  # fmt: skip
        session.add(agreement)
        session.flush()
        session.add_all(
            [
                ContactAttempt(
                    key=f"{loan_no}:sms:1", case_id=case.id, channel="SMS", outcome="SENT",
                    at=made,
                ),
                Visit(
                    case_id=case.id, visit_no=1, visited_at=made, outcome="MET",
                    collector_ids="QX01-C01", reported_by="QX01-C01", stage="FIELD_VISIT",
                ),
                StageChange(
                    case_id=case.id, seq=1, to_stage="INITIAL_CONTACT", at=made, actor="system",
                    reason="test",
                ),
                SignedScan(
                    agreement_id=agreement.id, sha256="x" * 64, path="scan.jpg", size_bytes=1,
                    content_type="image/jpeg", uploaded_by="QX01-C01", uploaded_at=made,
                ),
                Payment(
                    reference=f"{loan_no}:R-1", loan_id=loan.id, amount_fen=100, paid_at=made,
                    source="test", recorded_at=made,
                ),
                AuditEvent(
                    at=made, username="sup", role="SUPERVISOR", action="hold", loan_no=loan_no,
                    outcome="ACCEPTED", detail="",
                ),
                Consent(
                    key=f"{loan_no}:consent:1", borrower_id=loan.borrower_id, case_id=case.id,
                    kind="NIGHT_CONTACT", given=True, how="VISIT", at=made, by="QX01-C01",
                ),
                SmsOutbox(
                    key=f"{loan_no}:sms:1", case_id=case.id, borrower_id=loan.borrower_id,
                    purpose="first_notice", to_number="+8613912345678", body="尾号提醒",
                    segments=1, status="SENT", provider_sid=f"SM{loan_no}", created_at=made,
                    sent_at=made,
                ),
                InboundMessage(
                    message_sid=f"IN{loan_no}", from_number="+8613912345678", body="好",
                    intent="ACKNOWLEDGED", borrower_id=loan.borrower_id, case_id=case.id,
                    received_at=made, processed_at=made,
                ),
            ]
        )  # fmt: skip
    return loan_no


def young_almost_old(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    for age in (timedelta(0), ALMOST, OLD):
        evidence_made(sessions, now - age)


def ids_by_age(conn: Connection, table: str) -> list[int]:
    """The rows' ids, the oldest first."""
    order = EVIDENCE.get(table, "id")
    return list(conn.scalars(text(f"SELECT id FROM {table} ORDER BY {order}")).all())


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0


@contextlib.contextmanager
def engine_for(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def refused(engine: Engine, sql: str, **params: object) -> str:
    """The database's refusal of `sql`, run in a transaction of its own."""
    with pytest.raises(DBAPIError, match="record retention") as e:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    return str(e.value.orig)


# ---------------------------------------------------------------- deletes


@pytest.mark.parametrize("table", sorted(EVIDENCE))
def test_raw_sql_cannot_delete_evidence_younger_than_the_retention_period(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    young_almost_old(sessions)
    with engine_for(db_url) as engine:
        with engine.connect() as conn:
            old, almost, young = ids_by_age(conn, table)
        refused(engine, f"DELETE FROM {table}")
        refused(engine, f"DELETE FROM {table} WHERE id = :id", id=young)
        refused(engine, f"DELETE FROM {table} WHERE id = :id", id=almost)  # a day short
        assert count(engine, table) == 3
        with engine.begin() as conn:
            if table == "agreements":  # what refers to it goes first: installments, scans
                for child in (INSTALLMENTS, "signed_scans"):
                    gone = conn.execute(
                        text(f"DELETE FROM {child} WHERE agreement_id = :a"), {"a": old}
                    )
                    assert gone.rowcount == 1
            assert (
                conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": old}).rowcount == 1
            )
        with engine.connect() as conn:
            assert ids_by_age(conn, table) == [almost, young]


def test_an_agreements_installments_are_kept_as_long_as_the_agreement(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    young_almost_old(sessions)
    with engine_for(db_url) as engine:
        with engine.connect() as conn:
            old, almost, young = ids_by_age(conn, "agreements")
        refused(engine, f"DELETE FROM {INSTALLMENTS}")
        refused(engine, f"DELETE FROM {INSTALLMENTS} WHERE agreement_id = :a", a=almost)
        with engine.begin() as conn:
            gone = conn.execute(
                text(f"DELETE FROM {INSTALLMENTS} WHERE agreement_id = :a"), {"a": old}
            )
            assert gone.rowcount == 1
        with engine.connect() as conn:
            left = sorted(conn.scalars(text(f"SELECT agreement_id FROM {INSTALLMENTS}")).all())
        assert left == sorted([almost, young])


# ---------------------------------------------------------------- updates


@pytest.mark.parametrize("table", sorted(RETAINED))
def test_no_record_time_moves_back_so_no_young_row_can_be_deleted_as_old(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    """The way round the delete triggers: age the row with an UPDATE, then delete it."""
    evidence_made(sessions, datetime.now(UTC))
    column = EVIDENCE.get(table, "due_at")
    with engine_for(db_url) as engine:
        with engine.connect() as conn:
            [(row_id, made)] = conn.execute(
                sa.select(sa.table(table, sa.column("id"), sa.column(column)))
            ).all()
        message = refused(
            engine,
            f"UPDATE {table} SET {column} = :old WHERE id = :id",
            old=datetime.now(UTC) - timedelta(days=3650),
            id=row_id,
        )
        assert table in message
        if engine.dialect.name == "postgresql":
            assert f"{column} cannot change" in message
        refused(engine, f"DELETE FROM {table}")
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT id, {column} FROM {table}")).all() == [(row_id, made)]


FIXED = {  # a column of each table the application never changes, and a new value for it
    "contact_attempts": ("outcome", "DELIVERED"),
    "visits": ("notes", "改过的记录"),
    "stage_history": ("reason", "edited"),
    "agreements": ("total_fen", 1),
    "signed_scans": ("sha256", "y" * 64),
    "payments": ("amount_fen", 1),
    "audit_events": ("outcome", "REFUSED"),
    "consents": ("given", False),
    "sms_outbox": ("to_number", "+8613800000000"),
    "inbound_messages": ("body", "我没说过"),
    INSTALLMENTS: ("amount_fen", 1),
}


@pytest.mark.parametrize("table", sorted(RETAINED))
def test_raw_sql_cannot_change_evidence(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    assert set(FIXED) == set(RETAINED)
    evidence_made(sessions, datetime.now(UTC))
    column, value = FIXED[table]
    with engine_for(db_url) as engine:
        refused(engine, f"UPDATE {table} SET {column} = :v", v=value)
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT {column} FROM {table}")) != value


def test_what_the_application_records_later_is_recorded_once(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    evidence_made(sessions, datetime.now(UTC))
    now = datetime.now(UTC)
    with engine_for(db_url) as engine:
        with engine.begin() as conn:  # an agreement's signature, the first time
            conn.execute(
                text(
                    "UPDATE agreements SET signed_at = :t, signed_by = 'QX01-C01', "
                    "signed_place = '村委会'"
                ),
                {"t": now},
            )
        refused(engine, "UPDATE agreements SET signed_by = 'QX01-C02'")  # not a second time
        with engine.begin() as conn:  # delivery receipts and attempts on a sent text
            conn.execute(
                text(
                    "UPDATE sms_outbox SET delivery_status = 'delivered', status = 'SENT', "
                    "reason = 'x', attempted_at = :t"
                ),
                {"t": now},
            )
        refused(engine, "UPDATE sms_outbox SET body = '另一条短信'")  # the text as sent
        refused(engine, "UPDATE sms_outbox SET sent_at = NULL")
        refused(engine, "UPDATE inbound_messages SET processed_at = :t", t=now + OLD)  # once
        with engine.connect() as conn:
            assert conn.execute(text("SELECT signed_by, signed_place FROM agreements")).all() == [
                ("QX01-C01", "村委会")
            ]
            assert conn.execute(text("SELECT delivery_status, body FROM sms_outbox")).all() == [
                ("delivered", "尾号提醒")
            ]


def test_an_unsent_text_and_an_unprocessed_message_take_their_first_record(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    now = datetime.now(UTC)
    loan_no = evidence_made(sessions, now)
    with sessions.begin() as session:
        outbox = session.scalar(select(SmsOutbox))
        inbound = session.scalar(select(InboundMessage))
        assert outbox is not None and inbound is not None
        session.add(
            SmsOutbox(
                key=f"{loan_no}:sms:2", case_id=outbox.case_id, borrower_id=outbox.borrower_id,
                purpose="first_notice", to_number="+8613912345678", body="草稿", segments=1,
                status="PENDING", created_at=now,
            )
        )  # fmt: skip
        session.add(
            InboundMessage(
                message_sid=f"IN{loan_no}:2", from_number="+8613912345678", body="1",
                intent="ACKNOWLEDGED", borrower_id=inbound.borrower_id, case_id=inbound.case_id,
                received_at=now,
            )
        )  # fmt: skip
    with sessions.begin() as session:  # as activities/sms.py and the webhook do
        row = session.scalar(select(SmsOutbox).where(SmsOutbox.status == "PENDING"))
        assert row is not None
        row.body, row.segments = "定稿", 1
        row.status, row.provider_sid, row.sent_at = "SENT", "SM-2", now
        message = session.scalar(
            select(InboundMessage).where(InboundMessage.processed_at.is_(None))
        )
        assert message is not None
        message.processed_at = now
    with engine_for(db_url) as engine:
        refused(engine, "UPDATE sms_outbox SET body = '改' WHERE provider_sid = 'SM-2'")
        refused(engine, "UPDATE inbound_messages SET processed_at = NULL")
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT body, status FROM sms_outbox WHERE provider_sid = 'SM-2'")
            ).all() == [("定稿", "SENT")]
            assert (
                conn.scalar(
                    text("SELECT count(*) FROM inbound_messages WHERE processed_at IS NULL")
                )
                == 0
            )


def test_the_applications_sessions_refuse_before_the_database_does(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    evidence_made(sessions, datetime.now(UTC))
    with sessions.begin() as session:
        fresh = session.scalar(select(ContactAttempt))
        assert fresh is not None
        fresh_key = fresh.key
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
    with pytest.raises(RetentionError, match=r"contact_attempts row \d+ is evidence: at cannot"):
        with sessions.begin() as session:
            row = session.scalar(select(ContactAttempt).where(ContactAttempt.key != "old"))
            assert row is not None
            row.at -= OLD
    with pytest.raises(RetentionError, match=r"agreements row \d+ is evidence: total_fen cannot"):
        with sessions.begin() as session:
            agreement = session.scalar(select(Agreement))
            assert agreement is not None
            agreement.total_fen, agreement.signed_by = 1, "QX01-C01"  # the signature is free
    with sessions.begin() as session:  # the old row alone may go
        session.delete(session.scalar(select(ContactAttempt).where(ContactAttempt.key == "old")))
    with sessions.begin() as session:
        assert session.scalars(select(ContactAttempt.key)).all() == [fresh_key]
        assert (
            session.execute(delete(ContactAttempt).where(ContactAttempt.key == "old")).rowcount == 0
        )
        made = session.scalar(select(ContactAttempt.at))
    with sessions() as session:
        assert session.scalar(select(Agreement.total_fen)) == 100
        assert session.scalar(select(ContactAttempt.at)) == made


# ---------------------------------------------------------------- the triggers at head


def trigger_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        return set(conn.scalars(text(query)).all())


def test_every_evidence_table_has_its_triggers_at_head(db_url: str) -> None:
    with engine_for(db_url) as engine:
        names = trigger_names(engine)
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert missing_retention_triggers(conn) == []
    assert {"sms_outbox", "inbound_messages", INSTALLMENTS} <= set(RETAINED)
    for table in RETAINED:
        assert table in tables
        assert f"{table}_retained" in names, table
        assert f"{table}_unchanged" in names, table
        if engine.dialect.name == "postgresql":
            assert f"{table}_not_truncated" in names, table


def test_postgresql_refuses_to_truncate_evidence(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's")
    with engine_for(db_url) as engine:
        for table in ("contact_attempts", "sms_outbox", "inbound_messages"):
            with pytest.raises(DBAPIError, match="never truncated"):
                with engine.begin() as conn:
                    conn.execute(text(f"TRUNCATE {table}"))


# ---------------------------------------------------------------- later migrations


def snapshot(engine: Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()]


def sqlite_triggers(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        return dict(rows.all())  # type: ignore[arg-type]


def migrate_by_hand(url: str, step: object) -> None:
    """`step(op)` as a migration's upgrade() runs: on db/migrate.py's engine, in one
    transaction, with env.py's checks before the commit."""
    engine = migration_engine(url)
    try:
        with engine.begin() as conn:
            op = Operations(MigrationContext.configure(conn))
            step(op)  # type: ignore[operator]
            check_foreign_keys(conn)
            check_retention_triggers(conn)
    finally:
        engine.dispose()


def add_column_in_batch(table: str, lifted: bool):  # type: ignore[no-untyped-def]
    def step(op: Operations) -> None:
        with retention_lifted(op) if lifted else contextlib.nullcontext():
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.add_column(sa.Column("extra", sa.String(10)))

    return step


@pytest.mark.parametrize("table", ["agreements", "contact_attempts"])
def test_a_sqlite_batch_migration_inside_retention_lifted_keeps_rows_and_triggers(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("batch mode copies tables on SQLite")
    young_almost_old(sessions)
    with engine_for(db_url) as engine:
        rows = {t: snapshot(engine, t) for t in RETAINED}
        triggers = sqlite_triggers(engine)
        migrate_by_hand(db_url, add_column_in_batch(table, lifted=True))
        assert "extra" in [c["name"] for c in inspect(engine).get_columns(table)]
        for t in RETAINED:
            after = snapshot(engine, t)
            assert after == ([(*r, None) for r in rows[t]] if t == table else rows[t]), t
        after = sqlite_triggers(engine)
        assert set(after) == set(triggers)
        unchanged = f"{table}_unchanged"
        assert {n: s for n, s in after.items() if n != unchanged} == {
            n: s for n, s in triggers.items() if n != unchanged
        }
        assert '"extra"' in after[unchanged]  # the new column is evidence too
        # and they hold
        refused(engine, f"DELETE FROM {table}")
        refused(engine, f"UPDATE {table} SET extra = 'x'")
        refused(engine, f"UPDATE {table} SET {EVIDENCE[table]} = '2000-01-01 00:00:00.000000'")
        with engine.connect() as conn:
            old = ids_by_age(conn, "agreements")[0]
        refused(engine, f"DELETE FROM {INSTALLMENTS} WHERE agreement_id <> :a", a=old)


@pytest.mark.parametrize("table", ["agreements", "contact_attempts"])
def test_a_sqlite_batch_migration_without_it_fails_and_changes_nothing(
    sessions: sessionmaker[Session], db_url: str, table: str
) -> None:
    """agreements: its copy cannot be renamed while agreement_installments_retained names it;
    contact_attempts: its copy would lose its triggers, which env.py's check refuses. Either
    way the whole migration rolls back (SQLite's DDL is transactional in db/migrate.py)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("batch mode copies tables on SQLite")
    young_almost_old(sessions)
    with engine_for(db_url) as engine:
        rows = {t: snapshot(engine, t) for t in RETAINED}
        triggers = sqlite_triggers(engine)
        error = OperationalError if table == "agreements" else RuntimeError
        match = "agreement_installments_retained" if table == "agreements" else "retention_lifted"
        with pytest.raises(error, match=match):
            migrate_by_hand(db_url, add_column_in_batch(table, lifted=False))
        assert "extra" not in [c["name"] for c in inspect(engine).get_columns(table)]
        assert {t: snapshot(engine, t) for t in RETAINED} == rows
        assert sqlite_triggers(engine) == triggers


def test_retention_lifted_lets_a_migration_backfill_evidence(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    """A data migration (here: on PostgreSQL and SQLite) updates evidence inside it only."""
    evidence_made(sessions, datetime.now(UTC))

    def backfill(op: Operations) -> None:
        with retention_lifted(op):
            op.execute("UPDATE contact_attempts SET ruleset = 'cba-2026'")

    migrate_by_hand(db_url, backfill)
    with engine_for(db_url) as engine:
        with engine.connect() as conn:
            assert conn.scalars(text("SELECT ruleset FROM contact_attempts")).all() == ["cba-2026"]
            assert missing_retention_triggers(conn) == []
        refused(engine, "UPDATE contact_attempts SET ruleset = ''")


LATER = re.compile(r"^(?!000[1-8]_)\w+\.py$")


def test_later_migrations_alter_evidence_tables_inside_retention_lifted() -> None:
    tables = "|".join(RETAINED)
    touches = re.compile(
        rf"batch_alter_table\(\s*['\"]({tables})['\"]|\b(UPDATE|DELETE\s+FROM|ALTER\s+TABLE)"
        rf"\s+({tables})\b",
        re.IGNORECASE,
    )
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        if not LATER.match(path.name):
            continue
        source = path.read_text(encoding="utf-8")
        if touches.search(source):
            assert "retention_lifted" in source or (
                "drop_retention_triggers" in source and "create_retention_triggers" in source
            ), f"{path.name} alters an evidence table outside retention_lifted"
    assert "retention_lifted" in (MIGRATIONS / "README.md").read_text(encoding="utf-8")
    assert "retention_lifted" in (MIGRATIONS / "script.py.mako").read_text(encoding="utf-8")


# ---------------------------------------------------------------- inbound messages kept


TOKEN = "0" * 32


class FlakyCases:
    """A Temporal client whose first signal fails (the case was not told)."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str, object]] = []
        self.failures = 1

    def get_workflow_handle(self, workflow_id: str) -> FlakyCases._Handle:
        return FlakyCases._Handle(self, workflow_id)

    class _Handle:
        def __init__(self, client: FlakyCases, workflow_id: str) -> None:
            self.client, self.workflow_id = client, workflow_id

        async def signal(self, name: str, arg: object) -> None:
            if self.client.failures:
                self.client.failures -= 1
                raise RuntimeError("Temporal unavailable")
            self.client.signals.append((self.workflow_id, name, arg))


async def test_an_inbound_message_whose_signal_failed_is_kept_and_told_on_twilios_retry(
    sessions: sessionmaker[Session],
) -> None:
    phone = "+8613700000001"
    loan_no = new_loan(sessions, phone=phone)
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        case_for_loan(session, loan, datetime.now(UTC))
    cases = FlakyCases()

    async def temporal():  # type: ignore[no-untyped-def]
        return cases

    app = create_app(sessions, temporal, WebhookConfig(TOKEN))
    params = {"MessageSid": "SM" + "7" * 32, "From": phone, "To": "+15005550006", "Body": "已还"}
    signature = RequestValidator(TOKEN).compute_signature("http://t/twilio/sms", params)
    headers = {"X-Twilio-Signature": signature}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        first = await http.post("/twilio/sms", data=params, headers=headers)
        assert first.status_code == 503 and cases.signals == []
        with sessions() as session:
            [stored] = session.scalars(select(InboundMessage)).all()  # kept, not processed
            assert stored.processed_at is None and stored.body == "已还"
        retry = await http.post("/twilio/sms", data=params, headers=headers)
        assert retry.status_code == 200
        [(_, name, reply)] = cases.signals
        assert name == "borrower_reply" and reply.message_sid == params["MessageSid"]  # type: ignore[attr-defined]
        assert reply.received_at == stored.received_at  # type: ignore[attr-defined]
        again = await http.post("/twilio/sms", data=params, headers=headers)
        assert again.status_code == 200 and len(cases.signals) == 1  # processed once
    with sessions() as session:
        [row] = session.scalars(select(InboundMessage)).all()
        assert row.id == stored.id and row.processed_at is not None
