"""Run the Alembic migrations from code (the CLI, the worker's start-up, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, text

from db.engine import default_url, make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser treats % as interpolation; URLs may contain escaped characters.
    cfg.set_main_option("sqlalchemy.url", (url or default_url()).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def migration_engine(url: str | None = None) -> Engine:
    """The engine migrations run on (db/migrations/env.py).

    SQLite: each transaction is a real one, DDL included (Python's sqlite3 commits before a
    CREATE, DROP or ALTER on its own: a batch_alter_table that failed half-way left a table
    dropped), and foreign keys are not enforced while it runs, as SQLite's own procedure for
    rebuilding a table asks (a batch copy drops `agreements` while installments refer to it);
    `check_foreign_keys` before the commit instead.
    """
    engine = make_engine(url)
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # after make_engine's PRAGMAs: no transaction open
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")  # only takes effect outside one

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")

    return engine


def check_foreign_keys(conn: Connection) -> None:
    """SQLite: refuse to commit a migration that left a row referring to nothing."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.execute(text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"the migration left rows referring to nothing: {broken[:10]}")
