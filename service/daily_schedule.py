"""The daily feed run's Temporal Schedule (`cli.main schedule`): created or updated in place,
shown, deleted; and the latest run reports (`daily_runs`) for the CLI and the /feeds page.
The supervisors' daily safety-training reminder has a Schedule of the same kind
(`cli.main schedule --training-reminders`).

Every day at the given local time the Schedule starts DailyFeedRunWorkflow on the workers'
task queue. Overlapping runs are skipped; a run missed while the server was down is caught
up once when it is back (the catch-up window is shorter than a day, so only the last missed
day is run, and SKIP keeps it to one at a time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import (
    ScheduleOverlapPolicy as Overlap,
)

from db.models import DailyRun, SmsOutbox
from domain.daily_run import SCHEDULE_ID, STATUS_ZH, WORKFLOW_TYPE, DailyRunInput
from domain.privacy import mask_phone
from domain.training import (
    REMINDER_PURPOSE,
    REMINDER_SCHEDULE_ID,
    REMINDER_WORKFLOW_TYPE,
    ReminderInput,
)

CATCHUP_WINDOW = timedelta(hours=23)
_AT = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


class ScheduleError(ValueError):
    """A bad argument, naming it."""


def parse_at(text: str) -> tuple[int, int]:
    m = _AT.fullmatch(text.strip())
    if not m:
        raise ScheduleError(f"--at: a local time HH:MM (00:00 to 23:59), got {text!r}")
    return int(m[1]), int(m[2])


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"--tz: unknown time zone {name!r} (IANA, e.g. Asia/Shanghai)"
        ) from None
    return name


def daily_schedule(
    run: DailyRunInput, at: str, tz: str, task_queue: str, schedule_id: str = SCHEDULE_ID
) -> Schedule:
    for folder, name in ((run.export_dir, "--export-dir"), (run.payments_dir, "--payments-dir")):
        if folder and not Path(folder).is_absolute():
            raise ScheduleError(f"{name}: an absolute path (the worker reads it), got {folder!r}")
    action = ScheduleActionStartWorkflow(
        WORKFLOW_TYPE,
        run,
        id=schedule_id,  # the Schedule appends the scheduled time
        task_queue=task_queue,
        execution_timeout=timedelta(hours=6),
    )
    return _every_day(action, at, tz, "daily feed run")


def reminder_schedule(
    at: str, tz: str, task_queue: str, schedule_id: str = REMINDER_SCHEDULE_ID
) -> Schedule:
    """The supervisors' daily safety-training reminder (TrainingReminderWorkflow)."""
    action = ScheduleActionStartWorkflow(
        REMINDER_WORKFLOW_TYPE,
        ReminderInput(),
        id=schedule_id,
        task_queue=task_queue,
        execution_timeout=timedelta(hours=2),
    )
    return _every_day(action, at, tz, "daily safety-training reminder")


def _every_day(action: ScheduleActionStartWorkflow, at: str, tz: str, what: str) -> Schedule:
    """Every day at `at` in `tz`; overlaps skipped, the last missed day caught up once."""
    hour, minute = parse_at(at)
    return Schedule(
        action=action,
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(hour)],
                    minute=[ScheduleRange(minute)],
                    comment=f"{what} at {at} {tz}",
                )
            ],
            time_zone_name=check_zone(tz),
        ),
        policy=SchedulePolicy(overlap=Overlap.SKIP, catchup_window=CATCHUP_WINDOW),
    )


async def put_schedule(client: Client, schedule: Schedule, schedule_id: str = SCHEDULE_ID) -> str:
    """Created, or the existing one updated to this (its state, paused or not, is kept).
    Returns 'created' or 'updated'."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def updater(old: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = old.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(updater)
        return "updated"


@dataclass
class ScheduleView:
    at: str
    time_zone: str
    overlap: str
    catchup_window: timedelta | None
    export_dir: str
    payments_dir: str
    task_queue: str
    next_runs: list[datetime]
    recent_runs: list[datetime]
    paused: bool
    workflow: str = WORKFLOW_TYPE


async def view(description: ScheduleDescription) -> ScheduleView:
    s = description.schedule
    calendar = s.spec.calendars[0] if s.spec.calendars else None
    at = f"{calendar.hour[0].start:02d}:{calendar.minute[0].start:02d}" if calendar else "?"
    action = s.action
    run = DailyRunInput("")
    queue = ""
    workflow = ""
    if isinstance(action, ScheduleActionStartWorkflow):
        queue, workflow = action.task_queue, action.workflow
        if action.args and workflow == WORKFLOW_TYPE:  # the reminder's input has no folders
            payload = action.args[0]
            if isinstance(payload, DailyRunInput):
                run = payload
            else:  # as stored: decrypted with the codec's keys when there are any
                (run,) = await description.data_converter.decode([payload], [DailyRunInput])
    return ScheduleView(
        at,
        s.spec.time_zone_name or "UTC",
        s.policy.overlap.name,
        s.policy.catchup_window,
        run.export_dir,
        run.payments_dir,
        queue,
        list(description.info.next_action_times[:3]),
        [a.scheduled_at for a in description.info.recent_actions[-3:]],
        s.state.paused,
        workflow,
    )


@dataclass
class RunRow:
    id: int
    scheduled_at: datetime
    file_name: str
    sha256: str
    status: str
    status_zh: str
    rows_read: int
    cases_started: int
    already_running: int
    rejected: int
    rejected_file: str
    payments_file: str
    payments_signalled: int
    payments_rejected: int
    error: str
    debts_updated: int = 0


def latest_runs(sessions: sessionmaker[Session], limit: int = 10) -> list[RunRow]:
    with sessions() as session:
        rows = session.scalars(
            select(DailyRun).order_by(DailyRun.scheduled_at.desc(), DailyRun.id.desc()).limit(limit)
        ).all()
        return [
            RunRow(
                r.id,
                r.scheduled_at,
                r.file_name,
                r.file_sha256,
                r.status,
                STATUS_ZH.get(r.status, r.status),
                r.rows_read,
                r.cases_started,
                r.already_running,
                r.rejected,
                r.rejected_file,
                r.payments_file,
                r.payments_signalled,
                r.payments_rejected,
                r.error,
                r.debts_updated,
            )  # fmt: skip
            for r in rows
        ]


def rejected_file_of(sessions: sessionmaker[Session], run_id: int) -> Path | None:
    with sessions() as session:
        row = session.get(DailyRun, run_id)
    if row is None or not row.rejected_file:
        return None
    path = Path(row.rejected_file)
    return path if path.is_file() else None


@dataclass
class ReminderRow:
    """A training reminder as `schedule --show` lists it: the mobile masked."""

    created_at: datetime
    to: str
    status: str
    key: str


def latest_reminders(sessions: sessionmaker[Session], limit: int = 10) -> list[ReminderRow]:
    with sessions() as session:
        rows = session.scalars(
            select(SmsOutbox)
            .where(SmsOutbox.purpose == REMINDER_PURPOSE)
            .order_by(SmsOutbox.created_at.desc(), SmsOutbox.id.desc())
            .limit(limit)
        ).all()
        return [
            ReminderRow(r.created_at, mask_phone(r.to_number or ""), r.status, r.key) for r in rows
        ]
