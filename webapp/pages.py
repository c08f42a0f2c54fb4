"""The pages people work in, and the same routes as a JSON API for other tools.

- /dashboard  supervisors: cases per stage and branch, the filtered table, actions due today
              and overdue, collectors' caseloads (their branches only)
- /my         collectors: their own open cases, on a phone
- /cases/{loan_no}           one case: state from the Query, timeline, messages, visits,
                             agreement versions; forms for what the user may do now
- /cases/{loan_no}/{action}  visit, plan, signature, call, consent, third-party (collectors
                             and supervisors); reassign, hold, lift-hold, close (supervisors)
- /feeds      back office: the overdue-loan export and the payment feed; the daily run's
              reports (also /feeds/runs, for supervisors too)

A case that the user may not see answers 404, as if it did not exist. Times are shown, and
read from forms, on the configured policy's clock, and on a case's page on the clock of the
case's branch (service/local_time.py).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from domain.human_input import CONSENT_CHANNELS
from domain.outcomes import DEFAULT_BUCKETS, default_period, percent
from domain.phone_actions import OP_ID_REFUSED
from domain.policy import Policy
from domain.stages import MANUAL_CLOSE_STAGES, CallOutcome, Stage, VisitOutcome
from domain.timerules import local_date
from domain.training import STATE_ZH
from service import alert_tasks, audit, training
from service.case_record import (
    agreement_pdf,
    as_seen_by,
    branch_phone,
    case_header,
    case_record,
    collector_cases,
)
from service.case_updates import (
    SENT_AT,
    SENT_AT_REFUSED,
    UPDATE_ID,
    ActionOutcome,
    CaseActions,
    Locations,
)
from service.collection_record import COUNSELLING_ZH, HARDSHIP_ZH
from service.daily_schedule import latest_runs, rejected_file_of
from service.loan_contacts import (
    CALL_OUTCOME_ZH,
    CONSENT_HOW_ZH,
    third_party_hints,
    unanswered_calls_today,
)
from service.outcomes import build_report
from service.outcomes import portfolio as outcome_portfolio
from service.portfolio import (
    OPEN_STAGES,
    FilterError,
    Filters,
    caseloads,
    complaint_counts,
    filters_from_query,
    find_cases,
    mark_training,
    stage_branch_counts,
    urgent_alerts,
    with_next_actions,
)
from service.sign_in_throttle import Limits
from service.users import Principal, Role
from webapp import charts as charts_svg
from webapp import forms
from webapp.auth import check_csrf, require, wants_json
from webapp.evidence import compliance_section
from webapp.flash import clear_flash, set_flash, take_flash
from webapp.login import home_of
from webapp.rendering import as_json, page

GROUP_ZH = {"branch": "网点 branch", "collector": "催收员 collector",
            "segment": "客群 segment", "arm": "策略组 arm"}  # fmt: skip
_BUCKET_ORDER = ["CURRENT", *(b[0] for b in DEFAULT_BUCKETS), "CLOSED"]


def bucket_order(name: str) -> int:
    return _BUCKET_ORDER.index(name) if name in _BUCKET_ORDER else len(_BUCKET_ORDER)


ANYONE_ON_CASES = (Role.SUPERVISOR, Role.COLLECTOR, Role.BRANCH_HEAD, Role.LEGAL)
LEGAL_ACTIONS = ("legal-decision",)  # all a legal reviewer may do on a case


@dataclass
class WebConfig:
    task_queue: str = "loan-collection"
    policy: Policy = field(default_factory=Policy)
    secure_cookies: bool = False  # set behind HTTPS
    # Origins of Temporal's web UI, allowed to call the codec endpoint with credentials.
    ui_origins: tuple[str, ...] = ("http://localhost:8233", "http://127.0.0.1:8233")
    # Sign-in throttling (service/sign_in_throttle.py), and password hashes (16 MiB of scrypt
    # each) run at once per process, with how many more may wait for a turn (webapp/login.py).
    sign_in: Limits = field(default_factory=Limits)
    hash_slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    hash_waiting: int = 16


OP_ID = re.compile(r"[A-Za-z0-9-]{8,64}")
# The field holding the time the phone recorded, of each action its queue sends.
PHONE_TIMES = {"visit": "visited_at", "call": "called_at", "check-in": "checked_in_at",
               "check-out": "visited_at", "help": "at", "promise": ""}  # fmt: skip
SERVICE_WORKER = Path(__file__).parent.parent / "templates" / "pages" / "sw.js"


def _coordinate(data: dict, name: str) -> float | None:  # type: ignore[type-arg]
    """The phone's location (the browser's geolocation, when the collector allowed it)."""
    raw = str(data.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise forms.InputError(f"{name}: not a number") from None


def phone_fields(
    data: dict,  # type: ignore[type-arg]
    action: str,
    zone: tzinfo | None,
) -> tuple[str | None, datetime | None]:
    """A phone's queued action: its id (applied once) and its clock at sending (`sent_at`,
    which puts the recorded time on the server's clock). Only the phone's actions carry them
    (domain/phone_actions.py); `sent_at` counts only with the recorded time it goes with."""
    op_id = str(data.get("op_id") or "")
    if op_id and action not in PHONE_TIMES:
        raise forms.InputError(OP_ID_REFUSED)
    if op_id and not OP_ID.fullmatch(op_id):
        raise forms.InputError("op_id: 8 to 64 letters, digits or dashes")
    if not data.get("sent_at"):
        return op_id or None, None
    if action not in PHONE_TIMES:
        raise forms.InputError(SENT_AT_REFUSED)
    sent_at = forms.moment(data, "sent_at", zone=zone)
    recorded = PHONE_TIMES[action]
    return op_id or None, sent_at if recorded and data.get(recorded) else None


def pages_router(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    config: WebConfig,
) -> APIRouter:
    router = APIRouter()

    async def actions() -> CaseActions:
        return CaseActions(await temporal(), sessions, config.policy)

    zone = config.policy.timezone_info()  # lists of cases from several branches

    async def case_zone(acts: CaseActions, loan_no: str) -> tzinfo:
        return (await run_in_threadpool(acts.policy_for, loan_no)).timezone_info()

    # Signing in and out: webapp/login.py.

    @router.get("/")
    async def home(request: Request) -> Response:
        who = require(request, sessions)
        return RedirectResponse(home_of(who), 303)

    # ------------------------------------------------------------ supervisors

    @router.get("/dashboard")
    async def dashboard(request: Request) -> Response:
        who = require(request, sessions, Role.SUPERVISOR, Role.BRANCH_HEAD)
        q = request.query_params
        error = ""
        try:
            filters = filters_from_query(q)
        except FilterError as e:
            error, filters = str(e), Filters()
        client = await temporal()
        now = datetime.now(UTC)
        scope = who.branches
        rows = await find_cases(client, filters, now, scope, config.policy, 100, sessions)
        due_today = Filters(due_today=True)
        due = await find_cases(client, due_today, now, scope, config.policy, 100, sessions)
        due.sort(key=lambda r: r.next_action_at or now)
        grid = await run_in_threadpool(stage_branch_counts, sessions, scope)
        loads = await run_in_threadpool(caseloads, sessions, scope)
        today = await run_in_threadpool(training.branch_today, sessions, now, config.policy)
        mark_training(loads, today, config.policy.training_warning_days)
        complaints = await run_in_threadpool(complaint_counts, sessions, scope)
        urgent = await run_in_threadpool(urgent_alerts, sessions, scope)
        month, compliance, month_error = await run_in_threadpool(
            compliance_section, sessions, q.get("month"), scope, config.policy, now
        )
        error = error or month_error
        data = dict(filters=filters, cases=rows, due=due, counts=grid, caseloads=loads, error=error)
        data.update(complaints=complaints, urgent_alerts=urgent)
        data.update(month=month, compliance=compliance)
        if wants_json(request):
            data["counts"] = [
                {"stage": s, "branch": b, "cases": n} for (s, b), n in sorted(grid.items())
            ]
            return as_json(data, 400 if error else 200)
        flash, flash_ok = take_flash(request, who, DASHBOARD_FLASH) or ("", False)
        response = page(
            request, "dashboard.html.j2", 400 if error else 200, who=who, now=now, zone=zone,
            stages=list(Stage), open_stages=OPEN_STAGES, branches=scope,
            training_days=config.policy.training_warning_days, flash=flash, flash_ok=flash_ok,
            **data,
        )  # fmt: skip
        if flash:
            clear_flash(response, config.secure_cookies)
        return response

    @router.post("/alerts/{task_id}/close")
    async def close_alert_task(request: Request, task_id: int) -> Response:
        """A supervisor or branch head closes an urgent alert's task that its case can no
        longer acknowledge (run ended or superseded, alert gone): service/alert_tasks.py."""
        who = require(request, sessions, Role.SUPERVISOR, Role.BRANCH_HEAD)
        try:
            data = await forms.read_input(request)
            check_csrf(request, who, data.get("csrf"))
            reason = forms.text(data, "reason", required=False)
            closed = await alert_tasks.close_orphaned(
                sessions, await temporal(), who, task_id, reason
            )
            ok, message = closed.ok, closed.message
        except forms.InputError as e:
            ok, message = False, str(e)
        if wants_json(request):
            return as_json(dict(accepted=ok, message=message), 200 if ok else 409)
        response = RedirectResponse("/dashboard", 303)
        set_flash(response, who, DASHBOARD_FLASH, ok, message, config.secure_cookies)
        return response

    @router.get("/reports")
    async def reports(request: Request) -> Response:
        """Outcomes of the user's branches: bucket flow, recovery by strategy arm over time,
        collector workload (SVG drawn here), the tables, and champion against challenger."""
        who = require(request, sessions, Role.SUPERVISOR, Role.BRANCH_HEAD)
        today = local_date(datetime.now(UTC), config.policy)
        first, last = default_period(today)
        try:
            if request.query_params.get("from"):
                first = forms.day(dict(request.query_params), "from")
        except forms.InputError as e:
            raise HTTPException(400, str(e)) from None
        cases = await run_in_threadpool(
            outcome_portfolio, sessions, config.policy, list(who.branches)
        )
        report = build_report(cases, first, last)
        months = [d.strftime("%Y-%m") for d in report.month_ends]
        buckets = sorted({b for counts in report.bucket_counts for b in counts}, key=bucket_order)
        charts = {
            "flow": charts_svg.stacked_bars(
                months,
                {b: [c.get(b, 0) for c in report.bucket_counts] for b in buckets},
                "逾期分组流转 bucket flow",
            ),
            "recovery": charts_svg.lines(
                months, report.recovery_by_arm, "按策略组回收率 recovery by arm"
            ),
            "workload": charts_svg.hbars(report.workload, "催收员走访量 collector workload"),
        }
        if wants_json(request):
            return as_json({"groups": report.groups, "rolls": report.rolls, "arms": report.arms})
        return page(
            request, "reports.html.j2", who=who, report=report, charts=charts, percent=percent,
            group_zh=GROUP_ZH,
        )  # fmt: skip

    # ------------------------------------------------------------ collectors

    @router.get("/sw.js")
    async def service_worker() -> Response:
        """The phone pages' service worker: the day's pages kept for when signal is gone."""
        return Response(
            SERVICE_WORKER.read_text(),
            media_type="application/javascript",
            headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
        )

    @router.get("/my")
    async def my_cases(request: Request) -> Response:
        who = require(request, sessions, Role.COLLECTOR)
        cases = await run_in_threadpool(collector_cases, sessions, who.collector_id or "")
        await with_next_actions(await temporal(), cases)
        far = datetime.max.replace(tzinfo=UTC)
        cases.sort(key=lambda c: c.next_action_at or far)  # soonest first
        # Unanswered calls today to each borrower, over all their loans (the daily cap's count).
        calls = await run_in_threadpool(
            unanswered_calls_today, sessions, [c.loan_no for c in cases], config.policy
        )
        for c in cases:
            c.unanswered_calls_today = calls.get(c.loan_no, 0)
        max_calls = config.policy.max_unanswered_calls_per_day
        if wants_json(request):
            # Not the case row's internal stamp (collection-v6: when its time was written).
            shown = [
                {k: v for k, v in asdict(c).items() if k != "next_action_stamp"} for c in cases
            ]
            return as_json({"cases": shown, "max_unanswered_calls_per_day": max_calls})
        return page(
            request, "my_cases.html.j2", who=who, cases=cases, now=datetime.now(UTC), zone=zone,
            max_calls=max_calls,
        )  # fmt: skip

    # ------------------------------------------------------------ one case

    def visible(who: Principal, loan_no: str) -> None:
        header = case_header(sessions, loan_no)
        if header is None or not who.may_see(*header):
            raise HTTPException(404, f"no case {loan_no} that you can see")

    @router.get("/cases/{loan_no}")
    async def case_page(request: Request, loan_no: str) -> Response:
        who = require(request, sessions, *ANYONE_ON_CASES)
        await run_in_threadpool(visible, who, loan_no)
        acts = await actions()
        status = await acts.status(loan_no)
        record = await run_in_threadpool(case_record, sessions, loan_no)
        record = record and as_seen_by(record, who)  # the same for the page and its JSON
        # The call form's count (every loan of the borrower), and whether each loan contact
        # may be sent a message now (the rule set: unrelated ones after contact is lost).
        policy = await run_in_threadpool(acts.policy_for, loan_no)
        calls = {
            "unanswered_today": (
                await run_in_threadpool(unanswered_calls_today, sessions, [loan_no], policy)
            ).get(loan_no, 0),
            "max_per_day": policy.max_unanswered_calls_per_day,
        }
        third_party = (
            await run_in_threadpool(
                third_party_hints, sessions, loan_no, status.contact_lost, policy
            )
            if status
            else {}
        )
        # Where the phones were (the check-in, a call for help): the branch's supervisors and
        # heads only; "unavailable" when the case did not answer.
        places = await acts.locations(who, loan_no, bool(status.visit)) if status else Locations()
        if wants_json(request):
            data = {"status": status, "record": record, "calls": calls, "third_party": third_party}
            if who.role in (Role.SUPERVISOR, Role.BRANCH_HEAD):
                data.update(
                    visit_location=places.visit, alert_locations=places.alerts,
                    locations_unavailable=places.unavailable,
                )  # fmt: skip
            return as_json(data)
        flash, flash_ok = take_flash(request, who, loan_no) or ("", False)  # never from the URL
        response = page(
            request, "case.html.j2", who=who, status=status, record=record,
            flash=flash, flash_ok=flash_ok,
            outcomes=list(VisitOutcome), close_outcomes=sorted(MANUAL_CLOSE_STAGES),
            counselling=COUNSELLING_ZH, hardship_zh=HARDSHIP_ZH,
            calls=calls, third_party=third_party, call_outcomes=list(CallOutcome),
            outcome_zh=CALL_OUTCOME_ZH, consent_channels=CONSENT_CHANNELS, how_zh=CONSENT_HOW_ZH,
            now=datetime.now(UTC), zone=await case_zone(acts, loan_no), Role=Role,
            visit_location=places.visit, places=places,
            branch_phone=await run_in_threadpool(branch_phone, sessions, loan_no),
        )  # fmt: skip
        if flash:
            clear_flash(response, config.secure_cookies)
        return response

    @router.get("/cases/{loan_no}/agreements/{version}.pdf")
    async def agreement_download(request: Request, loan_no: str, version: int) -> Response:
        who = require(request, sessions, *ANYONE_ON_CASES)
        await run_in_threadpool(visible, who, loan_no)
        path = await run_in_threadpool(agreement_pdf, sessions, loan_no, version)
        if path is None:
            raise HTTPException(404, f"no agreement version {version}")
        return FileResponse(
            path, media_type="application/pdf", filename=f"{loan_no}-v{version}.pdf"
        )

    async def run_action(who: Principal, loan_no: str, action: str, data: dict) -> ActionOutcome:  # type: ignore[type-arg]
        acts = await actions()
        now = datetime.now(UTC)
        if who.role == Role.LEGAL and action not in LEGAL_ACTIONS:
            raise HTTPException(404, "not found")
        # A datetime-local field is the case's local time.
        timed = action in (
            "visit",
            "signature",
            "hold",
            "call",
            "consent",
            "check-in",
            "check-out",
            "help",
            "complaint",
        )
        local = await case_zone(acts, loan_no) if timed else None
        if action == "visit":
            ids = forms.codes(data, "collector_ids")
            if who.role == Role.COLLECTOR:  # the collector and the teammates they name
                mates = ids + forms.codes(data, "teammates") + forms.codes(data, "teammate")
                ids = [who.collector_id or ""] + [m for m in mates if m != who.collector_id]
            return await acts.report_visit(
                who, loan_no, forms.text(data, "outcome"), ids,
                forms.moment(data, "visited_at", now, local),
                forms.text(data, "notes", required=False),
            )  # fmt: skip
        if action == "plan":
            return await acts.propose_even_plan(
                who, loan_no, forms.integer(data, "months", 1, 120), forms.day(data, "first_due"),
                forms.amount_fen(data, "down_payment"), forms.text(data, "notes", required=False),
            )  # fmt: skip
        if action == "signature":
            collector = (
                who.collector_id if who.role == Role.COLLECTOR else forms.text(data, "collector_id")
            )
            return await acts.confirm_signature(
                who, loan_no, forms.integer(data, "version", 1, 1000), forms.text(data, "sha256"),
                collector or "", forms.moment(data, "signed_at", now, local),
                forms.text(data, "place"),
            )  # fmt: skip
        if action == "call":
            collector = (
                who.collector_id if who.role == Role.COLLECTOR else forms.text(data, "collector_id")
            )
            return await acts.record_call(
                who, loan_no, forms.text(data, "outcome"), collector or "",
                forms.moment(data, "called_at", now, local),
                forms.text(data, "party", required=False) or "borrower",
                forms.text(data, "notes", required=False),
            )  # fmt: skip
        if action == "consent":
            return await acts.record_consent(
                who, loan_no, forms.flag(data, "given"), forms.text(data, "how"),
                forms.moment(data, "at", now, local), forms.text(data, "notes", required=False),
            )  # fmt: skip
        if action == "promise":
            return await acts.record_promise(
                who, loan_no, forms.amount_fen(data, "amount"), forms.day(data, "due_date"),
                forms.text(data, "source"), forms.text(data, "notes", required=False),
            )  # fmt: skip
        if action == "waiver":
            return await acts.propose_waiver(
                who, loan_no, forms.text(data, "kind"), forms.text(data, "reason"),
                forms.amount_fen(data, "penalty"), forms.amount_fen(data, "interest"),
                forms.amount_fen(data, "settle"),
            )  # fmt: skip
        if action == "decide-waiver":  # the role's level is checked by the case
            return await acts.decide_waiver(
                who, loan_no, forms.integer(data, "seq", 1, 10_000),
                forms.flag(data, "approve"), forms.text(data, "reason", required=False),
            )  # fmt: skip
        if action in ("check-in", "check-out", "help"):
            return await safety_action(who, loan_no, action, data, now, local)
        if action == "acknowledge-alert" and who.role in (Role.SUPERVISOR, Role.BRANCH_HEAD):
            number = forms.integer(data, "alert_no", 1, 100_000)
            notes = forms.text(data, "notes", required=False)
            return await acts.acknowledge_alert(who, loan_no, number, notes)
        # Roles and branches of these are checked by the service (service/case_updates.py).
        if action == "legal-decision":
            return await acts.legal_decision(
                who, loan_no, forms.text(data, "decision"), forms.text(data, "reason"),
                forms.text(data, "advice", required=False),
            )  # fmt: skip
        if action == "lift-hostile":
            return await acts.lift_hostile_team(who, loan_no, forms.text(data, "reason"))
        if action == "complaint":
            return await acts.record_complaint(
                who, loan_no, forms.text(data, "source"), forms.text(data, "summary"),
                forms.moment(data, "received_at", now, local),
                forms.text(data, "about", required=False),
            )  # fmt: skip
        if action == "acknowledge-complaint":
            number = forms.integer(data, "number", 1, 100_000)
            return await acts.acknowledge_complaint(who, loan_no, number)
        if action == "resolve-complaint":
            return await acts.resolve_complaint(
                who, loan_no, forms.integer(data, "number", 1, 100_000),
                forms.text(data, "outcome"),
            )  # fmt: skip
        if action == "third-party":
            contact_id = forms.integer(data, "contact_id", 1, 2**31 - 1)
            return await acts.contact_third_party(who, loan_no, contact_id)
        if who.role != Role.SUPERVISOR:
            raise HTTPException(404, "not found")
        if action == "reassign":
            return await acts.reassign(
                who, loan_no, forms.codes(data, "collector_ids"), forms.text(data, "reason")
            )
        if action == "hold":
            until = forms.moment(data, "until", zone=local)
            return await acts.hold(who, loan_no, until, forms.text(data, "reason"))
        if action == "lift-hold":
            return await acts.lift_hold(who, loan_no, forms.text(data, "reason"))
        if action == "close":
            return await acts.close(
                who, loan_no, forms.text(data, "outcome"), forms.text(data, "reason")
            )
        raise HTTPException(404, "not found")

    async def safety_action(  # type: ignore[no-untyped-def]
        who: Principal, loan_no: str, action: str, data: dict, now: datetime, local
    ) -> ActionOutcome:
        """The phone page's check-in, check-out (with the visit's report and the help given)
        and "need help": a collector names themself and the teammates they tick."""
        acts = await actions()
        ids = forms.codes(data, "collector_ids")
        if who.role == Role.COLLECTOR:
            mates = ids + forms.codes(data, "teammates")
            ids = [who.collector_id or ""] + [m for m in mates if m != who.collector_id]
        latitude, longitude = _coordinate(data, "latitude"), _coordinate(data, "longitude")
        if action == "check-in":
            at = forms.moment(data, "checked_in_at", now, local)
            return await acts.check_in(who, loan_no, ids, at, latitude, longitude)
        if action == "check-out":
            return await acts.check_out(
                who, loan_no, forms.text(data, "outcome"), ids,
                forms.moment(data, "visited_at", now, local),
                forms.text(data, "notes", required=False),
                forms.codes(data, "counselling"), forms.codes(data, "hardships"),
                forms.text(data, "situation", required=False),
            )  # fmt: skip
        collector = who.collector_id if who.role == Role.COLLECTOR else (ids or [""])[0]
        return await acts.need_help(
            who, loan_no, collector or "", forms.moment(data, "at", now, local),
            forms.text(data, "notes", required=False), latitude, longitude,
        )  # fmt: skip

    @router.post("/cases/{loan_no}/{action}")
    async def case_action(request: Request, loan_no: str, action: str) -> Response:
        who = require(request, sessions, *ANYONE_ON_CASES)
        await run_in_threadpool(visible, who, loan_no)
        try:
            data = await forms.read_input(request)
            check_csrf(request, who, data.get("csrf"))
            local = await case_zone(await actions(), loan_no) if data.get("sent_at") else None
            op_id, sent_at = phone_fields(data, action, local)
            token, sent = UPDATE_ID.set(op_id), SENT_AT.set(sent_at)
            try:
                outcome = await run_action(who, loan_no, action, data)
            finally:
                UPDATE_ID.reset(token)
                SENT_AT.reset(sent)
        except forms.InputError as e:
            outcome = ActionOutcome(False, str(e))
            audit.record(sessions, who.username, who.role, action, "REFUSED", str(e), loan_no)
        if wants_json(request):
            return as_json(outcome, 200 if outcome.accepted else 409)
        response = RedirectResponse(f"/cases/{quote(loan_no)}", 303)
        set_flash(response, who, loan_no, outcome.accepted, outcome.message, config.secure_cookies)
        return response

    # ------------------------------------------------------------ collectors' training

    @router.get("/collectors")
    async def collectors_page(request: Request) -> Response:
        """The collectors a supervisor (their branches) or the back office (all) keeps, with
        their safety training's validity and a form to correct it."""
        who = require(request, sessions, *training.EDITORS)
        window = config.policy.training_warning_days
        rows = await run_in_threadpool(
            training.training_rows, sessions, who, datetime.now(UTC), window, config.policy
        )
        if wants_json(request):
            return as_json(dict(collectors=rows, training_warning_days=window))
        flash, flash_ok = take_flash(request, who, COLLECTORS_FLASH) or ("", False)
        response = page(
            request, "collectors.html.j2", who=who, rows=rows, window=window, flash=flash,
            flash_ok=flash_ok, state_zh={s.value: z for s, z in STATE_ZH.items()},
        )  # fmt: skip
        if flash:
            clear_flash(response, config.secure_cookies)
        return response

    @router.post("/collectors/{collector_id}/training")
    async def training_update(request: Request, collector_id: str) -> Response:
        who = require(request, sessions, *training.EDITORS)
        try:
            data = await forms.read_input(request)
            check_csrf(request, who, data.get("csrf"))
            change = await run_in_threadpool(
                training.set_training, sessions, who, collector_id,
                data.get(training.FIELD), datetime.now(UTC),
            )  # fmt: skip
            ok, message, status = True, change.message, 200
        except forms.InputError as e:
            ok, message, status = False, str(e), 400
        except training.TrainingError as e:
            ok, message, status = False, str(e), 400
        except training.NotYours:
            raise HTTPException(404, "not found") from None
        if wants_json(request):
            return as_json(dict(accepted=ok, message=message), status)
        response = RedirectResponse("/collectors", 303)
        set_flash(response, who, COLLECTORS_FLASH, ok, message, config.secure_cookies)
        return response

    # ------------------------------------------------------------ back office

    @router.get("/feeds")
    async def feeds_page(request: Request) -> Response:
        who = require(request, sessions, Role.BACK_OFFICE)
        runs = await run_in_threadpool(latest_runs, sessions)
        return page(request, "feeds.html.j2", who=who, report=None, kind="", runs=runs, zone=zone)

    @router.get("/feeds/runs")
    async def feed_runs(request: Request) -> Response:
        """The daily run's latest reports (cli.main schedule): the back office, supervisors."""
        who = require(request, sessions, Role.BACK_OFFICE, Role.SUPERVISOR)
        runs = await run_in_threadpool(latest_runs, sessions, 30)
        if wants_json(request):
            return as_json(dict(runs=runs))
        return page(request, "feed_runs.html.j2", who=who, runs=runs, zone=zone)

    @router.get("/feeds/runs/{run_id}/rejected")
    async def feed_run_rejected(request: Request, run_id: int) -> Response:
        """A run's rejected rows (names, ID numbers: the back office's only)."""
        require(request, sessions, Role.BACK_OFFICE)
        path = await run_in_threadpool(rejected_file_of, sessions, run_id)
        if path is None:
            raise HTTPException(404, "no rejected-rows file for this run")
        return FileResponse(path, media_type="text/csv", filename=path.name)

    @router.post("/feeds")
    async def feeds_upload(request: Request) -> Response:
        import tempfile
        from pathlib import Path

        from feeds.csv_files import FileError
        from feeds.loans import intake
        from feeds.payments import post_payments

        who = require(request, sessions, Role.BACK_OFFICE)
        form = await request.form()
        check_csrf(request, who, str(form.get("csrf", "")))
        kind = str(form.get("kind", ""))
        upload = form.get("file")
        if kind not in FEED_KINDS or upload is None or isinstance(upload, str):
            return page(
                request, "feeds.html.j2", 400, who=who, report=None, kind=kind,
                error="kind and file: choose the feed and a CSV file",
            )  # fmt: skip
        if kind in ("branches", "collectors"):
            data = await upload.read()
            apply = form.get("apply") == "1"
            return await master_upload(request, who, kind, upload.filename or "", data, apply)
        today = datetime.now(UTC).astimezone(config.policy.timezone_info()).date()
        changes: list[str] = []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feed.csv"
            path.write_bytes(await upload.read())
            try:
                if kind == "loans":
                    report = await intake(
                        path, sessions, await temporal(), config.task_queue, config.policy,
                        today, dry_run=form.get("dry_run") == "1", started_by=who.username,
                    )  # fmt: skip
                    summary = (
                        f"{report.rows} rows: imported {len(report.good)}, cases started "
                        f"{report.started}, already running {report.attached}"
                    )
                    changes = [f"迁移网点 moved: {m}" for m in report.moved] + [
                        f"欠款已更新 debt updated: {d}" for d in report.debts
                    ]
                else:
                    report = await post_payments(
                        path, sessions, await temporal(), today, config.policy
                    )
                    summary = f"{report.rows} rows: signalled {report.signalled}"
                # The rejected rows to correct and send again (the upload's folder goes).
                rejected = (
                    report.rejected_file.read_bytes()
                    if report.errors and report.rejected_file is not None
                    else b""
                )
            except FileError as e:
                return page(
                    request, "feeds.html.j2", 400, who=who, report=None, kind=kind,
                    error=f"{upload.filename}: {e}",
                )  # fmt: skip
        audit.record(
            sessions, who.username, who.role, f"feed_{kind}", "DONE",
            f"{upload.filename}: {summary}; rejected rows {len(report.errors)}",
        )  # fmt: skip
        stem = Path(upload.filename or "feed").stem
        return page(
            request, "feeds.html.j2", who=who, report=report, kind=kind, summary=summary,
            error="", filename=upload.filename, changes=changes,
            rejected_b64=base64.b64encode(rejected).decode(), rejected_name=f"{stem}.rejected.csv",
        )  # fmt: skip

    async def master_upload(
        request: Request, who: Principal, kind: str, filename: str, data: bytes, apply: bool
    ) -> Response:
        """The branches or collectors file, as `cli.main branches|collectors` reads it
        (audited there); deactivations that move open cases only with `apply`."""
        import re
        import tempfile
        from pathlib import Path

        from feeds.branches import import_branches
        from feeds.collectors import import_collectors
        from feeds.csv_files import FileError

        moves: list[str] = []
        with tempfile.TemporaryDirectory() as tmp:
            # The file's own name (for the audit trail), made safe; its content tells CSV/xlsx.
            path = Path(tmp) / (re.sub(r"[^\w.-]", "_", Path(filename).name)[:80] or "upload")
            path.write_bytes(data)
            try:
                if kind == "branches":
                    report = await run_in_threadpool(
                        import_branches, path, sessions, who, config.policy.timezone
                    )
                else:
                    report = await import_collectors(
                        path, sessions, who, await actions() if apply else None, apply
                    )
                    verb = "moved" if report.applied else "would move"
                    moves = [f"{verb}: {m}" for m in report.moves if m.new_team is not None]
                    moves += [f"refused: {r}" for r in report.refused]
                    moves += [f"deactivated: {c}" for c in report.deactivated]
                    moves += [f"kept active: {c}" for c in report.pending]
            except FileError as e:
                return page(
                    request, "feeds.html.j2", 400, who=who, report=None, kind=kind,
                    error=f"{filename}: {e}",
                )  # fmt: skip
        changes = [f"added: {a}" for a in report.added] + [f"updated: {u}" for u in report.updated]
        if wants_json(request):
            return as_json(dict(summary=report.line(), changes=changes + moves,
                                errors=[dict(row=e.row, field=e.field, message=e.message)
                                        for e in report.errors]))  # fmt: skip
        return page(
            request, "feeds.html.j2", who=who, report=report, kind=kind, summary=report.line(),
            error="", filename=filename, changes=changes + moves,
        )  # fmt: skip

    return router


FEED_KINDS = ("loans", "payments", "branches", "collectors")
COLLECTORS_FLASH = "/collectors"  # the flash's key: never a loan number
DASHBOARD_FLASH = "/dashboard"

__all__ = ["WebConfig", "pages_router"]
