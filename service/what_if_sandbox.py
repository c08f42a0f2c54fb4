"""Where a what-if runs (issue 16): never the environment's database or Temporal.

Synthetic loans in the real database would show in `report outcomes` and /reports, and
synthetic cases on the real Temporal would be cases like any other. So a what-if makes its
own directory (a temporary one, removed at the end), one SQLite database per arm in it
(migrated, the demo branches with their collectors sized to the portfolio: the same in
both arms, so neither arm takes the other's collectors) and an embedded Temporal dev server
of its own (a free port, history in memory) with a namespace per arm. Whatever
COLLECTION_DB_URL and TEMPORAL_ADDRESS say, nothing of a what-if reaches them.

The arms load the same loan numbers, each into its own database and namespace: a strategy
file's own champion/challenger split hashes the loan number, and the simulated people draw
by it, so borrower i is treated and acts alike in both arms.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import COLLECTOR_CAPACITY, LoanSpec, add_branches_and_collectors
from domain.policy import Policy
from service.codec import data_converter
from service.dev_server import start_private_dev_server, stop
from service.search_attribute_check import check_search_attributes


@dataclass
class ArmPlace:
    """One arm's database and Temporal namespace."""

    label: str
    namespace: str
    client: Client
    sessions: sessionmaker[Session]
    database: str  # the SQLite URL
    data_dir: Path  # agreements and the like


@dataclass
class Sandbox:
    run_id: str  # random, unique: the directory's name was created exclusively
    directory: Path
    arms: list[ArmPlace]


def collectors_per_branch(specs: Sequence[LoanSpec], policy: Policy) -> int:
    """Enough collectors in every branch for each of its cases to have the largest team a
    visit may need (a hostile borrower's), and at least one such team."""
    team = max(policy.visit_team_size, policy.hostile_visit_team_size)
    most = max(Counter(s.branch for s in specs).values(), default=0)
    return max(team, math.ceil(team * most / COLLECTOR_CAPACITY))


@contextlib.asynccontextmanager
async def sandbox(
    labels: Sequence[str],
    specs: Sequence[LoanSpec],
    policy: Policy,
    keep_in: Path | None = None,
) -> AsyncIterator[Sandbox]:
    """The run's databases and dev server, stopped and removed on the way out (whatever
    happened); `keep_in`: a directory to make the run's directory in and keep it (tests)."""
    directory = Path(tempfile.mkdtemp(prefix="what-if-", dir=keep_in))
    engines: list[Engine] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        per_branch = collectors_per_branch(specs, policy)
        made = []
        for label in labels:
            (directory / label).mkdir()
            url = f"sqlite:///{directory / label / 'collection.db'}"
            upgrade(url)
            engines.append(make_engine(url))
            sessions = session_factory(engines[-1])
            with sessions.begin() as session:
                add_branches_and_collectors(session, per_branch, timezone=policy.timezone)
            made.append((label, url, sessions))
        namespaces = [f"what-if-{label.lower()}" for label in labels]
        server, address = start_private_dev_server(directory, namespaces)
        arms = []
        for (label, url, sessions), namespace in zip(made, namespaces, strict=True):
            client = await Client.connect(
                address, namespace=namespace, data_converter=data_converter(None)
            )
            await check_search_attributes(client)
            arms.append(ArmPlace(label, namespace, client, sessions, url, directory / label))
        yield Sandbox(directory.name.removeprefix("what-if-"), directory, arms)
    finally:
        for engine in engines:
            engine.dispose()
        if server is not None:
            stop(server)
        if keep_in is None:
            shutil.rmtree(directory, ignore_errors=True)
