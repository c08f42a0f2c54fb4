"""DailyFeedRunWorkflow: the back office's daily run, started by a Temporal Schedule
(`cli.main schedule`): pick the newest export in the drop folder, run the intake and that
day's payment feed, record the run report. All I/O is in activities/daily_run.py (by name);
this only orders the steps. A run that fails still ends with its report written (FAILED,
with the reason); the workflow returns the report.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.daily_run import (
        WORKFLOW_TYPE,
        DailyRunInput,
        DailyRunResult,
        FeedRequest,
        PickedRun,
        RunFinish,
        RunStart,
        RunStatus,
    )

# Set by the Schedule on each workflow it starts: the time the run was due (a caught-up run
# starts later than that).
SCHEDULED_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")

# A database or server outage is retried for about an hour; a file that cannot be read is
# not retried at all (MalformedFile), it is recorded as FAILED.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=10,
    non_retryable_error_types=["MalformedFile", "InvalidInput", "NotFound"],
)
SHORT = timedelta(minutes=2)  # pick (hashing the file) and the report
FEED = timedelta(hours=2)  # a county's export: validation, one transaction, cases started
HEARTBEAT = timedelta(minutes=5)  # the intake heartbeats for every case it starts


def _reason(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or error)


@workflow.defn(name=WORKFLOW_TYPE)
class DailyFeedRunWorkflow:
    @workflow.run
    async def run(self, run: DailyRunInput) -> DailyRunResult:
        info = workflow.info()
        scheduled = info.typed_search_attributes.get(SCHEDULED_TIME) or workflow.now()
        run_key = f"{info.workflow_id}/{info.run_id}"
        picked = await workflow.execute_activity(
            "daily_pick_export",
            RunStart(run_key, scheduled, run),
            result_type=PickedRun,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        error = ""
        # The day's payments are posted even when the export was processed before (it came
        # late, or core banking did not refresh it): they do not depend on it.
        if picked.status in (RunStatus.RUNNING, RunStatus.ALREADY_PROCESSED):
            step = "intake"
            try:
                if picked.status == RunStatus.RUNNING:
                    await workflow.execute_activity(
                        "daily_run_intake",
                        FeedRequest(run_key, picked.export_path, picked.sha256, run.profile),
                        start_to_close_timeout=FEED,
                        heartbeat_timeout=HEARTBEAT,
                        retry_policy=RETRY,
                    )
                if picked.payments_path:
                    step = "payments"
                    await workflow.execute_activity(
                        "daily_run_payments",
                        FeedRequest(run_key, picked.payments_path, picked.payments_sha256),
                        start_to_close_timeout=FEED,
                        retry_policy=RETRY,
                    )
            except ActivityError as e:
                error = f"{step}: {_reason(e)}"
        return await workflow.execute_activity(
            "daily_finish_run",
            RunFinish(run_key, error),
            result_type=DailyRunResult,
            start_to_close_timeout=SHORT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
