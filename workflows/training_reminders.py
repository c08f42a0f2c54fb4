"""TrainingReminderWorkflow: the supervisors' daily safety-training reminder, started every
day by its Temporal Schedule (`cli.main schedule --training-reminders`). The reminder is for
the day of the Schedule's time (a run caught up after midnight still reminds for its day);
the activity (activities/training_reminders.py) texts each supervisor once that day.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.training import (
        REMINDER_WORKFLOW_TYPE,
        ReminderInput,
        ReminderRequest,
        ReminderResult,
    )

from workflows.daily_run import SCHEDULED_TIME

# A database or SMS provider outage is retried for about an hour; the texts already sent
# are not sent again (the outbox's key).
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=10,
    non_retryable_error_types=["InvalidInput"],
)


@workflow.defn(name=REMINDER_WORKFLOW_TYPE)
class TrainingReminderWorkflow:
    @workflow.run
    async def run(self, reminder: ReminderInput) -> ReminderResult:
        at = (
            reminder.at
            or workflow.info().typed_search_attributes.get(SCHEDULED_TIME)
            or workflow.now()
        )
        return await workflow.execute_activity(
            "send_training_reminders",
            ReminderRequest(at),
            result_type=ReminderResult,
            start_to_close_timeout=timedelta(minutes=10),  # a text per supervisor
            retry_policy=RETRY,
        )
