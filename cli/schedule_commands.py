"""`schedule`: the daily feed run as a Temporal Schedule (not cron): every day at a local time
the newest export in a drop folder goes through the intake (and that day's payment file
through the payment feed), with a run report on /feeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import guarded
from db.engine import make_engine, session_factory
from domain.daily_run import (
    DEFAULT_EXPORT_PATTERN,
    DEFAULT_PAYMENTS_PATTERN,
    SCHEDULE_ID,
    DailyRunInput,
)
from service.settings import Settings
from service.temporal_client import connect


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sc = sub.add_parser(
        "schedule",
        help="the daily feed run: create or update its Temporal Schedule (--export-dir, --at), "
        "--show it with the latest run reports, or --delete it",
    )
    what = sc.add_mutually_exclusive_group(required=True)
    what.add_argument("--export-dir", help="the drop folder of the loan exports (.csv, .xlsx)")
    what.add_argument("--show", action="store_true", help="the Schedule and the latest runs")
    what.add_argument("--delete", action="store_true", help="delete the Schedule")
    sc.add_argument("--at", default="06:00", help="local time of the run, HH:MM (06:00)")
    sc.add_argument("--tz", help="time zone of --at (default: the configured policy's)")
    sc.add_argument("--payments-dir", default="", help="payment files' folder (the export's)")
    sc.add_argument(
        "--pattern",
        default=DEFAULT_EXPORT_PATTERN,
        help=f"export file names, globs separated by commas ({DEFAULT_EXPORT_PATTERN})",
    )
    sc.add_argument(
        "--payments-pattern",
        default=DEFAULT_PAYMENTS_PATTERN,
        help="payment file names: the newest one named with the run's date (20261105 or "
        f"2026-11-05) or modified that day is posted ({DEFAULT_PAYMENTS_PATTERN})",
    )
    sc.add_argument(
        "--profile",
        help="the export's mapping profile (TOML), as for intake --profile; read by the worker "
        "at each run",
    )
    sc.add_argument("--id", default=SCHEDULE_ID, help=f"the Schedule's id ({SCHEDULE_ID})")
    sc.set_defaults(run=guarded(cmd_schedule))


async def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from service.daily_schedule import ScheduleError, daily_schedule, put_schedule, view

    if args.show:
        return await _show(args, settings)
    try:
        schedule = None
        if not args.delete:
            run = DailyRunInput(
                str(Path(args.export_dir).resolve()),
                str(Path(args.payments_dir).resolve()) if args.payments_dir else "",
                args.pattern,
                args.payments_pattern,
                str(Path(args.profile).resolve()) if args.profile else "",
            )
            if args.profile and not Path(args.profile).is_file():
                raise ScheduleError(f"--profile: no such file {args.profile}")
            tz = args.tz or settings.policy().timezone
            schedule = daily_schedule(run, args.at, tz, settings.task_queue, args.id)
    except ScheduleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    client = await connect(settings)
    if schedule is None:
        try:
            await client.get_schedule_handle(args.id).delete()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            print(f"error: no schedule {args.id!r}", file=sys.stderr)
            return 1
        print(f"deleted schedule {args.id}")
        return 0
    if not Path(args.export_dir).is_dir():
        print(f"warning: --export-dir {args.export_dir} is not a folder here (the worker "
              "must see it)", file=sys.stderr)  # fmt: skip
    outcome = await put_schedule(client, schedule, args.id)
    shown = await view(await client.get_schedule_handle(args.id).describe())
    print(
        f"{outcome} schedule {args.id}: every day at {shown.at} {shown.time_zone}, "
        f"{shown.export_dir} -> intake"
        + (f", payments from {shown.payments_dir or shown.export_dir}")
        + f"; overlap {shown.overlap}, catch-up window {shown.catchup_window}"
        + "".join(f"\n  next run: {t.isoformat()}" for t in shown.next_runs[:1])
    )
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from service.daily_schedule import latest_runs, view

    client = await connect(settings)
    try:
        shown = await view(await client.get_schedule_handle(args.id).describe())
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        print(f"no schedule {args.id!r}")
        shown = None
    if shown is not None:
        print(
            f"schedule {args.id}: every day at {shown.at} {shown.time_zone}"
            f"{' (paused)' if shown.paused else ''}; task queue {shown.task_queue}\n"
            f"  exports: {shown.export_dir}\n"
            f"  payments: {shown.payments_dir or shown.export_dir}\n"
            f"  overlap {shown.overlap}, catch-up window {shown.catchup_window}"
            + "".join(f"\n  next run: {t.isoformat()}" for t in shown.next_runs)
            + "".join(f"\n  ran: {t.isoformat()}" for t in shown.recent_runs)
        )
    engine = make_engine(settings.db_url)
    try:
        runs = latest_runs(session_factory(engine))
    finally:
        engine.dispose()
    for r in runs:
        print(
            f"{r.scheduled_at:%Y-%m-%d %H:%M} UTC  {r.status_zh} {r.status}  {r.file_name or '-'}"
            f"  read {r.rows_read}, started {r.cases_started}, already running "
            f"{r.already_running} (debts updated {r.debts_updated}), rejected {r.rejected}"
            + (
                f"; payments {r.payments_file}: signalled {r.payments_signalled}, rejected "
                f"{r.payments_rejected}"
                if r.payments_file
                else ""
            )  # fmt: skip
            + (f"\n    rejected rows: {r.rejected_file}" if r.rejected_file else "")
            + (f"\n    {r.error}" if r.error else "")
        )
    return 0
