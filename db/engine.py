"""Engines and sessions from a SQLAlchemy URL; SQLite under the data folder by default."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DATA_DIR_ENV = "COLLECTION_DATA_DIR"
DB_URL_ENV = "COLLECTION_DB_URL"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data")).resolve()


def default_url() -> str:
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir() / 'collection.db'}"


def make_engine(url: str | None = None, **kwargs: object) -> Engine:
    url = url or default_url()
    # A database error's text never carries the statement's values (names, ID numbers,
    # phones): it reaches logs, activity failures and the daily run's report.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the worker
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that refuse to delete evidence before its retention period (db/retention.py)."""
    from db.retention import guard  # db.models is loaded only by what opens sessions

    return guard(sessionmaker(engine, expire_on_commit=False))
