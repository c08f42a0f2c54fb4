"""What the worker counts for operators (Prometheus, served by service/metrics.py): SMS
decisions by outcome and rule, and how long each activity takes.

Labels are fixed vocabularies (outcome, the contact rule, the message's purpose, the activity
type): never a loan number, a phone number, a name or a key that contains them.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

disable_created_metrics()  # no *_created series beside every counter: Prometheus needs none
REGISTRY = CollectorRegistry(auto_describe=True)  # the worker's own; the web app has another

SMS = Counter(
    "collection_sms",
    "SMS decisions: sent (or recorded without a provider), deferred, refused (by `rule`, "
    "the contact log's rule), failed at the provider",
    ["outcome", "rule", "purpose"],
    registry=REGISTRY,
)
ACTIVITY_SECONDS = Histogram(
    "collection_activity_seconds",
    "Time in each activity attempt, by activity type and outcome (ok, error)",
    ["activity", "outcome"],
    # From a database write (ms) to an agreement render (0.2-0.5 s) and a slow provider.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)

OUTCOMES = {
    "SENT": "sent",
    "RECORDED": "recorded",
    "DEFERRED": "deferred",
    "BLOCKED": "refused",
    "FAILED": "failed",
}


def count_sms(status: str, purpose: str, rule: str = "") -> None:
    """One decision about one message (a retry that finds it decided is not counted)."""
    SMS.labels(OUTCOMES.get(status, status.lower()), rule, purpose).inc()


class ActivityTiming(Interceptor):
    """Times every activity attempt on the worker it is given to."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Timed(next)


class _Timed(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        started, outcome = time.perf_counter(), "error"
        try:
            result = await self.next.execute_activity(input)
            outcome = "ok"
            return result
        finally:
            ACTIVITY_SECONDS.labels(name, outcome).observe(time.perf_counter() - started)
