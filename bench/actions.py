"""Section 7, actions: what a case costs on Temporal Cloud, in billable Actions counted from
its histories, against the trivial workflow doing the same activities and messages.

Temporal Cloud bills Actions (docs.temporal.io/cloud/actions). Those an Event History shows:

  workflow started (a client start, each continue-as-new) ....... 1 per run
  activity started or retried ..................................... 1 per attempt
  timer started ................................................... 1
  search attribute upsert (not TemporalChangeVersion alone,
    the patch markers' own; several attributes at once: one) ...... 1
  signal received ................................................. 1
  Update accepted ................................................. 1
  local activities (all of one workflow task) ..................... 1 per workflow task
  side effect, child workflow (2), Nexus operation, options updated  as documented

Not in a history, so not counted here (and not done by our cases' lifecycle, but by the
people around it): Queries (the status Query of every page view), rejected Updates, activity
heartbeats (ours send none), Schedules (the daily run: 3 a day per cooperative), exports.
Patch markers (`workflow.patched`) are not Actions.
"""

from __future__ import annotations

import time
from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from bench.harness import database
from bench.trivial import TrivialInput, TrivialWorkflow
from bench.trivial import worker as trivial_worker

# Temporal Cloud's Pay-As-You-Go list price for the first 5M Actions of a month (then $45,
# $40, … per million by volume), plus the plan (Essentials: the greater of $100 or 5% of
# usage) and storage: docs.temporal.io/cloud/pricing, the pricing in force since February
# 2025 for existing accounts (January for new ones), as read in November 2026.
LIST_PRICE_PER_MILLION_USD = 50.0

E = EventType
CHANGE_VERSION = "TemporalChangeVersion"
LOCAL_ACTIVITY_MARKERS = ("core_local_activity", "LocalActivity")
SIDE_EFFECT_MARKERS = ("SideEffect", "MutableSideEffect")
# One Action each, by kind.
ONE_EACH = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow_started",
    E.EVENT_TYPE_TIMER_STARTED: "timer",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options_updated",
    E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: "nexus",
    E.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED: "nexus",
}


KINDS = (
    "workflow_started",
    "activity_attempt",
    "timer",
    "search_attribute_upsert",
    "signal",
    "update",
    "local_activities",
    "side_effect",
    "child_workflow",
    "nexus",
    "options_updated",
)


def billable_actions(history: WorkflowHistory | list[HistoryEvent]) -> Counter[str]:
    """Temporal Cloud's billable Actions in one run's history, by kind (see the module)."""
    events = history.events if isinstance(history, WorkflowHistory) else history
    actions: Counter[str] = Counter()
    local_activity_tasks: set[int] = set()
    for event in events:
        kind = ONE_EACH.get(event.event_type)
        if kind is not None:
            actions[kind] += 1
        elif event.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Written once, when the activity ends, with the attempt it ended on.
            actions["activity_attempt"] += max(
                1, event.activity_task_started_event_attributes.attempt
            )
        elif event.event_type == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {CHANGE_VERSION}:
                actions["search_attribute_upsert"] += 1
        elif event.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            actions["child_workflow"] += 2  # spawned, and executed
        elif event.event_type == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name in SIDE_EFFECT_MARKERS:
                actions["side_effect"] += 1
            elif marker.marker_name in LOCAL_ACTIVITY_MARKERS:
                local_activity_tasks.add(marker.workflow_task_completed_event_id)
    if local_activity_tasks:
        actions["local_activities"] = len(local_activity_tasks)
    return actions


def cost_per_10k_cases(actions_per_case: float) -> float:
    """The Actions of 10,000 cases at the list price (USD)."""
    return 10_000 * actions_per_case * LIST_PRICE_PER_MILLION_USD / 1_000_000


def case_actions(histories: list[WorkflowHistory]) -> Counter[str]:
    """A case's Actions over all its runs."""
    return sum((billable_actions(h) for h in histories), Counter())


def activities_and_messages(actions: Counter[str]) -> tuple[int, int]:
    """What the baseline repeats: the case's activities (attempts) and its messages."""
    return actions["activity_attempt"], actions["signal"] + actions["update"]


async def bench_actions(installments: int = 12, after_reminder: bool = False) -> dict[str, float]:
    """One `installments`-installment case on the time-skipping server (contact, visit,
    plan, signature, every installment paid: before its reminder, or with `after_reminder`
    after it), and the trivial workflow with as many
    activities and signals in one run, on the same server; each counted from its history."""
    from bench.skipping import installment_case, skipping_env
    from tests.harness import run_histories, running_worker

    env = await skipping_env()
    try:
        with database("sqlite") as (_url, sessions, tmp):
            async with running_worker(env, sessions, tmp / "data") as h:
                t0 = time.perf_counter()
                handle = await installment_case(h, installments, after_reminder)
                runs = await run_histories(handle)
                ours = case_actions(runs)
                wall = time.perf_counter() - t0
        acts, messages = activities_and_messages(ours)
        tq = f"trivial-actions-{installments}"
        async with trivial_worker(env.client, tq):
            trivial = await env.client.start_workflow(
                TrivialWorkflow.run, TrivialInput(acts, messages), id=tq, task_queue=tq
            )
            for _ in range(messages):
                await trivial.signal(TrivialWorkflow.poke)
            await trivial.result()
            baseline = billable_actions(await trivial.fetch_history())
    finally:
        await env.shutdown()
    total, base = sum(ours.values()), sum(baseline.values())
    return {
        "actions_per_case": total,
        "actions_baseline": base,
        "actions_ratio": total / base,
        "actions_runs": len(runs),
        "actions_wall_s": wall,
        **{f"actions_{kind}": ours[kind] for kind in KINDS},
    }
