"""Alembic environment: migrates the database named by the URL the caller set.

Writing a migration: read db/migrations/README.md first. The evidence tables carry record
retention triggers; a migration that alters one of them (SQLite's batch mode copies the
table) or updates its rows does it inside `with retention_lifted(op):` (db/retention.py).
"""

from alembic import context

from db.engine import default_url
from db.migrate import check_foreign_keys, migration_engine
from db.models import Base
from db.retention import check_retention_triggers

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or default_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = migration_engine(config.get_main_option("sqlalchemy.url") or default_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite can only alter tables by copying them. transactional_ddl: on
    # SQLite too, all migrations of a run commit together or not at all (db/migrate.py).
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        check_foreign_keys(connection)
        check_retention_triggers(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
