"""One case at run time: its state and the effects every stage shares (activities, notes,
stage changes, tasks, assignment, deadline waits). Deterministic: time from workflow.now(),
all I/O through activities named by string, so no activity module is imported here.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy

from workflows.versions import Versions
from workflows.visibility import Visibility

with workflow.unsafe.imports_passed_through():
    from domain.case_rules import (
        INTERACTIVE_PRIORITY,
        closing_decision,
        outstanding,
        sms_priority,
    )
    from domain.models import (
        AgreementRequest,
        AssessRequest,
        AssignRequest,
        CaseState,
        DeliveryFailure,
        HistoryEntry,
        SmsRequest,
        TaskRequest,
        Transition,
        VisitRecord,
    )
    from domain.names import ACTIVITY_ROLES, case_key, role_queue
    from domain.names import Activities as A
    from domain.policy import Policy
    from domain.policy_wire import PolicyDelta, policy_delta
    from domain.promises import PROMISE_STAGES, open_promise
    from domain.rulebook import contact_lost
    from domain.stages import CLOSED_STAGES, Stage, TaskKind
    from domain.timerules import days_past_due, start_of_local_day

ACTIVITY_TIMEOUT = timedelta(seconds=60)
# Activities retry until they succeed (a database outage must not fail a case); errors that
# retrying cannot mend are raised as non-retryable ApplicationErrors by the activities.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["InvalidInput", "NotFound"],
)
HISTORY_KEPT = 100  # entries in the workflow state; the full audit trail is in the database
# The activity inputs that carry the case's policy (collection-v6: as `rules`).
POLICY_INPUTS = (AssessRequest, SmsRequest, VisitRecord, AgreementRequest)


# collection-v6: per stage, the wait the case is about to start (its next action and
# deadline) as the stage's code would compute it now, or None when it cannot say: filled in
# by workflows/collection.py (the stages import this module).
EXPECTED: dict[Stage, Callable[[Case], tuple[str, datetime] | None]] = {}


class Interrupted(Exception):
    """A wait was cut short by a payment in full, a close request or a hardship hold."""


class Case:
    def __init__(self, state: CaseState) -> None:
        self.s = state
        self.versions = Versions()
        self.visibility = Visibility(self.attribute_values, self.versions)
        self._assign_lock = asyncio.Lock()
        # The main loop waits for an open promise (workflows/promises.py); meanwhile the
        # promise does not interrupt the wait it is itself in.
        self.awaiting_promise = False
        self.acting = 0  # activities in flight (PATCH_V5: search attributes wait for none)
        # PATCH_V5: the timer of the last wait, kept for a next wait with the same deadline.
        self._alarm: asyncio.Task[None] | None = None
        self._alarm_at: datetime | None = None
        self._alarm_held = False  # a wait is on the alarm now
        # collection-v6: the last policy sent to an activity, and its changes (Case.act).
        self._delta: tuple[Policy | None, PolicyDelta | None] = (None, None)

    # ------------------------------------------------------------------ derived facts

    def outstanding(self) -> int | None:
        return outstanding(self.s.debt_fen, self.s.paid_fen)

    def outstanding_at(self) -> datetime | None:
        """collection-v5: the workflow time as of which an activity writes the case's
        outstanding to the database (None in released runs: nothing written). Later than any
        given before, so records issued in one workflow task are ordered as issued."""
        if not self.versions.v5():
            return None
        at, last = workflow.now(), self.s.outstanding_stamp
        if last is not None and at <= last:
            at = last + timedelta(microseconds=1)
        self.s.outstanding_stamp = at
        return at

    def show_outstanding(self) -> None:
        """collection-v5: the OutstandingFen search attribute takes the current amount (at a
        stage change and when the case ends; payments in between are in the database)."""
        if self.s.outstanding_shown != self.outstanding():
            self.s.outstanding_shown = self.outstanding()
            self.visibility.publish()

    def dpd(self) -> int | None:
        s = self.s
        if s.overdue_since is None:
            return None
        return days_past_due(s.overdue_since, workflow.now(), s.policy)

    def team_size(self) -> int:
        """Collectors required at a visit: the rule set's team (collection-v4), else the
        released rule (a team of two for risky cases only); after a hostile visit at least the
        policy's hostile team until a supervisor lifts it."""
        s = self.s
        team = s.team_size or (2 if s.team_required else 1)
        if s.hostile_team:
            team = max(team, s.policy.hostile_visit_team_size)
        return team

    def contact_lost(self) -> bool:
        return contact_lost(self.s.has_phone, self.s.failures_in_row, self.s.policy)

    def closing_decision(self) -> tuple[Stage, str, str] | None:
        s = self.s
        decision = closing_decision(s.debt_fen, s.paid_fen, s.close_request)
        if decision and decision[0] == Stage.PAID_IN_FULL and s.payments_pending:
            return None  # paid in full once the payments' records say they are this loan's
        return decision

    def interrupted(self) -> bool:
        s = self.s
        if self.closing_decision() is not None:
            return True
        if s.promises and not self.awaiting_promise and open_promise(s) is not None:
            return s.stage in PROMISE_STAGES  # a promise pauses the stage's next steps
        return s.hold is not None and s.stage != Stage.ON_HOLD

    def attribute_values(self) -> tuple[Any, ...]:
        """The search attributes' values, in visibility.KEYS order."""
        s = self.s
        values = (
            s.stage.value,
            s.branch,
            s.collectors[0] if s.collectors else None,
            s.risk_tier or None,
            None if s.overdue_attribute else self.dpd(),
            s.outstanding_shown if self.versions.v5() else self.outstanding(),
            s.next_action_shown if self.versions.v6() else s.next_action_at,
        )
        if not s.overdue_attribute:
            return values
        since = s.overdue_since
        arm = f"{s.segment}/{s.strategy_arm}" if s.strategy_arm else None
        return (*values, None if since is None else start_of_local_day(since, s.policy), arm)

    # ------------------------------------------------------------------ waiting

    async def wait(
        self, done: Callable[[], bool], until: datetime, action: str, interruptible: bool = True
    ) -> bool:
        """Wait until `done()` or `until`; True if done. Raises Interrupted when cut short.

        A watcher's wait (`interruptible=False`: the complaint outcome SMS) is neither cut
        short by the case's stage steps nor shown as the case's next action."""
        if not interruptible:
            remaining = max(until - workflow.now(), timedelta(milliseconds=1))
            if not done():  # a timer always (as above): never a busy loop
                try:
                    await workflow.wait_condition(done, timeout=remaining)
                except TimeoutError:
                    pass
            return done()
        self.set_next_action(action, until)
        remaining = until - workflow.now()
        # Whether a timer starts must not depend on the exact time: after a worker crash left
        # a workflow task timed out, the SDK's clock on first execution and on a later replay
        # can differ by seconds, and a deadline just passed would start a timer in one and not
        # in the other (a non-determinism error; tests/test_faults.py). So a timer always starts.
        timer_always = self.versions.v2()
        due = remaining > timedelta(0) or timer_always
        if due and not done() and not self.interrupted() and self.versions.v5():
            # One wait at a time keeps the alarm (the main loop's); another, were there one,
            # would have its own timer rather than cancel the other's.
            shared = not self._alarm_held
            alarm = self._alarm_until(until) if shared else self._timer(until)
            self._alarm_held = self._alarm_held or shared
            ringing = [alarm]
            try:
                while True:
                    await workflow.wait_condition(
                        lambda: done() or self.interrupted() or ringing[0].done()
                    )
                    if done() or self.interrupted() or not shared or not self.versions.v6():
                        break
                    if self._alarm_at == until:
                        break
                    # collection-v6: an earlier deadline's alarm kept for this wait fired
                    # (`_alarm_until`): a timer for the rest of the wait.
                    ringing[0] = self._alarm_until(until)
            finally:
                if shared:
                    self._alarm_held = False
                else:
                    alarm.cancel()
        elif due and not done() and not self.interrupted():
            self.visibility.flush()
            try:
                await workflow.wait_condition(
                    lambda: done() or self.interrupted(),
                    timeout=max(remaining, timedelta(milliseconds=1)),
                )
            except TimeoutError:
                pass
        if self.interrupted():
            raise Interrupted()
        return done()

    def _alarm_until(self, until: datetime) -> asyncio.Task[None]:
        """The timer firing at `until` (PATCH_V5): the previous wait's when it has the same
        deadline and has not fired yet, else a new one (the previous one cancelled).

        collection-v6: also the previous wait's when it fires earlier than `until` (kept
        across stage changes too): the wait then starts a timer for the rest once it fires
        (`wait`), so a wait that ends before it (a plan or signature soon after its wait
        began, a payment) costs no timer, and one that lasts costs one, as before."""
        alarm, at = self._alarm, self._alarm_at
        if alarm is not None and not alarm.done() and at is not None:
            if at == until or (at < until and self.versions.v6()):
                return alarm
        self.cancel_alarm()
        self._alarm, self._alarm_at = self._timer(until), until
        return self._alarm

    @staticmethod
    def _timer(until: datetime) -> asyncio.Task[None]:
        remaining = max(until - workflow.now(), timedelta(milliseconds=1))
        return asyncio.create_task(workflow.sleep(remaining))

    def cancel_alarm(self) -> None:
        if self._alarm is not None and not self._alarm.done():
            self._alarm.cancel()
        self._alarm, self._alarm_at = None, None

    def set_next_action(self, action: str, at: datetime) -> None:
        s = self.s
        s.next_action, s.next_action_at = action, at
        if not self.versions.v6():
            self.visibility.publish()
            return
        # collection-v6: the case row has this wait's next action when the activity before
        # the wait wrote it (`row_next_action`); NextActionAt is then unset, else it holds
        # this wait's deadline (upserted as before) and the lists read it first.
        shown = None if (action, at) == (s.next_action_row, s.next_action_row_at) else at
        if shown != s.next_action_shown:
            s.next_action_shown = shown
            self.visibility.publish()

    def row_next_action(
        self, then: tuple[str, datetime] | None = None
    ) -> tuple[str, datetime | None, datetime | None]:
        """The next action an activity writes to the case row, with the workflow time it is
        as of (collection-v6; None in released runs: their stage changes write the current
        one unconditionally). `then`: the wait that follows the activity, when the caller
        knows it; else the stage's own expectation (`EXPECTED`), else the current one."""
        s = self.s
        if not self.versions.v6():
            return s.next_action, s.next_action_at, None
        if then is None:
            expected = EXPECTED.get(s.stage)
            then = expected(self) if expected is not None else None
        action, at = then if then is not None else (s.next_action, s.next_action_at)
        stamp, last = workflow.now(), s.next_action_stamp
        if last is not None and stamp <= last:
            stamp = last + timedelta(microseconds=1)
        s.next_action_stamp = stamp
        return action, at, stamp

    def row_written(self, action: str, at: datetime | None, stamp: datetime | None) -> None:
        """collection-v6: the activity carrying `row_next_action`'s values is done (an
        activity that failed wrote nothing): the case row has them unless a newer write was
        done first. NextActionAt is unset when they are the current wait's (a payment's
        record may end after the wait it announced began: the upsert waits for the case to
        be idle, so nothing is upserted then)."""
        s = self.s
        if stamp is None or (
            s.next_action_row_stamp is not None and stamp <= s.next_action_row_stamp
        ):
            return
        s.next_action_row, s.next_action_row_at, s.next_action_row_stamp = action, at, stamp
        if s.next_action_shown is not None and (s.next_action, s.next_action_at) == (action, at):
            s.next_action_shown = None
            self.visibility.publish()

    # ------------------------------------------------------------------ facts

    def delivery_failed(self, failure: DeliveryFailure) -> None:
        """The provider could not deliver a message (a receipt, or the send's own answer)."""
        s = self.s
        if failure.message_sid in s.failed_sids:
            return
        s.failed_sids = (s.failed_sids + [failure.message_sid])[-50:]
        s.counters.sms_failed += 1
        s.failures_in_row += 1
        s.sms_undeliverable = True
        if failure.number_unusable:
            s.has_phone = False
        self.note("sms", f"a message was {failure.status} (error {failure.error_code or '-'})")

    # ------------------------------------------------------------------ effects

    def key(self, kind: str, seq: int) -> str:
        """The idempotency key of this case's `seq`-th `kind` (message, task, visit)."""
        return case_key(self.s.loan_no, self.s.generation, kind, seq)

    async def act(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        if isinstance(arg, POLICY_INPUTS) and arg.policy is not None and self.versions.v6():
            # collection-v6: the policy as its changes against a frozen, named base (a few
            # fields, not ~2 KB in every such activity's input); the activity rebuilds the
            # exact policy and enforces the rules with it (domain/policy_wire.py).
            if self._delta[0] != arg.policy:  # by value: the case's policy changes rarely
                self._delta = (copy.deepcopy(arg.policy), policy_delta(arg.policy))
            arg = dataclasses.replace(arg, policy=None, rules=self._delta[1])
        self.visibility.flush()
        self.visibility.before_activity()  # PATCH_V5: a new stage shows while this retries
        self.acting += 1
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                task_queue=self._task_queue(name),
                start_to_close_timeout=self._attempt_timeout(name),
                retry_policy=ACTIVITY_RETRY,
                priority=self._priority(name),
            )
        finally:
            self.acting -= 1

    def _priority(self, name: str) -> Priority:
        """The most overdue cases' texts first when sends wait in a backlog (a morning wave
        held to the provider's rate): Temporal's priority key by days past due. It orders
        tasks in the queue only, and replay does not compare it: no patch. Only on the sms
        queue: a released run's sends share the case's queue with every other activity,
        whose order they must not change.

        collection-v6: an activity scheduled inside an Update handler (or a task it started)
        is one a person waits on, their phone showing "sending...": it goes first in its
        queue (INTERACTIVE_PRIORITY), before the back office's backlog. The run's answer to
        PATCH_V6 is only read here, never asked (it is asked when the run starts: a handler
        running before that, in the run's first workflow task, schedules as before)."""
        if self.versions.answered_v6() and (
            workflow.current_update_info() is not None or name == A.RAISE_ALERT
        ):  # a collector's "need help" alert is raised by the safety watcher, not the Update
            return Priority(priority_key=INTERACTIVE_PRIORITY)
        if name != A.SEND_SMS or self._task_queue(name) is None:
            return Priority.default
        return Priority(priority_key=sms_priority(self.dpd()))

    def _task_queue(self, name: str) -> str | None:
        """Rendering and sending run on their roles' own task queues (collection-v4), so they
        can have worker processes and cores of their own; a released run's stay on the case's
        queue (None: the workflow's own), where every cases worker serves them."""
        role = ACTIVITY_ROLES.get(name)
        if role is None or not self.versions.v4():
            return None
        return role_queue(workflow.info().task_queue, role)

    def _attempt_timeout(self, name: str) -> timedelta:
        """A crashed worker's activity is retried elsewhere after this long: short for the
        SMS (one HTTP call), long enough for a PDF render, a minute for the rest."""
        p = self.s.policy
        if name == A.SEND_SMS:
            return timedelta(seconds=p.sms_attempt_timeout_s)
        if name == A.RENDER_AGREEMENT:
            return timedelta(seconds=p.render_attempt_timeout_s)
        return ACTIVITY_TIMEOUT

    def note(self, kind: str, detail: str, actor: str = "system") -> None:
        history = self.s.history
        history.append(HistoryEntry(workflow.now(), kind, detail, actor))
        if len(history) > HISTORY_KEPT:
            del history[: len(history) - HISTORY_KEPT]

    async def enter(self, stage: Stage, reason: str, actor: str = "system") -> None:
        """Move the case to `stage`, with the reason in its history and the database."""
        s = self.s
        previous = s.stage
        if not self.versions.v6():  # v6: kept for a later deadline (`_alarm_until`)
            self.cancel_alarm()  # the stage's deadlines end with it (PATCH_V5; else none runs)
        if stage == Stage.ON_HOLD and previous != Stage.ON_HOLD:
            s.resume_stage = previous
        if stage == Stage.FIELD_VISIT and previous != Stage.FIELD_VISIT:
            resumed = previous == Stage.ON_HOLD and self.versions.v4()
            if not resumed:  # a new round of visits (a hold only pauses the round)
                s.attempt, s.round_unreached, s.round_refusals = 0, 0, 0
                s.visit_notice_sent = False
        s.stage, s.stage_since = stage, workflow.now()
        s.phase, s.phase_due = "", None
        s.pending_visit_outcome = None
        if stage in CLOSED_STAGES:
            s.next_action, s.next_action_at = "", None
            s.next_action_shown = None
        self.note("stage", f"{previous} → {stage}: {reason}", actor)
        await self.record_transition(previous, reason, actor)

    async def record_transition(self, previous: Stage | None, reason: str, actor: str) -> None:
        s = self.s
        s.transition_seq += 1
        self.visibility.publish()
        at = self.outstanding_at()
        if at is not None:
            self.show_outstanding()
        action, action_at, action_stamp = self.row_next_action()
        await self.act(
            A.RECORD_TRANSITION,
            Transition(
                loan_no=s.loan_no,
                seq=s.transition_seq,
                from_stage=previous,
                to_stage=s.stage,
                at=s.stage_since,
                actor=actor,
                reason=reason,
                branch=s.branch,
                risk_tier=s.risk_tier,
                collectors=list(s.collectors),
                debt_fen=s.debt_fen,
                paid_fen=s.paid_fen,
                next_action=action,
                next_action_at=action_at,
                generation=s.generation,
                strategy_version=s.strategy_version,
                segment=s.segment,
                strategy_arm=s.strategy_arm,
                outstanding_fen=self.outstanding() if at else None,
                outstanding_at=at,
                next_action_stamp=action_stamp,
            ),
        )
        self.row_written(action, action_at, action_stamp)

    async def assign(self, request: AssignRequest) -> bool:
        """Assign the case's collectors; False when postponed until the team out on a visit
        checks out (collection-v4): nobody on the visit in progress leaves the case before
        it, or they could neither check out nor call for help (the watcher makes the change
        after the check-out, workflows/safety.py)."""
        s = self.s
        # Remote villages and hostile borrowers: only collectors whose safety training has
        # not expired (the activity says whom it passed over in the audit trail).
        request.trained_only = s.remote or s.hostile or s.hostile_team
        visit = s.visit
        if visit is not None and self.versions.v4():
            # A reassignment naming everyone out on the visit goes ahead; any other change
            # (by capacity or training) might take one of them off.
            if not set(visit.collector_ids) <= set(request.requested):
                s.assign_after_visit = request
                self.note(
                    "assignment",
                    f"team change waits for the check-out of visit {visit.number} "
                    f"({', '.join(visit.collector_ids)} out)",
                    request.by,
                )
                return False
        async with self._assign_lock:
            collectors: list[str] = await self.act(A.ASSIGN_COLLECTORS, request, list[str])
            self.s.collectors = collectors
            who = ", ".join(collectors) or "nobody (no capacity)"
            if request.trained_only:
                who += " (remote or hostile visit: valid safety training only)"
            self.note("assignment", f"assigned to {who}", request.by)
            self.visibility.publish()
        if self.s.team_size and collectors and len(collectors) < request.team_size:
            await self.task(
                TaskKind.ASSIGN_COLLECTOR,
                f"only {len(collectors)} collector(s) with capacity in branch {self.s.branch}: "
                f"a visit needs a team of {request.team_size}",
                None,
                assignees=[f"supervisor:{self.s.branch}"],
            )
        if not collectors:
            await self.task(
                TaskKind.ASSIGN_COLLECTOR,
                f"no collector with capacity in branch {self.s.branch}: assign one",
                None,
                assignees=[f"supervisor:{self.s.branch}"],
            )
        return True

    async def task(
        self,
        kind: TaskKind,
        detail: str,
        due: datetime | None,
        assignees: list[str] | None = None,
        with_outstanding: bool = False,
        then: tuple[str, datetime] | None = None,
    ) -> None:
        """A task for people (by default the case's collectors), kept in the database;
        `with_outstanding`: the case row's outstanding too (collection-v5); `then`: the
        wait that follows (its next action goes on the case row, collection-v6)."""
        s = self.s
        s.task_seq += 1
        at = self.outstanding_at() if with_outstanding else None
        action, action_at, action_stamp = self.row_next_action(then)
        await self.act(
            A.CREATE_TASK,
            TaskRequest(
                key=self.key(kind, s.task_seq),
                loan_no=s.loan_no,
                kind=kind,
                assignees=assignees if assignees is not None else list(s.collectors),
                due_at=due,
                detail=detail,
                created_at=workflow.now(),
                outstanding_fen=self.outstanding() if at else None,
                outstanding_at=at,
                next_action=action,
                next_action_at=action_at,
                next_action_stamp=action_stamp,
            ),
        )
        self.row_written(action, action_at, action_stamp)
