"""The daily feed run (issue 18, item 6): the types DailyFeedRunWorkflow and its activities
exchange, the statuses of a run report and their Chinese labels. Pure: no I/O."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date, datetime

WORKFLOW_TYPE = "DailyFeedRunWorkflow"
SCHEDULE_ID = "daily-feed-run"
# Loan exports: CSV or Excel workbooks; payment files, rejected-rows files and Excel's lock
# files (~$…) in the same folder are never taken for an export.
DEFAULT_EXPORT_PATTERN = "*.csv,*.xlsx"
DEFAULT_PAYMENTS_PATTERN = "payment*,还款*"
IGNORED = ("*.rejected.*", "~$*", ".*")


class RunStatus:
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"  # some rows rejected, the good ones processed
    FAILED = "FAILED"
    ALREADY_PROCESSED = "ALREADY_PROCESSED"  # this file (same SHA-256) was processed before


STATUS_ZH = {
    RunStatus.RUNNING: "进行中",
    RunStatus.SUCCESS: "成功",
    RunStatus.PARTIAL: "部分拒绝",
    RunStatus.FAILED: "失败",
    RunStatus.ALREADY_PROCESSED: "已处理过",
}


def patterns(text: str) -> list[str]:
    """`*.csv,*.xlsx` → the glob patterns, stripped; empty parts dropped."""
    return [p.strip() for p in text.split(",") if p.strip()]


def matches(name: str, globs: list[str]) -> bool:
    """Case-insensitive glob match (EXPORT.CSV is a CSV export)."""
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, g.lower()) for g in globs)


def is_export(name: str, export_globs: list[str], payment_globs: list[str]) -> bool:
    return (
        matches(name, export_globs)
        and not matches(name, list(IGNORED))
        and not matches(name, payment_globs)
    )


def is_payments(name: str, payment_globs: list[str]) -> bool:
    return matches(name, payment_globs) and not matches(name, list(IGNORED))


def names_day(name: str, day: date) -> bool:
    """The file's name carries that date (20261105 or 2026-11-05)."""
    return day.strftime("%Y%m%d") in name or day.isoformat() in name


@dataclass
class DailyRunInput:
    """What the Schedule starts the workflow with. Empty payments_dir: the export's folder."""

    export_dir: str
    payments_dir: str = ""
    export_pattern: str = DEFAULT_EXPORT_PATTERN
    payments_pattern: str = DEFAULT_PAYMENTS_PATTERN
    profile: str = ""  # the export's mapping profile (TOML), as `intake --profile`


@dataclass
class RunStart:
    run_key: str  # workflow id and run id: the report row's natural key
    scheduled_at: datetime
    run: DailyRunInput


@dataclass
class PickedRun:
    status: str  # RUNNING: go on with the feeds; ALREADY_PROCESSED or FAILED: done
    export_path: str = ""
    sha256: str = ""
    payments_path: str = ""
    payments_sha256: str = ""
    error: str = ""


@dataclass
class FeedRequest:
    run_key: str
    path: str
    sha256: str
    profile: str = ""


@dataclass
class RunFinish:
    run_key: str
    error: str = ""


@dataclass
class DailyRunResult:
    run_key: str
    status: str
    file_name: str = ""
    sha256: str = ""
    rows_read: int = 0
    cases_started: int = 0
    already_running: int = 0
    rejected: int = 0
    rejected_file: str = ""
    payments_file: str = ""
    payments_signalled: int = 0
    payments_rejected: int = 0
    error: str = ""
