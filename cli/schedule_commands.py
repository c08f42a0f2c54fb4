"""`schedule`: the daily feed run as a Temporal Schedule (not cron): every day at a local time
the newest export in a drop folder goes through the intake (and that day's payment file
through the payment feed), with a run report on /feeds. With `--training-reminders`, the
supervisors' daily safety-training reminder's Schedule instead (its own workflow)."""

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
from domain.training import REMINDER_SCHEDULE_ID
from service.settings import Settings
from service.temporal_client import connect

DEFAULT_AT = "06:00"  # the feed run: before the working day
REMINDER_AT = "08:00"  # the reminder: as the supervisors start theirs


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sc = sub.add_parser(
        "schedule",
        help="the daily feed run: create or update its Temporal Schedule (--export-dir, --at), "
        "--show it with the latest run reports, or --delete it; with --training-reminders the "
        "supervisors' daily safety-training reminder's Schedule (create, --show, --delete)",
    )
    what = sc.add_mutually_exclusive_group()
    what.add_argument("--export-dir", help="the drop folder of the loan exports (.csv, .xlsx)")
    what.add_argument("--show", action="store_true", help="the Schedule and the latest runs")
    what.add_argument("--delete", action="store_true", help="delete the Schedule")
    sc.add_argument(
        "--training-reminders",
        action="store_true",
        help="the daily text to each supervisor naming their collectors whose safety training "
        f"has expired, expires soon or is not on record (Schedule {REMINDER_SCHEDULE_ID}; "
        f"--at default {REMINDER_AT})",
    )
    sc.add_argument(
        "--at", help=f"local time of the run, HH:MM ({DEFAULT_AT}; reminders {REMINDER_AT})"
    )
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
    sc.add_argument(
        "--id", help=f"the Schedule's id ({SCHEDULE_ID}; reminders {REMINDER_SCHEDULE_ID})"
    )
    sc.set_defaults(run=guarded(cmd_schedule))


async def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from service.daily_schedule import (
        ScheduleError,
        daily_schedule,
        put_schedule,
        reminder_schedule,
        view,
    )

    reminders = args.training_reminders
    if reminders and args.export_dir:
        print("error: --training-reminders: no --export-dir (it reads no files)", file=sys.stderr)
        return 2
    if not (reminders or args.export_dir or args.show or args.delete):
        print(
            "error: one of --export-dir, --show, --delete or --training-reminders",
            file=sys.stderr,
        )
        return 2
    args.id = args.id or (REMINDER_SCHEDULE_ID if reminders else SCHEDULE_ID)
    args.at = args.at or (REMINDER_AT if reminders else DEFAULT_AT)
    if args.show:
        return await (_show_reminders(args, settings) if reminders else _show(args, settings))
    try:
        schedule = None
        if reminders and not args.delete:
            tz = args.tz or settings.policy().timezone
            schedule = reminder_schedule(args.at, tz, settings.task_queue, args.id)
        elif not args.delete:
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
    if reminders:
        outcome = await put_schedule(client, schedule, args.id)
        shown = await view(await client.get_schedule_handle(args.id).describe())
        print(
            f"{outcome} schedule {args.id}: every day at {shown.at} {shown.time_zone}, "
            "safety-training reminder to the supervisors"
            + "".join(f"\n  next run: {t.isoformat()}" for t in shown.next_runs[:1])
        )
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


async def _show_reminders(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from service.daily_schedule import latest_reminders, view

    client = await connect(settings)
    try:
        shown = await view(await client.get_schedule_handle(args.id).describe())
        print(
            f"schedule {args.id}: every day at {shown.at} {shown.time_zone}"
            f"{' (paused)' if shown.paused else ''}; task queue {shown.task_queue}"
            + "".join(f"\n  next run: {t.isoformat()}" for t in shown.next_runs)
            + "".join(f"\n  ran: {t.isoformat()}" for t in shown.recent_runs)
        )
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        print(f"no schedule {args.id!r}")
    engine = make_engine(settings.db_url)
    try:
        sent = latest_reminders(session_factory(engine))
    finally:
        engine.dispose()
    for r in sent:  # the mobile masked, as everywhere
        print(f"{r.created_at:%Y-%m-%d %H:%M} UTC  {r.status}  to {r.to}  ({r.key})")
    return 0
