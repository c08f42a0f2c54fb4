"""Setting up: the demo (dev server, SQLite, worker, pages, a demo portfolio) and migrations."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from temporalio.client import Client

from cli.common import guarded
from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import add_branches_and_collectors, add_loan, demo_specs
from domain.policy import fast_policy
from domain.timerules import local_date
from service.case_start import start_case
from service.dev_server import start_dev_server
from service.settings import Settings
from service.temporal_client import connect
from service.users import Role


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="run the main job on the embedded defaults")
    demo.add_argument("--loans", type=int, default=12, help="demo loans to load (default 12)")
    demo.add_argument("--fast", action="store_true", help="policy days last one second")
    demo.set_defaults(run=guarded(cmd_demo))
    sub.add_parser("migrate", help="bring the database to the newest schema").set_defaults(
        run=cmd_migrate
    )


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The main job on the embedded defaults: dev server, SQLite, worker, a demo portfolio."""
    from worker import run_worker  # the worker module sits at the top of the project

    server = start_dev_server(settings.data_dir)
    print(
        "Temporal dev server:",
        "started" if server else "already running",
        f"- web UI at http://127.0.0.1:8233 (history in {settings.data_dir / 'temporal.db'})",
    )
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    configured = settings.policy()
    specs = demo_specs(args.loans, local_date(datetime.now(UTC), configured))
    with sessions.begin() as session:
        add_branches_and_collectors(session, timezone=configured.timezone)
        for spec in specs:
            add_loan(session, spec)
    engine.dispose()
    print(f"Database {settings.db_url}: migrated, {len(specs)} demo loans loaded")
    # The fast policy keeps the configured clock; its days last a second, no quiet hours.
    policy = fast_policy(timezone=configured.timezone) if args.fast else configured
    client = await connect(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    for spec in specs:
        await start_case(client, settings.task_queue, spec.loan_no, spec.branch, policy, "demo")
    print(
        f"{len(specs)} cases started (or attached to) on task queue {settings.task_queue}"
        + (" with the fast policy: a policy day lasts one second" if args.fast else "")
    )
    web_server = _demo_pages(settings, client, policy)
    web = asyncio.create_task(web_server.serve())
    print(
        f"Pages: http://127.0.0.1:{DEMO_WEB_PORT}/  sign in as supervisor `demo-sup` or "
        f"collector `demo-qx01-c01`, password `{DEMO_PASSWORD}` (demo users only)"
    )
    print("Try:  .venv/bin/python -m cli.main list --stage INITIAL_CONTACT")
    print(f"      .venv/bin/python -m cli.main status {specs[0].loan_no}")
    print("      .venv/bin/temporal workflow list --query \"CollectionStage='FIELD_VISIT'\"")
    print("SMS are recorded in the sms_outbox table, not sent (no SMS provider configured).")
    print("The worker runs until Ctrl-C.")
    try:
        await worker
    finally:
        web_server.should_exit = True
        await asyncio.wait_for(web, 10)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


DEMO_WEB_PORT = 8000
DEMO_PASSWORD = "demo-password"


def _add_demo_users(sessions) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from db.models import User
    from service.users import create_user

    with sessions.begin() as session:
        if session.scalar(select(User.id).where(User.username == "demo-sup")):
            return
        create_user(
            session,
            "demo-sup",
            DEMO_PASSWORD,
            Role.SUPERVISOR,
            ["QX01", "QX02", "LS01"],
            display_name="演示主任",
        )
        create_user(
            session,
            "demo-qx01-c01",
            DEMO_PASSWORD,
            Role.COLLECTOR,
            collector_id="QX01-C01",
            display_name="演示催收员",
        )
        create_user(session, "demo-office", DEMO_PASSWORD, Role.BACK_OFFICE)


def _demo_pages(settings: Settings, client: Client, policy):  # type: ignore[no-untyped-def]
    """The pages (and Twilio's webhooks, useless without Twilio) beside the demo's worker."""
    import os
    import secrets

    import uvicorn

    from webapp.app import create_app
    from webapp.pages import WebConfig
    from webapp.twilio_webhooks import WebhookConfig

    sessions = session_factory(make_engine(settings.db_url))
    _add_demo_users(sessions)

    async def temporal() -> Client:
        return client

    token = os.environ.get("TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
    app = create_app(
        sessions, temporal, WebhookConfig(token),
        WebConfig(settings.task_queue, policy),
    )  # fmt: skip
    config = uvicorn.Config(
        app, host="127.0.0.1", port=DEMO_WEB_PORT, log_level="warning", lifespan="off"
    )
    return uvicorn.Server(config)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.db_url)
    print(f"migrated {settings.db_url}")
    return 0
