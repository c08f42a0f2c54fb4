"""The back-office feeds: the overdue-loan export (cases started), the payment feed (each
reference signalled once), and cancelling the open cases an export no longer lists."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cli.common import guarded
from db.engine import make_engine, session_factory
from service.settings import Settings
from service.temporal_client import connect

SOME_ROWS_REJECTED = 3  # exit code: the good rows were imported, the others reported


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    it = sub.add_parser("intake", help="import the overdue-loan export and start the cases")
    it.add_argument("file")
    it.add_argument("--dry-run", action="store_true", help="validate and report only")
    it.set_defaults(run=guarded(cmd_intake))
    pm = sub.add_parser("payments", help="post the payment feed to the cases")
    pm.add_argument("file")
    pm.set_defaults(run=guarded(cmd_payments))
    cm = sub.add_parser("cancel-missing", help="cancel open cases absent from an export")
    cm.add_argument("file")
    cm.add_argument("--reason", required=True)
    cm.add_argument("--by", required=True)
    cm.set_defaults(run=guarded(cmd_cancel_missing))


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
