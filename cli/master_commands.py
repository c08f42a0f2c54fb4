"""Master data: the branches file and the collectors file (feeds/branches.py,
feeds/collectors.py). Exit codes as for the other feeds: 0 every row good, 3 some rows
rejected (the good ones written) or a deactivation left pending by a case, 1 the file could
not be read, 2 bad arguments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import guarded
from cli.feeds_commands import SOME_ROWS_REJECTED, _summary
from db.engine import make_engine, session_factory
from service.settings import Settings
from service.users import Principal, Role


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    br = sub.add_parser(
        "branches",
        help="register or correct branches from a file: code, name, county[, timezone] "
        "(CSV or .xlsx)",
    )
    br.add_argument("file")
    br.add_argument("--by", required=True, help="who imports (audit trail)")
    br.set_defaults(run=cmd_branches)
    co = sub.add_parser(
        "collectors",
        help="register, correct or deactivate collectors from a file: id, name, branch, "
        "mobile, capacity, training expiry, active (CSV or .xlsx); deactivations that move "
        "open cases are a dry run unless --apply",
    )
    co.add_argument("file")
    co.add_argument("--by", required=True, help="who imports (audit trail, the cases moved)")
    co.add_argument(
        "--apply", action="store_true", help="move the open cases of deactivated collectors"
    )
    co.set_defaults(run=guarded(cmd_collectors))
    tr = sub.add_parser(
        "training",
        help="record a collector's safety training: the last day it is valid, as a user of the "
        "users table (a supervisor of the collector's branch, or the back office)",
    )
    tr.add_argument("collector_id")
    tr.add_argument("expires_on", help="YYYY-MM-DD: the last day the training is valid")
    tr.add_argument(
        "--user",
        "--as",
        dest="user",
        required=True,
        help="a username (users table): who records it",
    )
    tr.set_defaults(run=cmd_training)


def _print_changes(report) -> None:  # type: ignore[no-untyped-def]
    for key in report.added:
        print(f"added: {key}")
    for change in report.updated:
        print(f"updated: {change}")


def cmd_branches(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.branches import import_branches
    from feeds.csv_files import FileError

    engine = make_engine(settings.db_url)
    try:
        report = import_branches(
            Path(args.file),
            session_factory(engine),
            Principal(args.by, Role.BACK_OFFICE),
            settings.policy().timezone,
        )
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    _print_changes(report)
    return _summary(report.errors, report.line())


async def cmd_collectors(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.collectors import import_collectors
    from feeds.csv_files import FileError
    from service.case_updates import CaseActions
    from service.temporal_client import connect

    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    try:
        # Temporal only to move cases; a file that moves none is imported without it.
        actions = (
            CaseActions(await connect(settings), sessions, settings.policy())
            if args.apply
            else None
        )
        report = await import_collectors(
            Path(args.file), sessions, Principal(args.by, Role.BACK_OFFICE), actions, args.apply
        )
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    _print_changes(report)
    verb = "moved" if report.applied else "would move"
    for move in report.moves:
        if move.new_team is not None:
            print(f"{verb}: {move}")
    for refused in report.refused:
        print(f"refused: {refused}", file=sys.stderr)
    for cid in report.deactivated:
        print(f"deactivated: {cid}")
    for cid in report.pending:
        why = "a case could not move" if report.applied else "dry run: --apply to move the cases"
        print(f"kept active: {cid} ({why})")
    code = _summary(report.errors, report.line())
    return SOME_ROWS_REJECTED if report.refused else code


def cmd_training(args: argparse.Namespace, settings: Settings) -> int:
    """As the collectors page's form: the same service, role and branch checks and audit."""
    from datetime import UTC, datetime

    from service.training import NotYours, TrainingError, set_training
    from service.users import principal_named

    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    try:
        who = principal_named(sessions, args.user)
        if who is None:
            print(f"error: user: no active user {args.user!r} in the users table", file=sys.stderr)
            return 1
        change = set_training(sessions, who, args.collector_id, args.expires_on, datetime.now(UTC))
    except NotYours as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(change.message)
    return 0
