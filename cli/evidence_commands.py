"""Evidence a regulator can read: one case's collection record (催收记录) as PDF or CSV, and
the monthly compliance report per branch. Read from the database only; phone numbers are
masked (the CLI is no collector of the case)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from db.engine import make_engine, session_factory
from service.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rc = sub.add_parser("record", help="a case's collection record (催收记录) as PDF or CSV")
    rc.add_argument("loan_no")
    rc.add_argument("--format", choices=["pdf", "csv"], default="pdf")
    rc.add_argument("--out", help="the file to write (CSV: standard output without it)")
    rc.set_defaults(run=cmd_record)
    rp = sub.add_parser("report", help="reports for the regulator")
    kinds = rp.add_subparsers(dest="report", required=True)
    cp = kinds.add_parser("compliance", help="the monthly compliance report per branch")
    cp.add_argument("--month", help="YYYY-MM, the branch's local month (default: this month)")
    cp.add_argument("--branch", action="append", help="repeatable; default: every branch")
    cp.add_argument("--format", choices=["csv", "text"], default="text")
    cp.add_argument("--out", help="the file to write (default: standard output)")
    cp.set_defaults(run=cmd_compliance)
    op = kinds.add_parser(
        "outcomes", help="recovery, cure, promise-kept and roll rates per branch/collector/arm"
    )
    op.add_argument("--from", dest="first", type=date.fromisoformat, help="default: a year ago")
    op.add_argument("--to", dest="last", type=date.fromisoformat, help="default: today")
    op.add_argument("--branch", action="append", help="repeatable; default: every branch")
    op.add_argument("--buckets", help="e.g. M1:1-30,M2:31-60,M3:61-90,M4:91-180,M5+:181-")
    op.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    op.add_argument("--out", help="the file to write (csv: standard output without it)")
    op.set_defaults(run=cmd_outcomes)


def _write(data: bytes, out: str | None) -> None:
    if out:
        Path(out).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def cmd_record(args: argparse.Namespace, settings: Settings) -> int:
    from service.collection_record import collection_record, to_csv, to_pdf

    if args.format == "pdf" and not args.out:
        print("error: --out: a PDF needs a file to go to", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    try:
        record = collection_record(
            session_factory(engine), args.loan_no, None, settings.policy(), datetime.now(UTC)
        )
    finally:
        engine.dispose()
    if record is None:
        print(f"loan {args.loan_no}: no case found", file=sys.stderr)
        return 1
    if args.format == "csv":
        _write(to_csv(record), args.out)
    else:
        _write(to_pdf(record, "命令行 CLI"), args.out)
    if args.out:
        print(f"{args.out}: collection record of {args.loan_no} ({args.format})")
    return 0


def cmd_compliance(args: argparse.Namespace, settings: Settings) -> int:
    from service.compliance import (
        MonthError,
        compliance_report,
        current_month,
        parse_month,
        to_csv,
    )

    policy = settings.policy()
    try:
        month = parse_month(args.month) if args.month else current_month(datetime.now(UTC), policy)
    except MonthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    try:
        reports = compliance_report(session_factory(engine), month, args.branch, policy)
    finally:
        engine.dispose()
    known = {r.branch for r in reports}
    unknown = sorted(set(args.branch or []) - known)
    if unknown:
        print(f"error: --branch: unknown branch {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.format == "csv":
        _write(to_csv(reports), args.out)
        return 0
    lines = []
    for r in reports:
        lines.append(f"{r.branch} {r.month} ({r.timezone}): {r.contacts} contact attempts")
        for channel, hours in r.by_hour.items():
            busy = ", ".join(f"{h:02d}h {n}" for h, n in enumerate(hours) if n)
            lines.append(f"  {channel}: {busy}")
        for d in r.decisions:
            lines.append(f"  {d.outcome} by {d.rule} ({d.channel}): {d.count}")
        for size, n in r.visits_by_team.items():
            lines.append(f"  visits by a team of {size}: {n}")
        lines.append(f"  in the night window (outside {r.window}): {len(r.night)}")
        for channel, n in r.third_party.items():
            lines.append(f"  third-party contacts ({channel}): {n}")
    _write(("\n".join(lines) + "\n").encode(), args.out)
    return 0


def cmd_outcomes(args: argparse.Namespace, settings: Settings) -> int:
    from domain.outcomes import DEFAULT_BUCKETS, default_period, parse_buckets
    from domain.timerules import local_date
    from service.outcomes import build_report, portfolio, to_csv, to_xlsx

    policy = settings.policy()
    if args.format == "xlsx" and not args.out:
        print("error: --out: a workbook needs a file to go to", file=sys.stderr)
        return 2
    try:
        buckets = parse_buckets(args.buckets) if args.buckets else DEFAULT_BUCKETS
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    first, last = default_period(local_date(datetime.now(UTC), policy))
    first, last = args.first or first, args.last or last
    if first > last:
        print("error: --from: after --to", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    try:
        cases = portfolio(session_factory(engine), policy, args.branch)
    finally:
        engine.dispose()
    report = build_report(cases, first, last, buckets)
    if args.format == "csv":
        _write(to_csv(report).encode("utf-8-sig"), args.out)  # with a BOM: Excel reads it
    else:
        _write(to_xlsx(report), args.out)
    if args.out:
        print(f"{args.out}: outcomes of {len(cases)} cases, {first} to {last} ({args.format})")
    return 0
