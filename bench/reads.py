"""Section 2, reads: with N cases open, visibility list latency by stage (first page), the
counts per stage, and the dashboard page (HTML and JSON) served in process by the web app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client

from bench.harness import median, pct
from domain.names import workflow_id
from workflows.collection import LoanCollectionWorkflow as WF


async def timed(fn: Callable[[], Awaitable[Any]], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def add_projection(sessions) -> None:  # type: ignore[no-untyped-def]
    """The case rows the first stage change writes, for the dashboard's counts: the intake
    section's cases are started, but no worker runs them."""
    from sqlalchemy import insert, select

    from db.models import Case, Loan

    with sessions.begin() as session:
        now = datetime.now(UTC)
        loans = session.execute(select(Loan.id, Loan.loan_no, Loan.branch_code)).all()
        session.execute(
            insert(Case),
            [
                dict(
                    loan_id=lid,
                    workflow_id=workflow_id(no),
                    branch_code=br,
                    stage="INVESTIGATION",
                    stage_since=now,
                    opened_at=now,
                    primary_collector=f"{br}-C{1 + k % 10:02d}",
                )
                for k, (lid, no, br) in enumerate(loans)
            ],
        )


async def bench_reads(  # type: ignore[no-untyped-def]
    client: Client, sessions, n: int, stage: str = "INVESTIGATION", projection: bool = True
) -> dict[str, float]:
    """Visibility and the dashboard with N open cases (started; stage and branch set), the
    list and the dashboard filtered by `stage`; `projection`: write the case rows first
    (cases no worker has run), else the cases' own rows are read."""
    from service.portfolio import counts_per_stage, list_cases
    from service.users import Role, create_user
    from webapp.app import create_app
    from webapp.pages import WebConfig
    from webapp.twilio_webhooks import WebhookConfig

    if projection:
        add_projection(sessions)
    with sessions.begin() as session:
        create_user(
            session, "bench-sup", "bench-password", Role.SUPERVISOR, ["QX01", "QX02", "LS01"]
        )
    base = f"WorkflowType='{WF.__name__}'"
    for _ in range(100):  # visibility catches up with the starts
        if (await client.count_workflows(base)).count >= n:
            break
        await asyncio.sleep(0.2)

    async def temporal() -> Client:
        return client

    app = create_app(sessions, temporal, WebhookConfig("0" * 32), WebConfig())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as http:
        r = await http.post("/login", json={"username": "bench-sup", "password": "bench-password"})
        auth = {"authorization": f"Bearer {r.json()['token']}"}
        page_json = await timed(
            lambda: http.get(
                f"/dashboard?stage={stage}", headers={**auth, "accept": "application/json"}
            ),
            20,
        )
        page_html = await timed(lambda: http.get(f"/dashboard?stage={stage}", headers=auth), 20)
    listing = await timed(
        lambda: list_cases(client, f"{base} AND CollectionStage='{stage}'", limit=50), 30
    )
    counting = await timed(lambda: counts_per_stage(client, base), 10)
    return {
        "list_p50": median(listing),
        "list_p95": pct(listing, 0.95),
        "counts_p50": median(counting),
        "counts_p95": pct(counting, 0.95),
        "page_p50": median(page_html),
        "page_p95": pct(page_html, 0.95),
        "json_p50": median(page_json),
        "json_p95": pct(page_json, 0.95),
    }
