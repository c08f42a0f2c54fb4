"""Staff safety on visits (issue 15): check-in, check-out, "need help", acknowledgements,
the hostile-visit team, and the watcher that keeps their timers.

The handlers only change the state (before their first await) and say so in the audit trail;
the watcher, one coroutine per run started by the main loop, raises what is due: the
supervisor when a team has not checked out by the expected time plus the grace, or at once
for "need help" and a hostile visit; the branch head when an alert is not acknowledged after
`alert_head_after_seconds`. Its timers are workflow timers: they fire on time after a worker
or server restart. A case does not end while a visit is checked in or an alert is open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import phone_ops
from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain import human_input as check
    from domain.models import (
        AlertAck,
        AlertRequest,
        AlertSent,
        AssignRequest,
        CheckIn,
        CheckOut,
        HelpRequest,
        LiftHostileTeam,
        SafetyAlert,
        SafetyAudit,
        TrainingCheck,
        UpdateAccepted,
        VisitInProgress,
    )
    from domain.names import Activities as A
    from domain.safety import alert_detail, visit_times
    from domain.stages import CLOSED_STAGES, AlertKind, AlertLevel
    from domain.timerules import local


class Safety:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.busy = False  # an alert is being sent: the run neither ends nor continues yet
        self.checking_in = 0  # check-ins waiting on their training check

    def settled(self) -> bool:
        """Whether a closing case may end: no team out, no call for help or overdue team
        unacknowledged (a hostile visit's alert stays a task in the database)."""
        s = self.case.s
        urgent = [a for a in s.alerts if a.kind != AlertKind.HOSTILE]
        return s.visit is None and not urgent and not self.busy and not self.checking_in

    # ------------------------------------------------------------------ messages

    async def check_in(self, request: CheckIn) -> UpdateAccepted:
        case, s = self.case, self.case.s
        if (done := phone_ops.repeated(s, request)) is not None:
            return done  # sent again by a phone after the case continued as new
        if (s.remote or s.hostile or s.hostile_team) and case.versions.v4():
            # The training dates are in the database: checked there, as the assignment does
            # (a team may have been assigned before a training expired at midnight).
            self.checking_in += 1  # the case neither ends nor continues meanwhile
            try:
                await case.act(
                    A.CHECK_VISIT_TRAINING,
                    TrainingCheck(s.loan_no, list(request.collector_ids), workflow.now()),
                )
            finally:
                self.checking_in -= 1
            try:  # paid, held, reassigned or checked in by another while this one was checked
                check.check_check_in_state(s, request)
            except check.Refused as refused:
                raise ApplicationError(
                    str(refused), type="InvalidInput", non_retryable=True
                ) from None
        # The alert's timer starts now, when the check-in arrives (perhaps late, from a
        # phone's queue), not at the time the phone recorded.
        now = workflow.now()
        s.check_ins += 1
        expected, alert_at = visit_times(now, s.remote, s.policy)
        s.visit = VisitInProgress(
            s.check_ins, list(request.collector_ids), request.checked_in_at, expected, alert_at,
            request.by, request.latitude, request.longitude,
        )  # fmt: skip
        s.safety_seq += 1
        back = f"{local(expected, s.policy):%H:%M}"
        # The phone's location stays with the visit in progress (shown to the branch's
        # supervisors on the case page), never in the history or the audit trail.
        detail = (
            f"check-in {s.check_ins} by {', '.join(request.collector_ids)}; expected back by {back}"
        )
        by = request.by or request.collector_ids[0]
        case.note("visit", detail, by)
        await self._audit("check_in", f"check-in:{s.check_ins}", by, detail)
        answer = UpdateAccepted(
            s.stage,
            f"签到成功，预计{back}前签退 / checked in: check out by {back}, or the supervisor "
            "is alerted",
            s.check_ins,
        )
        return phone_ops.remember(s, request, answer)

    def check_out(self, request: CheckOut) -> str:
        """The visit is over (decided here; the report is recorded by the caller)."""
        case, s = self.case, self.case.s
        visit = s.visit
        assert visit is not None
        s.visit = None
        s.safety_seq += 1
        late = " (after its alert)" if visit.alerted else ""
        by = request.by or request.report.collector_ids[0]
        case.note("visit", f"check-out of visit {visit.number}{late}", by)
        return by

    def need_help(self, request: HelpRequest) -> UpdateAccepted:
        s = self.case.s
        if (done := phone_ops.repeated(s, request)) is not None:
            return done  # sent again by a phone after the case continued as new
        since = s.visit.checked_in_at if s.visit else None
        team = s.visit.collector_ids if s.visit else [request.collector_id]
        detail = alert_detail(AlertKind.HELP, team, since, s.policy)
        if request.notes:
            detail += f": {request.notes[:200]}"
        alert = self.raise_alert(AlertKind.HELP, detail, request.collector_id)
        # The phone's location stays with the alert for its task (the supervisors' and
        # heads'), out of its detail: that goes to the history, the audit trail and texts.
        s.alerts[-1].latitude, s.alerts[-1].longitude = request.latitude, request.longitude
        answer = UpdateAccepted(s.stage, f"已通知主管 / the supervisor is alerted (alert {alert})")
        return phone_ops.remember(s, request, answer)

    def hostile(self, collector_ids: list[str], by: str) -> None:
        """A visit reported a hostile borrower (collection-v4): the supervisor is alerted and
        every later visit needs the policy's hostile team."""
        s = self.case.s
        s.hostile_team = True
        detail = alert_detail(AlertKind.HOSTILE, collector_ids, None, s.policy)
        self.raise_alert(AlertKind.HOSTILE, detail, by)

    async def acknowledge(self, ack: AlertAck) -> UpdateAccepted:
        case, s = self.case, self.case.s
        alert = next((a for a in s.alerts if a.number == ack.alert_no), None)
        if alert is None:  # acknowledged by another Update accepted at the same time
            raise ApplicationError(
                f"alert_no: {ack.alert_no} is not an open alert", type="InvalidInput",
                non_retryable=True,
            )  # fmt: skip
        s.alerts = [a for a in s.alerts if a.number != ack.alert_no]
        s.safety_seq += 1
        detail = f"alert {alert.number} ({alert.kind}) acknowledged"
        if ack.notes:
            detail += f": {ack.notes[:200]}"
        case.note("safety", detail, ack.by)
        # Its tasks are done: off the dashboard's urgent banner at once.
        closes = f"{case.key('alert', alert.number)}:"
        await self._audit("alert_acknowledged", f"ack:{alert.number}", ack.by, detail, closes)
        return UpdateAccepted(s.stage, f"alert {alert.number} acknowledged", alert.number)

    async def lift_hostile(self, request: LiftHostileTeam) -> UpdateAccepted:
        case, s = self.case, self.case.s
        s.hostile_team = False
        s.safety_seq += 1
        detail = f"hostile-visit team lifted: {request.reason}"
        case.note("safety", detail, request.by)
        await self._audit("hostile_team_lifted", f"lift:{s.safety_seq}", request.by, detail)
        return UpdateAccepted(s.stage, f"visits by a team of {case.team_size()} again")

    def raise_alert(self, kind: AlertKind, detail: str, by: str = "system") -> int:
        s = self.case.s
        s.alerts_raised += 1
        s.alerts.append(SafetyAlert(s.alerts_raised, kind.value, detail, workflow.now()))
        s.safety_seq += 1
        self.case.note("safety", f"alert {s.alerts_raised} ({kind}): {detail}", by)
        return s.alerts_raised

    # ------------------------------------------------------------------ the watcher

    async def watch(self) -> None:
        s = self.case.s
        while True:
            seen = s.safety_seq
            if s.visit is None and s.assign_after_visit is not None:
                await self._assign_after_visit()
                continue
            now = workflow.now()
            for alert in list(s.alerts):
                try:  # a failed step is noted; the watcher goes on (it is the only one)
                    await self._step(alert, now)
                except Exception as e:  # noqa: BLE001 - never end the watcher silently
                    self.case.note("safety", f"alert {alert.number}: {e}"[:300])
            visit = s.visit
            if visit is not None and not visit.alerted and visit.alert_at <= workflow.now():
                visit.alerted = True
                detail = alert_detail(
                    AlertKind.OVERDUE, visit.collector_ids, visit.checked_in_at, s.policy
                )
                self.raise_alert(AlertKind.OVERDUE, detail)
                continue
            if s.safety_seq != seen:
                continue  # a message came while an alert was sent
            wake = self._next_wake()
            if wake is None:
                await workflow.wait_condition(lambda seen=seen: s.safety_seq != seen)
                continue
            remaining = max(wake - workflow.now(), timedelta(milliseconds=1))
            try:
                await workflow.wait_condition(
                    lambda seen=seen: s.safety_seq != seen, timeout=remaining
                )
            except TimeoutError:
                pass

    async def _step(self, alert: SafetyAlert, now: datetime) -> None:
        s = self.case.s
        if alert.level == "":
            alert.level = AlertLevel.SUPERVISOR.value
            alert.head_at = now + timedelta(seconds=s.policy.alert_head_after_seconds)
            texts = await self._send(alert, AlertLevel.SUPERVISOR)
            if texts == 0 and alert in s.alerts:  # nobody texted: the branch head at once
                alert.level, alert.head_at = AlertLevel.BRANCH_HEAD.value, None
                await self._send(alert, AlertLevel.BRANCH_HEAD)
            if alert.kind == AlertKind.HOSTILE and s.stage not in CLOSED_STAGES:
                self.busy = True  # the run does not continue-as-new before the team is up
                try:
                    await self._team_up()  # a closed case needs no bigger team
                finally:
                    self.busy = False
        elif (
            alert.level == AlertLevel.SUPERVISOR
            and alert.head_at is not None
            and alert.head_at <= now
            and alert in s.alerts  # not acknowledged meanwhile
        ):
            alert.level, alert.head_at = AlertLevel.BRANCH_HEAD.value, None
            await self._send(alert, AlertLevel.BRANCH_HEAD)

    def _next_wake(self) -> datetime | None:
        s = self.case.s
        times = [a.head_at for a in s.alerts if a.level == AlertLevel.SUPERVISOR and a.head_at]
        if s.visit is not None and not s.visit.alerted:
            times.append(s.visit.alert_at)
        return min(times) if times else None

    async def _send(self, alert: SafetyAlert, level: AlertLevel) -> int:
        """The alert's task and texts at `level`; the number of staff texted."""
        case, s = self.case, self.case.s
        team = s.visit.collector_ids if s.visit else list(s.collectors)
        self.busy = True
        try:
            sent: AlertSent = await case.act(
                A.RAISE_ALERT,
                AlertRequest(
                    key=case.key("alert", alert.number) + f":{level}",
                    loan_no=s.loan_no,
                    branch=s.branch,
                    alert_no=alert.number,
                    kind=alert.kind,
                    level=level.value,
                    detail=alert.detail,
                    at=workflow.now(),
                    collector_ids=team,
                    ack_key=self._key(f"ack:{alert.number}"),
                    latitude=alert.latitude,
                    longitude=alert.longitude,
                ),
                AlertSent,
            )
        finally:
            self.busy = False
        whom = "branch head" if level == AlertLevel.BRANCH_HEAD else "supervisor"
        case.note("safety", f"alert {alert.number}: {whom} alerted ({sent.texts} SMS)")
        return sent.texts

    async def _assign_after_visit(self) -> None:
        """The change of team that waited for the check-out (workflows/case.py `assign`)."""
        s = self.case.s
        request, s.assign_after_visit = s.assign_after_visit, None
        if request is None or s.stage in CLOSED_STAGES:
            return
        self.busy = True  # the run does not continue-as-new meanwhile
        try:
            await self.case.assign(request)
        except Exception as e:  # noqa: BLE001 - a refused reassignment is noted, not fatal
            self.case.note("assignment", f"team change after the visit refused: {e}"[:300])
        finally:
            self.busy = False

    async def _team_up(self) -> None:
        case, s = self.case, self.case.s
        team = case.team_size()
        if len(s.collectors) < team:
            await case.assign(
                AssignRequest(
                    s.loan_no, s.branch, team, keep=list(s.collectors),
                    reason=f"hostile visit: a team of {team}",
                )
            )  # fmt: skip

    def _key(self, kind: str) -> str:
        """The audit line's key of a safety message (`kind`: check-in:1, ack:2 ...)."""
        return f"{self.case.key('safety', 0)}:{kind}"

    async def _audit(self, action: str, kind: str, by: str, detail: str, closes: str = "") -> None:
        case, s = self.case, self.case.s
        await case.act(
            A.RECORD_SAFETY,
            SafetyAudit(self._key(kind), s.loan_no, action, by, detail, workflow.now(), closes),
        )
