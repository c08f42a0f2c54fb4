"""TrainingReminderWorkflow: the supervisors' daily safety-training reminder, started every
day by its Temporal Schedule (`cli.main schedule --training-reminders`). The reminder is for
the day of the Schedule's time (a run caught up after midnight still reminds for its day).

One activity lists the day's reminders (supervisors by user id, no phone numbers), then one
activity per supervisor sends theirs (a few at a time), each with its own timeout and
retries: a supervisor whose text keeps failing holds up no other, and a timed-out attempt
never sends beside its retry (the outbox's claim, activities/sms.py `send_staff`). Every
retry ends within the run's execution timeout (the Schedule's), so the result reports each
branch: texted, failed, or not reached.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.training import (
        ALREADY_SENT,
        FAILED,
        REMINDER_WORKFLOW_TYPE,
        SENT,
        BranchReminder,
        DueReminder,
        ReminderInput,
        ReminderPlan,
        ReminderRequest,
        ReminderResult,
        ReminderSent,
    )

from workflows.daily_run import SCHEDULED_TIME

LIST_REMINDERS = "list_training_reminders"  # activities/training_reminders.py
SEND_REMINDER = "send_training_reminder"
# A database outage is retried for a quarter of an hour, one provider's for ten minutes per
# text; at most SENDING texts at once. With the Schedule's two hours (service/daily_schedule.py)
# that is room for 100 supervisors whose texts all fail to the end; a run given less time
# (or more supervisors) stops starting texts it could not finish, and says so per branch.
LIST_BUDGET = timedelta(minutes=15)
SEND_ATTEMPT = timedelta(seconds=60)  # one call to the provider (and a lookup before it)
SEND_BUDGET = timedelta(minutes=10)
SENDING = 10
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
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
        plan: ReminderPlan = await workflow.execute_activity(
            LIST_REMINDERS,
            ReminderRequest(at),
            result_type=ReminderPlan,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=max(self._budget(LIST_BUDGET), timedelta(minutes=1)),
            retry_policy=RETRY,
        )
        gate = asyncio.Semaphore(SENDING)
        outcomes = await asyncio.gather(*(self._send(r, gate) for r in plan.reminders))
        return _result(plan, list(zip(plan.reminders, outcomes, strict=True)))

    def _budget(self, wanted: timedelta) -> timedelta:
        """`wanted`, or what is left of the run's execution timeout (less a minute)."""
        info = workflow.info()
        if info.execution_timeout is None:
            return wanted
        end = info.workflow_start_time + info.execution_timeout - timedelta(minutes=1)
        return min(wanted, end - workflow.now())

    async def _send(self, reminder: DueReminder, gate: asyncio.Semaphore) -> str:
        async with gate:
            budget = self._budget(SEND_BUDGET)
            if budget < SEND_ATTEMPT:  # could not finish: not started at all
                workflow.logger.warning("training reminder %s: out of time", reminder.key)
                return FAILED
            try:
                sent: ReminderSent = await workflow.execute_activity(
                    SEND_REMINDER,
                    reminder,
                    result_type=ReminderSent,
                    start_to_close_timeout=SEND_ATTEMPT,
                    schedule_to_close_timeout=budget,
                    retry_policy=RETRY,
                )
            except ActivityError as error:
                cause = error.cause.message if error.cause else error.message
                workflow.logger.warning("training reminder %s failed: %s", reminder.key, cause)
                return FAILED
            return sent.outcome


def _result(plan: ReminderPlan, outcomes: list[tuple[DueReminder, str]]) -> ReminderResult:
    result = ReminderResult(plan.day, collectors=plan.collectors)
    branches = {b: BranchReminder(b, n) for b, n in sorted(plan.due.items())}
    for reminder, outcome in outcomes:
        result.texts_sent += outcome == SENT
        result.already_sent += outcome == ALREADY_SENT
        result.failed += outcome == FAILED
        for b in reminder.branches:
            branch = branches[b]
            if outcome in (SENT, ALREADY_SENT):
                branch.sent, branch.reached = branch.sent + 1, True
            elif outcome == FAILED:
                branch.failed += 1
    result.branches = list(branches.values())
    result.unreached_branches = [b.branch for b in result.branches if not b.reached]
    for b in result.unreached_branches:
        workflow.logger.warning("training reminder %s: no supervisor of %s texted", plan.day, b)
    return result
