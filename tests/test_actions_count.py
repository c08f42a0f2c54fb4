"""Temporal Cloud's billable Actions counted from recorded histories (bench/actions.py), each
expected count derived by hand from the history's event types."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from bench.actions import activities_and_messages, billable_actions, case_actions

# Copies of v4 histories whose Actions were counted by hand: fixed here, so recording the
# histories again (their timing may differ by a timer) cannot change the expected counts.
HISTORIES = Path(__file__).parent / "fixtures" / "actions"


def load(name: str) -> WorkflowHistory:
    path = HISTORIES / name
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_a_case_paid_after_its_first_sms() -> None:
    # 86 events: 1 WorkflowExecutionStarted; 10 ActivityTaskStarted, each attempt 1; 1
    # TimerStarted; 7 UpsertWorkflowSearchAttributes, 2 of them only TemporalChangeVersion
    # (beside the 2 core_patch markers: neither is billed); 1 WorkflowExecutionSignaled (the
    # payment). Not billed: 14 × 3 workflow task events, 10 scheduled and 10 completed
    # activities, the timer's cancellation, the completion. 1 + 10 + 1 + 5 + 1 = 18.
    actions = billable_actions(load("test_paid_after_first_sms.json"))
    assert dict(actions) == {
        "workflow_started": 1,
        "activity_attempt": 10,
        "timer": 1,
        "search_attribute_upsert": 5,
        "signal": 1,
    }
    assert sum(actions.values()) == 18


def test_a_case_through_visit_plan_signature_and_payments() -> None:
    # 1 started; 24 activities at attempt 1; 6 timers started (5 later cancelled: still
    # billed); 19 upserts less 3 TemporalChangeVersion-only; 3 signals (payments); 3 Updates
    # accepted (visit report, plan, signature; their 3 completions are not billed).
    # 1 + 24 + 6 + 16 + 3 + 3 = 53.
    actions = billable_actions(load("test_visit_plan_signature_all_installments_paid.json"))
    assert sum(actions.values()) == 53
    assert (actions["timer"], actions["search_attribute_upsert"], actions["update"]) == (6, 16, 3)
    assert activities_and_messages(actions) == (24, 6)


def test_retries_continue_as_new_and_local_activities() -> None:
    history = load("test_paid_after_first_sms.json")
    events = list(history.events)
    # The first activity ended on its third attempt: 3 Actions, not 1.
    started = next(e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    started.activity_task_started_event_attributes.attempt = 3
    # Two local activities in one workflow task are one Action; a third in another, one more.
    markers = []
    for task in (7, 7, 12):
        marker = HistoryEvent(event_type=EventType.EVENT_TYPE_MARKER_RECORDED)
        marker.marker_recorded_event_attributes.marker_name = "core_local_activity"
        marker.marker_recorded_event_attributes.workflow_task_completed_event_id = task
        markers.append(marker)
    actions = billable_actions(events + markers)
    assert actions["activity_attempt"] == 12 and actions["local_activities"] == 2
    # A case of two runs (continue-as-new): each run's start is billed.
    runs = [load("test_a_24_installment_case_keeps_every_run_short.first-run.json")]
    runs.append(load("test_a_24_installment_case_keeps_every_run_short.json"))
    both = case_actions(runs)
    assert both["workflow_started"] == 2
    assert sum(both.values()) == sum(sum(billable_actions(r).values()) for r in runs)
