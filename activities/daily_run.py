"""The daily feed run's activities: pick the newest export from the drop folder, run the
intake and the payment feed (the functions `cli.main intake` and `payments` use), and keep the
run report (`daily_runs`).

Built by the worker with its Temporal client (the intake starts cases, the payment feed
signals them), its task queue and the configured policy. The feeds live in `feeds/`, above
this layer: they are imported inside the activities, which are their scheduled entry point.

Idempotent: the report row is keyed by the workflow run; a file is processed by one run only
(`processed_sha256` unique), later runs on the same content record ALREADY_PROCESSED and start
nothing; the intake itself attaches to running cases and the payment feed counts a reference
once. A file that cannot be read as a feed is a non-retryable `MalformedFile`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.clock import activity_now
from db.models import DailyRun
from db.repository import insert_ignore
from domain.daily_run import (
    DailyRunResult,
    FeedRequest,
    PickedRun,
    RunFinish,
    RunStart,
    RunStatus,
    is_export,
    is_payments,
    names_day,
    patterns,
)
from domain.policy import Policy
from domain.timerules import local_date

log = logging.getLogger(__name__)

PICK_EXPORT = "daily_pick_export"
RUN_INTAKE = "daily_run_intake"
RUN_PAYMENTS = "daily_run_payments"
FINISH_RUN = "daily_finish_run"


def malformed(message: str) -> ApplicationError:
    return ApplicationError(message, type="MalformedFile", non_retryable=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def newest(files: list[Path]) -> Path | None:
    """The newest by modification time; the later name on a tie."""
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


class DailyRunActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: Client,
        task_queue: str,
        policy: Policy,
        rejected_dir: Path,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.task_queue = task_queue
        self.policy = policy
        self.rejected_dir = rejected_dir

    def _today(self) -> date:
        return local_date(activity_now(), self.policy)

    def _rejected(self, path: Path, sha256: str) -> Path:
        """The rejected rows of a run go to the data folder, not into the drop folder."""
        from feeds.csv_files import rejected_path

        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        return rejected_path(self.rejected_dir / f"{sha256[:12]}-{path.name}")

    # ------------------------------------------------------------------ pick

    @activity.defn(name=PICK_EXPORT)
    def pick_export(self, start: RunStart) -> PickedRun:
        """The newest export in the folder (and that day's payment file), its report row,
        and the claim on its content. A retry returns what the first attempt picked."""
        with self.sessions.begin() as session:
            insert_ignore(
                session,
                DailyRun,
                dict(
                    run_key=start.run_key,
                    scheduled_at=start.scheduled_at,
                    export_dir=start.run.export_dir,
                    file_name="",
                    file_sha256="",
                    rows_read=0,
                    cases_started=0,
                    already_running=0,
                    debts_updated=0,
                    rejected=0,
                    rejected_file="",
                    payments_file="",
                    payments_sha256="",
                    payments_signalled=0,
                    payments_rejected=0,
                    payments_rejected_file="",
                    status=RunStatus.RUNNING,
                    error="",
                ),
                ["run_key"],
            )
            row = self._row(session, start.run_key)
            if row.file_sha256 or row.status != RunStatus.RUNNING:
                return self._picked(row, start)
        found = self._find(start)
        if isinstance(found, str):
            self._set(start.run_key, status=RunStatus.FAILED, error=found)
            return PickedRun(RunStatus.FAILED, error=found)
        export, payments = found
        values: dict[str, object] = dict(file_name=export.name, file_sha256=sha256_of(export))
        if payments is not None:
            values.update(payments_file=payments.name, payments_sha256=sha256_of(payments))
        try:
            with self.sessions.begin() as session:
                row = self._row(session, start.run_key)
                for k, v in values.items():
                    setattr(row, k, v)
                self._claim(session, row)
                return self._picked(row, start)
        except IntegrityError:
            # Another run claimed the same content at the same moment: it processes it.
            with self.sessions.begin() as session:
                row = self._row(session, start.run_key)
                for k, v in values.items():
                    setattr(row, k, v)
                self._claim(session, row)
                return self._picked(row, start)

    def _find(self, start: RunStart) -> tuple[Path, Path | None] | str:
        run = start.run
        export_dir = Path(run.export_dir)
        payments_dir = Path(run.payments_dir or run.export_dir)
        export_globs, payment_globs = patterns(run.export_pattern), patterns(run.payments_pattern)
        if not export_dir.is_dir():
            return f"导出文件夹不存在 the export folder {export_dir} does not exist"
        exports = [
            p
            for p in export_dir.iterdir()
            if p.is_file() and is_export(p.name, export_globs, payment_globs)
        ]
        export = newest(exports)
        if export is None:
            return (
                f"没有导出文件 no export in {export_dir} matching {run.export_pattern} "
                "(payment and rejected-rows files are not exports)"
            )
        day = local_date(start.scheduled_at, self.policy)
        payments = None
        if payments_dir.is_dir():
            # The run's day and the day before (a file written late in the evening, after
            # that day's run): the oldest one no earlier run posted. Posting is idempotent by
            # reference, so a file posted twice counts nothing twice.
            zone = self.policy.timezone_info()
            days = (day, day - timedelta(days=1))
            candidates = [
                p
                for p in payments_dir.iterdir()
                if p.is_file()
                and p != export
                and is_payments(p.name, payment_globs)
                and (
                    any(names_day(p.name, d) for d in days)
                    or datetime.fromtimestamp(p.stat().st_mtime, zone).date() in days
                )
            ]
            posted = self._posted_payments()
            unposted = [p for p in candidates if sha256_of(p) not in posted]
            payments = min(unposted, key=lambda p: p.stat().st_mtime, default=None)
        return export, payments

    def _posted_payments(self) -> set[str]:
        """The payment files (by content) an earlier run posted."""
        with self.sessions() as session:
            return set(
                session.scalars(
                    select(DailyRun.payments_sha256).where(
                        DailyRun.payments_sha256 != "",
                        DailyRun.status != RunStatus.FAILED,
                        DailyRun.status != RunStatus.RUNNING,
                    )
                )
            )

    def _claim(self, session: Session, row: DailyRun) -> None:
        """This run processes the file unless another run did (or does) already; a run that
        failed on it gives the claim up, so the same file can be tried again."""
        other = session.scalars(
            select(DailyRun).where(
                DailyRun.processed_sha256 == row.file_sha256, DailyRun.id != row.id
            )
        ).one_or_none()
        if other is not None and other.status != RunStatus.FAILED:
            row.status = RunStatus.ALREADY_PROCESSED
            row.finished_at = datetime.now(UTC)
            row.error = (
                f"已处理过 this file's content (SHA-256 {row.file_sha256[:12]}…) was processed "
                f"by the run of {other.scheduled_at:%Y-%m-%d %H:%M} UTC ({other.file_name})"
            )
            return
        if other is not None:
            other.processed_sha256 = None
            session.flush()
        row.processed_sha256 = row.file_sha256

    def _picked(self, row: DailyRun, start: RunStart) -> PickedRun:
        payments_dir = Path(start.run.payments_dir or start.run.export_dir)
        return PickedRun(
            row.status,
            str(Path(start.run.export_dir) / row.file_name) if row.file_name else "",
            row.file_sha256,
            str(payments_dir / row.payments_file) if row.payments_file else "",
            row.payments_sha256,
            row.error,
        )

    # ------------------------------------------------------------------ the feeds

    def _checked(self, request: FeedRequest) -> Path:
        path = Path(request.path)
        try:
            actual = sha256_of(path)
        except OSError as e:
            raise malformed(f"{path.name}: cannot be read ({e.strerror or e})") from None
        if actual != request.sha256:
            raise malformed(
                f"{path.name} changed after it was picked (SHA-256 {request.sha256[:12]}… → "
                f"{actual[:12]}…); the next run takes it"
            )
        return path

    @activity.defn(name=RUN_INTAKE)
    async def run_intake(self, request: FeedRequest) -> None:
        """`feeds.loans.intake` on the export, as `cli.main intake` runs it; the counts and the
        rejected-rows file into the report. Cases already running are attached to."""
        from feeds.csv_files import FileError
        from feeds.loans import intake

        path = self._checked(request)
        # Only when given: the intake's mapping profile (`intake --profile`).
        mapping = {"profile": Path(request.profile)} if request.profile else {}
        if request.profile and not Path(request.profile).is_file():
            raise malformed(f"the mapping profile {request.profile} does not exist")
        # The export's date is the run's scheduled day (a run caught up after midnight, or
        # retried, still dates the balances right): running cases count the payments dated
        # before it as booked in them.
        with self.sessions() as session:
            as_of = local_date(self._row(session, request.run_key).scheduled_at, self.policy)
        try:
            report = await intake(
                **mapping,
                path=path,
                sessions=self.sessions,
                client=self.client,
                task_queue=self.task_queue,
                policy=self.policy,
                today=self._today(),
                started_by="daily-run",
                progress=activity.heartbeat,
                rejected=self._rejected(path, request.sha256),
                as_of=as_of,
            )
        except FileError as e:  # a ProfileError too
            raise malformed(f"{path.name}: {e}") from None
        except DataError as e:  # a value the database cannot hold: retrying cannot mend it
            raise malformed(f"{path.name}: the database refused a row ({e.orig!s:.200})") from None
        self._set(
            request.run_key,
            rows_read=report.rows,
            cases_started=report.started,
            already_running=report.attached,
            debts_updated=len(report.debts),
            rejected=len({e.row for e in report.errors}),
            rejected_file=str(report.rejected_file or ""),
        )

    @activity.defn(name=RUN_PAYMENTS)
    async def run_payments(self, request: FeedRequest) -> None:
        """`feeds.payments.post_payments` on that day's payment file (each reference once)."""
        from feeds.csv_files import FileError
        from feeds.payments import post_payments

        path = self._checked(request)
        try:
            report = await post_payments(
                path=path,
                sessions=self.sessions,
                client=self.client,
                today=self._today(),
                policy=self.policy,
                rejected=self._rejected(path, request.sha256),
            )
        except FileError as e:
            raise malformed(f"{path.name}: {e}") from None
        self._set(
            request.run_key,
            payments_signalled=report.signalled,
            payments_rejected=len({e.row for e in report.errors}),
            payments_rejected_file=str(report.rejected_file or ""),
        )

    # ------------------------------------------------------------------ the report

    @activity.defn(name=FINISH_RUN)
    def finish_run(self, finish: RunFinish) -> DailyRunResult:
        """The outcome: FAILED with the error, PARTIAL when rows were rejected, else SUCCESS.
        A report already final (ALREADY_PROCESSED, FAILED at the pick) stays as it is."""
        with self.sessions.begin() as session:
            row = self._row(session, finish.run_key)
            if row.status == RunStatus.ALREADY_PROCESSED and finish.error:
                # The export was processed before, but this run's payment file failed: a
                # failed run, whose payment file the next run takes again.
                row.status, row.error = RunStatus.FAILED, f"{row.error}; {finish.error}"
                row.finished_at = datetime.now(UTC)
            elif row.status == RunStatus.RUNNING:
                if finish.error:
                    row.status, row.error = RunStatus.FAILED, finish.error
                elif row.rejected or row.payments_rejected:
                    row.status = RunStatus.PARTIAL
                else:
                    row.status = RunStatus.SUCCESS
                row.finished_at = datetime.now(UTC)
            log.info("daily run %s: %s %s", row.run_key, row.status, row.file_name)
            return DailyRunResult(
                row.run_key,
                row.status,
                row.file_name,
                row.file_sha256,
                row.rows_read,
                row.cases_started,
                row.already_running,
                row.rejected,
                row.rejected_file,
                row.payments_file,
                row.payments_signalled,
                row.payments_rejected,
                row.error,
            )

    def _row(self, session: Session, run_key: str) -> DailyRun:
        return session.scalars(select(DailyRun).where(DailyRun.run_key == run_key)).one()

    def _set(self, run_key: str, **values: object) -> None:
        with self.sessions.begin() as session:
            session.execute(update(DailyRun).where(DailyRun.run_key == run_key).values(**values))
