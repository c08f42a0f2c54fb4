"""Setting up: the demo (dev server, SQLite, worker, pages, a demo portfolio) and migrations."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
from dataclasses import replace
from datetime import UTC, datetime

from temporalio.client import Client

from cli.common import guarded
from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import add_branches_and_collectors, add_loan, demo_specs
from domain.policy import Policy, fast_policy
from domain.strategy import StrategyError, load_strategy
from domain.timerules import local_date
from service.case_start import start_case
from service.dev_server import start_dev_server
from service.settings import Settings
from service.simulation import Simulator
from service.temporal_client import connect
from service.users import Role


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="run the main job on the embedded defaults")
    demo.add_argument("--loans", type=int, default=12, help="demo loans to load (default 12)")
    demo.add_argument("--fast", action="store_true", help="policy days last one second")
    demo.add_argument(
        "--simulate", action="store_true", help="simulated borrowers and collectors act"
    )
    demo.set_defaults(run=guarded(cmd_demo))
    sim = sub.add_parser(
        "simulate", help="a simulated portfolio on the dev server, fast policy, then a report"
    )
    sim.add_argument("--loans", type=int, default=40, help="simulated loans (default 40)")
    sim.add_argument("--minutes", type=float, default=3.0, help="how long to run (default 3)")
    sim.add_argument("--seed", type=int, default=16, help="the same seed, the same choices")
    sim.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.toml", "B.toml"),
        help="what-if: the same simulated borrowers under two strategy files, side by side",
    )
    sim.add_argument(
        "--format",
        choices=["text", "csv", "json"],
        default="text",
        help="the --compare report's format (default text)",
    )
    sim.set_defaults(
        run=guarded(cmd_simulate, interrupted=lambda args: INTERRUPTED if args.compare else 0),
        fast=True,
        simulate=True,
    )
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
    if getattr(args, "minutes", None):  # `simulate`: loans of its own, a new portfolio each run
        stamp = datetime.now(UTC).strftime("%m%d%H%M%S")
        specs = [replace(s, loan_no=f"SIM{stamp}{n:04d}") for n, s in enumerate(specs)]
    # The demo (not a simulation) has a collector per branch whose training expires soon: the
    # dashboard's list and the supervisors' daily reminder show it.
    expiring = None if getattr(args, "minutes", None) else configured.training_warning_days
    with sessions.begin() as session:
        add_branches_and_collectors(
            session, timezone=configured.timezone,
            expiring_in_days=None if expiring is None else min(7, expiring),
        )  # fmt: skip
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
    simulation = None
    if getattr(args, "simulate", False):
        sim = Simulator(client, [s.loan_no for s in specs], policy, seed=getattr(args, "seed", 16))
        minutes = getattr(args, "minutes", None)
        simulation = asyncio.create_task(_simulate(sim, settings, policy, minutes, stop))
        print("Simulated borrowers and collectors are acting on the cases.")
    timed = simulation is not None and getattr(args, "minutes", None)
    print(
        f"The simulation runs {args.minutes} minutes, then prints its report."
        if timed
        else "The worker runs until Ctrl-C."
    )
    try:
        await worker
        if simulation is not None and not timed:
            simulation.cancel()  # Ctrl-C: the worker stopped, the simulation with it
        if simulation is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await simulation
    finally:
        web_server.should_exit = True
        await asyncio.wait_for(web, 10)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


DEMO_WEB_PORT = 8000
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
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


async def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """`demo --fast --simulate` for a fixed time on a new portfolio, then the report; with
    --compare, the what-if of two strategy files instead."""
    if args.compare:
        return await cmd_what_if(args, settings)
    if args.format != "text":
        print("error: --format: only with --compare", file=sys.stderr)
        return 2
    return await cmd_demo(args, settings)


async def cmd_what_if(args: argparse.Namespace, settings: Settings) -> int:
    """One simulated portfolio under the two strategy files at the same time, on throwaway
    SQLite databases and an embedded dev server of its own, never the configured database or
    Temporal (service/what_if.py), then the comparison on standard output; what happens on
    the way goes to standard error, so a CSV or JSON report stays clean. Cut short (Ctrl-C)
    it closes what it opened, removes it all and exits 130."""
    from service.what_if import FORMATS, MAX_LOANS, ArmSetup, run_what_if

    arms = []
    for arm, path in zip(("A", "B"), args.compare, strict=True):
        try:
            arms.append(ArmSetup(arm, path, load_strategy(path)))
        except (StrategyError, OSError) as e:
            print(f"error: --compare {path}: {e}", file=sys.stderr)
            return 2
    if not 1 <= args.loans <= MAX_LOANS:
        print(
            f"error: --loans: 1 to {MAX_LOANS} with --compare, got {args.loans} (both arms run "
            "at once on this machine; with more loans the simulated people act days late on "
            "the fast policy, and the comparison says more about the machine than the "
            "strategies)",
            file=sys.stderr,
        )
        return 2
    if args.minutes <= 0:
        print("error: --minutes: more than 0", file=sys.stderr)
        return 2
    say = functools.partial(print, file=sys.stderr)
    # The configured policy's clock only (its time zone); the days last a second.
    policy = fast_policy(timezone=settings.policy().timezone)
    specs = demo_specs(args.loans, local_date(datetime.now(UTC), policy))
    say(
        f"What-if: {len(specs)} simulated borrowers under {args.compare[0]} (A) and "
        f"{args.compare[1]} (B) at the same time for {args.minutes:g} minutes (a policy day "
        "lasts one second; texts are recorded, not sent), on throwaway SQLite databases and "
        "an embedded Temporal dev server of its own, removed at the end: nothing reaches "
        "COLLECTION_DB_URL or TEMPORAL_ADDRESS ..."
    )
    try:
        result = await run_what_if(
            arms, specs, policy, args.minutes * 60, seed=args.seed,
            task_queue=settings.task_queue,
        )  # fmt: skip
    except asyncio.CancelledError:
        say("interrupted: no report; the what-if's cases were closed and its databases removed")
        raise
    sys.stdout.write(FORMATS[args.format](result))
    return 0


async def _simulate(
    sim: Simulator, settings: Settings, policy: Policy, minutes: float | None, stop: asyncio.Event
) -> None:
    """Run the simulation (for `minutes`, else until Ctrl-C), then print where the cases are,
    what the people did and the outcomes per strategy arm."""
    from domain.outcomes import percent
    from service.outcomes import build_report, portfolio

    stages = await sim.run(minutes * 60 if minutes else float("inf"))
    print("stages:", ", ".join(f"{k} {v}" for k, v in sorted(stages.items())))
    print("actions:", ", ".join(f"{k} {v}" for k, v in sorted(sim.actions.items())))
    if sim.refused:
        print("refused:", ", ".join(f"{k} ({v})" for k, v in sim.refused.most_common(5)))
    engine = make_engine(settings.db_url)
    try:
        cases = [c for c in portfolio(session_factory(engine), policy) if c.loan_no in sim.loans]
    finally:
        engine.dispose()
    today = local_date(datetime.now(UTC), policy)
    report = build_report(cases, today, today)
    for g in report.groups:
        if g.group_by in ("branch", "arm"):
            print(
                f"{g.group_by} {g.group}: {g.cases} cases, recovery {percent(g.recovery_rate)}, "
                f"cure {percent(g.cure_rate)}, promises kept {percent(g.promise_kept_rate)}"
            )
    if minutes:
        stop.set()
