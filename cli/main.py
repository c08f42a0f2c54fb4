"""`python -m cli.main COMMAND`: the demo, migrations, one case's status, lists by stage.

Exit codes: 0 success; 1 a refused or failed operation; 2 bad arguments; 3 some rows of a
feed or some cases of a batch were refused (the rest were done).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.client import Client
from temporalio.service import RPCError

from cli import actions
from cli.format import status_text
from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import add_branches_and_collectors, add_loan, demo_specs
from domain.money import yuan
from domain.names import workflow_id
from domain.policy import fast_policy
from domain.stages import Stage
from service.cases import start_case
from service.dev_server import start_dev_server
from service.log_masking import configure
from service.portfolio import (
    FilterError,
    Filters,
    counts_per_stage,
    list_cases,
    visibility_query,
)
from service.settings import Settings
from service.temporal_client import connect
from service.users import Role
from workflows.collection import LoanCollectionWorkflow

log = logging.getLogger("collection")


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
    specs = demo_specs(args.loans, datetime.now(ZoneInfo("Asia/Shanghai")).date())
    with sessions.begin() as session:
        add_branches_and_collectors(session)
        for spec in specs:
            add_loan(session, spec)
    engine.dispose()
    print(f"Database {settings.db_url}: migrated, {len(specs)} demo loans loaded")
    policy = fast_policy() if args.fast else settings.policy()
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


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings)
    handle = client.get_workflow_handle(workflow_id(args.loan_no))
    try:
        status = await handle.query(LoanCollectionWorkflow.status)
    except RPCError as e:
        print(f"loan {args.loan_no}: no case found ({e.message})", file=sys.stderr)
        return 1
    print(status_text(status))
    return 0


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        stage=args.stage,
        branch=args.branch,
        collector=args.collector,
        risk=args.risk,
        min_dpd=args.min_dpd,
        overdue_action=args.overdue_action,
        due_today=args.due_today,
    )


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        query = visibility_query(_filters(args), datetime.now(UTC))
    except FilterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    client: Client = await connect(settings)
    rows = await list_cases(client, query, limit=args.limit)
    for r in rows:
        print(
            f"{r.loan_no:<20} {r.stage:<18} {r.branch:<6} {r.collector:<10} {r.risk_tier:<6} "
            f"dpd {'-' if r.days_past_due is None else r.days_past_due:>4}  "
            f"outstanding {'-' if r.outstanding_fen is None else yuan(r.outstanding_fen):>12}  "
            f"next {_local_time(r.next_action_at)}"
        )
    # Counts per stage over the same filters but the stage (visibility has no GROUP BY).
    base = visibility_query(replace(_filters(args), stage=None), datetime.now(UTC))
    counts = await counts_per_stage(client, base)
    listed = ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"
    print(f"-- {len(rows)} shown; cases per stage: {listed}")
    return 0


def _local_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


def cmd_agreements(args: argparse.Namespace, settings: Settings) -> int:
    """The agreement versions of a loan, with the SHA-256 a signature must quote."""
    from sqlalchemy import select

    from db.models import Agreement, Case, Loan, SignedScan

    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        rows = session.scalars(
            select(Agreement)
            .join(Case, Case.id == Agreement.case_id)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Loan.loan_no == args.loan_no)
            .order_by(Agreement.version)
        ).all()
        if not rows:
            print(f"loan {args.loan_no}: no agreement yet", file=sys.stderr)
            return 1
        for a in rows:
            signed = (
                f"signed {a.signed_at:%Y-%m-%d} at {a.signed_place} ({a.signed_by})"
                if a.signed_at
                else "not signed"
            )
            print(f"version {a.version}  plan {a.plan_number}  {signed}")
            print(f"  sha256 {a.sha256}")
            print(f"  pdf    {a.pdf_path}\n  html   {a.html_path}")
            for scan in session.scalars(select(SignedScan).where(SignedScan.agreement_id == a.id)):
                print(f"  signed paper {scan.path} sha256 {scan.sha256} ({scan.uploaded_by})")
    engine.dispose()
    return 0


def cmd_attach_scan(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.exceptions import ApplicationError

    from activities.agreements import store_signed_scan

    engine = make_engine(settings.db_url)
    try:
        scan = store_signed_scan(
            session_factory(engine),
            settings.data_dir / "agreements",
            args.loan_no,
            args.version,
            open(args.file, "rb").read(),
            args.by,
            datetime.now(UTC),
        )
    except (ApplicationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"stored {scan.path} sha256 {scan.sha256}")
    return 0


def cmd_sample_agreement(args: argparse.Namespace, settings: Settings) -> int:
    """Render one agreement through the real activity, for a person to look at."""
    import shutil
    import tempfile
    from pathlib import Path

    from activities.agreements import AgreementActivities
    from domain.models import AgreementRequest, Installment, Plan
    from domain.plans import add_months, monthly_plan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/sample.db"
        upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        spec = demo_specs(1, today)[0]
        with sessions.begin() as session:
            add_branches_and_collectors(session)
            loan = add_loan(session, spec)
            debt = loan.debt_fen
        policy = settings.policy()
        first_due = add_months(today.replace(day=10), 1)
        proposal = monthly_plan(debt, 6, first_due, policy, "QX01-C01", debt // 5)
        plan = Plan(
            1,
            [
                Installment(n, i.due_at, i.amount_fen)
                for n, i in enumerate(proposal.installments, 1)
            ],
            "QX01-C01",
            datetime.now(UTC),
            0,
            first_is_down_payment=True,
        )
        ref = AgreementActivities(sessions, Path(tmp) / "agreements").render_agreement(
            AgreementRequest(spec.loan_no, plan, ["QX01-C01", "QX01-C02"], debt, 0, policy)
        )
        shutil.copy(ref.path, out / "agreement.pdf")
        engine.dispose()
    print(f"{out / 'agreement.pdf'}  sha256 {ref.sha256}")
    return 0


SOME_ROWS_REJECTED = 3  # exit code: the good rows were imported, the others reported


def _summary(errors: list, line: str) -> int:  # type: ignore[type-arg]
    """Each rejected row on stderr, the totals on stdout; the exit code a script relies on."""
    for error in errors:
        print(f"rejected: {error}", file=sys.stderr)
    print(line)
    return SOME_ROWS_REJECTED if errors else 0


def _today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def cmd_intake(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from feeds.csv_files import FileError
    from feeds.loans import intake

    engine = make_engine(settings.db_url)
    client = None if args.dry_run else await connect(settings)
    # A bar for the cases being started, on a terminal only (scripts get the summary).
    bar = tqdm(desc="starting cases", unit="case", disable=None, leave=False)
    try:
        report = await intake(
            Path(args.file),
            session_factory(engine),
            client,
            settings.task_queue,
            settings.policy(),
            _today(),
            dry_run=args.dry_run,
            progress=lambda: bar.update(1),
        )
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        engine.dispose()
    verb = "would import" if args.dry_run else "imported"
    return _summary(
        report.errors,
        f"{report.rows} rows: {verb} {len(report.good)}, rejected "
        f"{len({e.row for e in report.errors})}; cases started {report.started}, "
        f"already running {report.attached}, ended before (not reopened) {len(report.ended)}",
    )


async def cmd_payments(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.csv_files import FileError
    from feeds.payments import post_payments

    engine = make_engine(settings.db_url)
    try:
        report = await post_payments(
            Path(args.file), session_factory(engine), await connect(settings), _today()
        )
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return _summary(
        report.errors,
        f"{report.rows} rows: signalled {report.signalled} (references seen before: "
        f"{len(report.duplicates)}; cases already closed: {len(report.closed)}), "
        f"rejected {len({e.row for e in report.errors})}",
    )


async def cmd_cancel_missing(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.loans import cancel_missing

    engine = make_engine(settings.db_url)
    try:
        cancelled = await cancel_missing(
            Path(args.file), session_factory(engine), await connect(settings), args.reason, args.by
        )
    finally:
        engine.dispose()
    print(f"cancelled {len(cancelled)} cases: {', '.join(cancelled) or '-'}")
    return 0


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """The password comes from COLLECTION_PASSWORD or a prompt, never the command line."""
    import getpass
    import os

    from service.passwords import WeakPassword
    from service.users import UserError, create_user

    password = os.environ.get("COLLECTION_PASSWORD") or getpass.getpass("password: ")
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine).begin() as session:
            create_user(
                session, args.username, password, args.role, args.branch, args.collector, args.name
            )
    except (UserError, WeakPassword) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"user {args.username} ({args.role}) added")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.db_url)
    print(f"migrated {settings.db_url}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collection", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded defaults")
    demo.add_argument("--loans", type=int, default=12, help="demo loans to load (default 12)")
    demo.add_argument("--fast", action="store_true", help="policy days last one second")
    sub.add_parser("migrate", help="bring the database to the newest schema")
    st = sub.add_parser("status", help="one case, from the workflow's status Query")
    st.add_argument("loan_no")
    ls = sub.add_parser("list", help="cases from Temporal visibility, with counts per stage")
    ls.add_argument("--stage", choices=[s.value for s in Stage])
    ls.add_argument("--branch")
    ls.add_argument("--collector")
    ls.add_argument("--risk", choices=["LOW", "MEDIUM", "HIGH"])
    ls.add_argument("--min-dpd", type=int)
    ls.add_argument("--overdue-action", action="store_true", help="next action already due")
    ls.add_argument("--due-today", action="store_true", help="next action due by tonight")
    ls.add_argument("--limit", type=int, default=50)
    ag = sub.add_parser("agreements", help="a loan's agreement versions and their SHA-256")
    ag.add_argument("loan_no")
    at = sub.add_parser("attach-scan", help="keep a photo or scan of a signed agreement")
    at.add_argument("loan_no")
    at.add_argument("version", type=int)
    at.add_argument("file")
    at.add_argument("--by", required=True, help="who uploads it")
    it = sub.add_parser("intake", help="import the overdue-loan export and start the cases")
    it.add_argument("file")
    it.add_argument("--dry-run", action="store_true", help="validate and report only")
    pm = sub.add_parser("payments", help="post the payment feed to the cases")
    pm.add_argument("file")
    cm = sub.add_parser("cancel-missing", help="cancel open cases absent from an export")
    cm.add_argument("file")
    cm.add_argument("--reason", required=True)
    cm.add_argument("--by", required=True)
    actions.add_parsers(sub)
    us = sub.add_parser("user", help="add a user who signs in to the pages")
    us.add_argument("username")
    us.add_argument("--role", required=True, choices=[r.value for r in Role])
    us.add_argument("--branch", action="append", default=[], help="supervisors: repeatable")
    us.add_argument("--collector", help="collectors: their collector id")
    us.add_argument("--name", default="", help="display name")
    sa = sub.add_parser("sample-agreement", help="render a sample agreement PDF")
    sa.add_argument("--out", default="data/sample")
    return p


def main(argv: list[str] | None = None) -> int:
    configure(logging.WARNING, "%(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    settings = Settings.from_env()
    sync_commands = {
        "migrate": cmd_migrate,
        "agreements": cmd_agreements,
        "attach-scan": cmd_attach_scan,
        "sample-agreement": cmd_sample_agreement,
        "user": cmd_user,
    }
    if args.command in actions.COMMANDS:
        return asyncio.run(actions.run(args, settings))
    if args.command in sync_commands:
        return sync_commands[args.command](args, settings)
    command = {
        "demo": cmd_demo,
        "status": cmd_status,
        "list": cmd_list,
        "intake": cmd_intake,
        "payments": cmd_payments,
        "cancel-missing": cmd_cancel_missing,
    }[args.command]
    try:
        return asyncio.run(command(args, settings))
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def exit_now(code: int) -> None:
    """Exit without interpreter finalization. The Temporal SDK's core threads can abort a
    finalizing interpreter (SIGABRT, "PyGILState_Release ... must be current") after the
    command has done and printed everything: seen in CI on `list`. The command's work is
    committed by then; only the output and the log handlers are flushed here."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
