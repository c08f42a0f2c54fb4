"""For the office that runs the system: accounts for the pages, and a sample agreement to
check how one prints (fonts, layout) before a borrower signs one."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from db.engine import make_engine, session_factory
from db.migrate import upgrade
from db.seed import add_branches_and_collectors, add_loan, demo_specs
from domain.timerules import local_date
from service.settings import Settings
from service.users import Role


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    us = sub.add_parser("user", help="add a user who signs in to the pages")
    us.add_argument("username")
    us.add_argument("--role", required=True, choices=[r.value for r in Role])
    us.add_argument("--branch", action="append", default=[], help="supervisors: repeatable")
    us.add_argument("--collector", help="collectors: their collector id")
    us.add_argument("--name", default="", help="display name")
    us.add_argument("--mobile", help="supervisors, branch heads: where safety alerts are texted")
    us.set_defaults(run=cmd_user)
    sa = sub.add_parser("sample-agreement", help="render a sample agreement PDF")
    sa.add_argument("--out", default="data/sample")
    sa.set_defaults(run=cmd_sample_agreement)


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
                session, args.username, password, args.role, args.branch, args.collector,
                args.name, args.mobile,
            )  # fmt: skip
    except (UserError, WeakPassword) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"user {args.username} ({args.role}) added")
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
        policy = settings.policy()
        today = local_date(datetime.now(UTC), policy)
        spec = demo_specs(1, today)[0]
        with sessions.begin() as session:
            add_branches_and_collectors(session, timezone=policy.timezone)
            loan = add_loan(session, spec)
            debt = loan.debt_fen
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
