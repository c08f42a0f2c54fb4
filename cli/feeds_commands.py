"""The back-office feeds: the overdue-loan export (cases started), the payment feed (each
reference signalled once), cancelling the open cases an export no longer lists, and the loan
contacts (guarantors, family: who may be asked to pass a message on)."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from cli.common import guarded
from db.engine import make_engine, session_factory
from domain.policy import Policy
from domain.timerules import local_date
from service.settings import Settings
from service.temporal_client import connect

SOME_ROWS_REJECTED = 3  # exit code: the good rows were imported, the others reported
_BRANCH_CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    it = sub.add_parser("intake", help="import the overdue-loan export and start the cases")
    it.add_argument("file")
    it.add_argument(
        "--dry-run",
        action="store_true",
        help="print which column feeds which field, validate, write the rejected rows; "
        "nothing is stored and no case is started",
    )
    it.add_argument(
        "--profile",
        metavar="FILE.toml",
        help="a mapping profile: column → field, date formats, the export date (README)",
    )
    it.add_argument(
        "--as-of",
        type=_day,
        metavar="YYYY-MM-DD",
        help="the day the export was made (days overdue count to it); default: the "
        "profile's export_date, else today",
    )
    it.set_defaults(run=guarded(cmd_intake))
    pm = sub.add_parser("payments", help="post the payment feed to the cases")
    pm.add_argument("file")
    pm.set_defaults(run=guarded(cmd_payments))
    cm = sub.add_parser(
        "cancel-missing",
        help="cancel the open cases of some branches that their export no longer lists "
        "(a dry run unless --apply)",
    )
    cm.add_argument("file", help="the overdue-loan export of those branches")
    cm.add_argument(
        "--branch",
        required=True,
        action="extend",
        type=_branches,
        help="the branches the export is for (QX01,QX02 or repeated); only the open cases "
        "of branches both listed and present in the file are candidates",
    )
    cm.add_argument("--reason", required=True)
    cm.add_argument("--by", required=True, help="who does this (audit trail)")
    cm.add_argument("--apply", action="store_true", help="cancel; without it, only report")
    cm.add_argument(
        "--confirm-count",
        type=_count,
        metavar="N",
        help="the exact number of cases to cancel, when more than the allowed share "
        "(COLLECTION_CANCEL_MAX_PERCENT, default 10) of the open cases in scope",
    )
    cm.set_defaults(run=guarded(cmd_cancel_missing))
    ct = sub.add_parser(
        "contacts",
        help="import the loan contacts file (guarantors, co-borrowers, family, others), or "
        "list one loan's contacts with --loan (numbers masked)",
    )
    what = ct.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", help="CSV: loan_no, name, relation, phone")
    what.add_argument("--loan", help="list this loan's contacts instead")
    ct.add_argument("--by", default="contacts-feed", help="who imports (stored, audit trail)")
    ct.set_defaults(run=cmd_contacts)


def _branches(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes or not all(_BRANCH_CODE.fullmatch(c) for c in codes):
        raise argparse.ArgumentTypeError(f"branch codes separated by commas, got {text!r}")
    return codes


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date as YYYY-MM-DD, got {text!r}") from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a whole number >= 0, got {text!r}")
    return int(text)


def _summary(errors: list, line: str) -> int:  # type: ignore[type-arg]
    """Each rejected row on stderr, the totals on stdout; the exit code a script relies on."""
    for error in errors:
        print(f"rejected: {error}", file=sys.stderr)
    print(line)
    return SOME_ROWS_REJECTED if errors else 0


def _today(policy: Policy) -> date:
    """Today on the configured clock: a feed's dates after it are in the future."""
    return local_date(datetime.now(UTC), policy)


async def cmd_intake(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from feeds.csv_files import FileError
    from feeds.debt_updates import NOT_TOLD
    from feeds.loans import IntakeReport, intake
    from feeds.profile import ProfileError

    policy = settings.policy()
    today = _today(policy)
    if args.as_of is not None and args.as_of > today:
        print(f"error: --as-of: {args.as_of} is after today {today}", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    client = None if args.dry_run else await connect(settings)
    # A bar for the cases being started, on a terminal only (scripts get the summary).
    bar = tqdm(desc="starting cases", unit="case", disable=None, leave=False)

    def mapped(report: IntakeReport) -> None:  # before any row is read: the operator checks
        if args.dry_run:
            print("\n".join(report.mapping_lines()), flush=True)

    try:
        report = await intake(
            Path(args.file),
            session_factory(engine),
            client,
            settings.task_queue,
            policy,
            today,
            dry_run=args.dry_run,
            progress=lambda: bar.update(1),
            profile=Path(args.profile) if args.profile else None,
            as_of=args.as_of,
            mapped=mapped,
        )
    except ProfileError as e:
        print(f"error: --profile: {e}", file=sys.stderr)
        return 2
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        engine.dispose()
    verb = "would import" if args.dry_run else "imported"
    code = _summary(
        report.errors,
        f"{report.rows} rows: {verb} {len(report.good)}, rejected "
        f"{len({e.row for e in report.errors})}; cases started {report.started}, "
        f"already running {report.attached}, ended before (not reopened) {len(report.ended)}"
        + "".join(f"\n  moved to another branch: {m}" for m in report.moved)
        + "".join(f"\n  debt updated 欠款已更新: {d}" for d in report.debts)
        + f"\n  rejected rows, to correct and send again: {report.rejected_file}"
        + f"\n  export date 导出日期 {report.export_date} ({report.export_date_from})",
    )
    # A running case that was not told its new balances: like a rejected row, worth a look.
    untold = any(NOT_TOLD in d for d in report.debts) or any("not told" in m for m in report.moved)
    return code or (SOME_ROWS_REJECTED if untold else 0)


async def cmd_payments(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.csv_files import FileError
    from feeds.payments import post_payments

    policy = settings.policy()
    engine = make_engine(settings.db_url)
    try:
        report = await post_payments(
            Path(args.file),
            session_factory(engine),
            await connect(settings),
            _today(policy),
            policy,
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
        f"rejected {len({e.row for e in report.errors})}"
        f"\n  rejected rows, to correct and send again: {report.rejected_file}",
    )


def cmd_contacts(args: argparse.Namespace, settings: Settings) -> int:
    """No Temporal needed: the contacts are the database's. Numbers are printed masked."""
    from feeds.contacts import import_contacts
    from feeds.csv_files import FileError
    from service.loan_contacts import loan_contacts

    engine = make_engine(settings.db_url)
    try:
        if args.loan:
            contacts = loan_contacts(session_factory(engine), args.loan)
            if contacts is None:
                print(f"error: --loan: unknown loan {args.loan!r}", file=sys.stderr)
                return 1
            for c in contacts:
                print(f"{c.id:>6}  {c.relation:<11} {c.relation_zh:<5} {c.phone_masked}  {c.name}")
            print(f"{args.loan}: {len(contacts)} contacts")
            return 0
        report = import_contacts(Path(args.file), session_factory(engine), args.by)
    except (FileError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    s = report.stored
    return _summary(
        report.errors,
        f"{report.rows} rows: added {s.added}, updated {s.updated}, unchanged {s.unchanged}, "
        f"rejected {len({e.row for e in report.errors})}",
    )


async def cmd_cancel_missing(args: argparse.Namespace, settings: Settings) -> int:
    """A dry run unless --apply; the dry run exits as --apply would (1 when it would be
    refused), so a script can try first."""
    from feeds.csv_files import FileError
    from feeds.loans import CancelRefused, UnknownBranch, cancel_missing

    engine = make_engine(settings.db_url)
    try:
        report = await cancel_missing(
            Path(args.file),
            session_factory(engine),
            await connect(settings) if args.apply else None,
            args.reason,
            args.by,
            args.branch,
            apply=args.apply,
            max_share=settings.cancel_max_percent / 100,
            confirm_count=args.confirm_count,
        )
    except UnknownBranch as e:
        print(f"error: --branch: {e}", file=sys.stderr)
        return 2
    except (CancelRefused, FileError, OSError) as e:
        print(f"error: {args.file}: {e}; nothing cancelled", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    for branch in report.absent:
        print(f"refused: branch {branch} is not in the export; none of its cases is a candidate",
              file=sys.stderr)  # fmt: skip
    for branch in report.unsure:
        print(f"refused: branch {branch} has a row without a loan number; none of its cases "
              "is a candidate", file=sys.stderr)  # fmt: skip
    for refused in report.refused:
        print(f"refused by the case: {refused}", file=sys.stderr)
    done = report.cancelled if report.applied else report.candidates
    verb = "cancelled" if report.applied else "would cancel"
    print(f"{verb}: {', '.join(done) or '-'}")
    if report.refusal:
        print(f"error: {args.file}: {report.refusal}", file=sys.stderr)
    code = _summary(
        report.errors,
        f"{report.rows} rows; branches in scope {', '.join(report.branches) or '-'}, open cases "
        f"in them {report.scope}; {verb} {len(done)}"
        + ("" if args.apply else " (dry run: --apply to cancel)"),
    )
    if report.refusal:
        return 1
    if report.absent or report.unsure or report.refused:
        return SOME_ROWS_REJECTED
    return code
