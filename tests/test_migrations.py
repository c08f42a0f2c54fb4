"""The Alembic migrations on SQLite and PostgreSQL: up, down, up again, and the models agree."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from db.engine import make_engine
from db.migrate import downgrade, upgrade
from db.models import Base


def test_migrations_match_the_models_and_downgrade_cleanly(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        tables = set(inspect(engine).get_table_names())
        assert {"cases", "stage_history", "sms_outbox", "agreements", "payments"} <= tables
        assert "sign_in_failures" in tables
        downgrade(db_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(db_url)
        assert "cases" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
