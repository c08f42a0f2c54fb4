"""Reading cases: one case's status (the workflow's Query), lists and counts (visibility),
a loan's agreement versions; and keeping the photo or scan of a signed agreement."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError

from cli.common import guarded
from cli.format import status_text
from db.engine import make_engine, session_factory
from domain.money import yuan
from domain.names import workflow_id
from domain.policy import Policy
from domain.stages import Stage
from domain.timerules import local
from service.local_time import branch_policy
from service.portfolio import (
    FilterError,
    Filters,
    count_cases_per_stage,
    find_cases,
)
from service.settings import Settings
from service.temporal_client import connect
from workflows.collection import LoanCollectionWorkflow


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    st = sub.add_parser("status", help="one case, from the workflow's status Query")
    st.add_argument("loan_no")
    st.set_defaults(run=guarded(cmd_status))
    ls = sub.add_parser("list", help="cases from Temporal visibility, with counts per stage")
    ls.add_argument("--stage", choices=[s.value for s in Stage])
    ls.add_argument("--branch")
    ls.add_argument("--collector")
    ls.add_argument("--risk", choices=["LOW", "MEDIUM", "HIGH"])
    ls.add_argument("--min-dpd", type=int)
    ls.add_argument("--overdue-action", action="store_true", help="next action already due")
    ls.add_argument("--due-today", action="store_true", help="next action due by tonight")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(run=guarded(cmd_list))
    ag = sub.add_parser("agreements", help="a loan's agreement versions and their SHA-256")
    ag.add_argument("loan_no")
    ag.set_defaults(run=cmd_agreements)
    at = sub.add_parser("attach-scan", help="keep a photo or scan of a signed agreement")
    at.add_argument("loan_no")
    at.add_argument("version", type=int)
    at.add_argument("file")
    at.add_argument("--by", required=True, help="who uploads it")
    at.set_defaults(run=cmd_attach_scan)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings)
    handle = client.get_workflow_handle(workflow_id(args.loan_no))
    try:
        status = await handle.query(LoanCollectionWorkflow.status)
    except RPCError as e:
        print(f"loan {args.loan_no}: no case found ({e.message})", file=sys.stderr)
        return 1
    engine = make_engine(settings.db_url)
    try:  # the case's times on its branch's clock
        policy = branch_policy(session_factory(engine), status.branch, settings.policy())
    finally:
        engine.dispose()
    print(status_text(status, policy))
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
    policy = settings.policy()  # lists cross branches: the configured clock
    try:
        filters = _filters(args).checked()
    except FilterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    client: Client = await connect(settings)
    engine = make_engine(settings.db_url)  # the case rows' outstanding amounts, next actions
    now = datetime.now(UTC)
    try:
        sessions = session_factory(engine)
        rows = await find_cases(client, filters, now, None, policy, args.limit, sessions)
        # Counts per stage over the same filters but the stage (visibility has no GROUP BY).
        counts = await count_cases_per_stage(client, filters, now, None, policy, sessions)
    finally:
        engine.dispose()
    for r in rows:
        print(
            f"{r.loan_no:<20} {r.stage:<18} {r.branch:<6} {r.collector:<10} {r.risk_tier:<6} "
            f"dpd {'-' if r.days_past_due is None else r.days_past_due:>4}  "
            f"outstanding {'-' if r.outstanding_fen is None else yuan(r.outstanding_fen):>12}  "
            f"next {_local_time(r.next_action_at, policy)}"
        )
    listed = ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"
    print(f"-- {len(rows)} shown; cases per stage: {listed}")
    return 0


def _local_time(moment: datetime | None, policy: Policy) -> str:
    if moment is None:
        return "-"
    return local(moment, policy).strftime("%Y-%m-%d %H:%M")


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
