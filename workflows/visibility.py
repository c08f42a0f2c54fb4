"""The case's search attributes (stage, branch, collector, risk, days past due, outstanding,
next action; with collection-v4 the overdue date instead of days past due): what supervisors
filter on in Temporal visibility. No personal data.

Released code upserted at every change; with PATCH_V2 a change only marks them dirty and
they are upserted once before the workflow next waits or calls an activity; with PATCH_V5
once the case is idle (`watch`), so an activity chain and the wait after it give one upsert,
except that a new stage is upserted before the next activity (`before_activity`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow

from workflows.versions import Versions

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa

KEYS = (
    sa.STAGE,
    sa.BRANCH,
    sa.COLLECTOR,
    sa.RISK_TIER,
    sa.DAYS_PAST_DUE,
    sa.OUTSTANDING_FEN,
    sa.NEXT_ACTION_AT,
)
KEYS_V4 = (*KEYS, sa.OVERDUE_SINCE, sa.STRATEGY)  # DaysPastDue unset, OverdueSince set


class Visibility:
    def __init__(self, values: Callable[[], tuple[Any, ...]], versions: Versions) -> None:
        self._values = values  # the attributes' current values, in KEYS (or KEYS_V4) order
        self._versions = versions
        self._published: tuple[Any, ...] | None = None
        self._dirty = False

    def from_start(self) -> None:
        """A new case (PATCH_V5) holds what its starter set (stage and branch): unchanged
        values are not upserted again."""
        attrs = workflow.info().typed_search_attributes
        keys = KEYS_V4 if len(self._values()) == len(KEYS_V4) else KEYS
        self._published = tuple(attrs.get(key) for key in keys)

    async def watch(self, idle: Callable[[], bool]) -> None:
        """PATCH_V5, beside the main loop for the run's life: the changes are upserted once
        `idle()` (no activity in flight) and the workflow task's other coroutines have made
        theirs (one more pass of its conditions). No command while nothing changed."""
        while True:
            await workflow.wait_condition(lambda: self._dirty and idle())
            await workflow.wait_condition(lambda: True)  # the rest of this task's changes
            if self._dirty and idle():
                self._dirty = False
                self._upsert()

    def inherit(self) -> None:
        """A continued run starts with its predecessor's attributes (PATCH_V2)."""
        self._published = self._values()

    def publish(self) -> None:
        """Search attributes changed: upserted now (released code) or, with the patch, once
        before the workflow next waits, however many changes it made meanwhile."""
        if self._versions.v2():
            self._dirty = True
        else:
            self._upsert()

    def flush(self, final: bool = False) -> None:
        """Upsert pending changes now (released code, before a wait or an activity). With
        PATCH_V5 only before the run ends (`final`): `watch` upserts the others."""
        if self._versions.v5() and not final:
            return
        if self._dirty:
            self._dirty = False
            self._upsert()

    def before_activity(self) -> None:
        """PATCH_V5, before an activity is scheduled: a new stage is upserted now, with the
        other pending changes, not once the case is idle. Activities retry without end (an
        SMS provider's outage can hold a send for hours), and a supervisor filtering on the
        stage must find the case in it meanwhile. One upsert per stage change: the rest
        still wait for `watch`."""
        if not (self._dirty and self._versions.v5()):
            return
        if self._published is not None and self._values()[0] == self._published[0]:
            return  # sa.STAGE, the first of KEYS, as published
        self._dirty = False
        self._upsert()

    def _upsert(self) -> None:
        """Upsert the search attributes when one of them changed: all of them, or with
        collection-v6 only those that changed (the server keeps the others: the same values
        in visibility, a fraction of the bytes in the history)."""
        values = self._values()
        if values == self._published:
            return
        before, self._published = self._published, values
        keys = KEYS_V4 if len(values) == len(KEYS_V4) else KEYS
        pairs = list(zip(keys, values, strict=True))
        if before is not None and len(before) == len(values) and self._versions.v6():
            pairs = [(k, v) for (k, v), was in zip(pairs, before, strict=True) if v != was]
        workflow.upsert_search_attributes(
            [
                key.value_unset() if value is None else key.value_set(value)  # type: ignore[attr-defined]
                for key, value in pairs
            ]
        )
