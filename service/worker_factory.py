"""One place that builds the workers, for worker.py, the demo and the tests alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agreements import AgreementActivities
from activities.cases import CaseActivities
from activities.complaints import ComplaintActivities
from activities.contacts import ContactActivities
from activities.daily_run import DailyRunActivities
from activities.documents import PdfRenderer
from activities.metrics import ActivityTiming
from activities.safety import SafetyActivities
from activities.sms import SmsActivities
from activities.sms_gateway import RecordingGateway, SmsGateway
from activities.training_reminders import TrainingReminderActivities
from domain.names import ACTIVITIES, CASE_PARTS, CASES, RENDER, ROLES, SMS, WORKFLOWS, role_queue
from domain.policy import Policy
from domain.strategy import Strategy
from service.sandbox_code import (
    SANDBOX_MODES,
    STRICT,
    share_sandbox_snippets,
    share_workflow_code,
    workflow_runner,
)
from workflows.collection import LoanCollectionWorkflow
from workflows.daily_run import DailyFeedRunWorkflow
from workflows.training_reminders import TrainingReminderWorkflow

# role_activities' key for what the cases role also serves on its queue: render_agreement and
# send_sms where runs of released versions (before collection-v4) schedule them.
RELEASED = "released"


def role_activities(
    sessions: sessionmaker[Session],
    data_dir: Path,
    gateway: SmsGateway | None = None,
    sms_language: str = "zh",
    pdf: PdfRenderer | None = None,
    strategy: Strategy | None = None,
    roles: Iterable[str] = ROLES,
) -> dict[str, list[object]]:
    """Each role's activities, built for the roles asked only; `strategy` for the
    assessment, else the worker's strategy file (COLLECTION_STRATEGY_FILE): a what-if runs
    one worker per strategy in one process.

    With the cases role also RELEASED: rendering and sending as runs of released versions
    (before collection-v4) schedule them, on the case's own queue. They share the render and
    sms roles' objects when the process has those; a cases-only process renders in its own
    process, with a renderer made at the first such render (never, once no released case is
    left: no WeasyPrint, no PDF pool). The render role's renderer is made here, so a missing
    CJK font stops the worker at start."""
    wanted = set(roles)
    sms = (
        SmsActivities(sessions, gateway or RecordingGateway(), sms_language)
        if wanted & {CASES, SMS}
        else None
    )
    if RENDER in wanted and pdf is None:
        pdf = PdfRenderer()
    agreements = (
        AgreementActivities(sessions, data_dir / "agreements", pdf)
        if wanted & {CASES, RENDER}
        else None
    )
    by_role: dict[str, list[object]] = {}
    if CASES in wanted:
        assert sms is not None
        cases = CaseActivities(sessions, strategy)
        contacts = ContactActivities(sessions)
        safety = SafetyActivities(sessions, sms)  # a safety alert texts staff at once
        complaints = ComplaintActivities(sessions)
        by_role[CASES] = [
            cases.load_case,
            cases.assess_case,
            cases.assign_collectors,
            cases.check_visit_training,
            cases.record_transition,
            cases.create_task,
            cases.record_visit,
            cases.record_payment,
            cases.record_debt,
            cases.record_signature,
            cases.record_promise,
            cases.record_waiver,
            contacts.record_call,
            contacts.record_consent,
            safety.raise_safety_alert,
            safety.record_safety,
            complaints.record_complaint,
        ]
        assert agreements is not None
        by_role[RELEASED] = [agreements.render_agreement, sms.send_sms]
    if RENDER in wanted:
        assert agreements is not None
        by_role[RENDER] = [agreements.render_agreement]
    if SMS in wanted:
        assert sms is not None
        by_role[SMS] = [sms.send_sms]
    return by_role


def activities(
    sessions: sessionmaker[Session],
    data_dir: Path,
    gateway: SmsGateway | None = None,
    sms_language: str = "zh",
    pdf: PdfRenderer | None = None,
    strategy: Strategy | None = None,
) -> list[object]:
    """Every role's activities in one list."""
    by_role = role_activities(sessions, data_dir, gateway, sms_language, pdf, strategy)
    return [act for role in ROLES for act in by_role[role]]


def daily_run_activities(
    sessions: sessionmaker[Session],
    client: Client,
    task_queue: str,
    data_dir: Path,
    policy: Policy | None = None,
) -> list[object]:
    """The daily feed run's: the intake starts cases and the payment feed signals them, with
    the worker's own client, on its task queue; the configured policy unless given."""
    if policy is None:
        from service.settings import Settings

        policy = Settings.from_env().policy()
    run = DailyRunActivities(sessions, client, task_queue, policy, data_dir / "daily-runs")
    return [run.pick_export, run.run_intake, run.run_payments, run.finish_run]


def reminder_activities(
    sessions: sessionmaker[Session], gateway: SmsGateway, sms_language: str, policy: Policy
) -> list[object]:
    """The supervisors' daily training reminder: staff texts through the same gateway."""
    sms = SmsActivities(sessions, gateway, sms_language)
    reminders = TrainingReminderActivities(sessions, sms, policy)
    return [reminders.list_training_reminders, reminders.send_training_reminder]


class RoleWorkers:
    """The Temporal Workers of one process, one per role (WORKER_ROLES), each polling its
    own task queue: `async with` starts them all and stops them all."""

    def __init__(self, workers: dict[str, Worker], owned: list[ThreadPoolExecutor]) -> None:
        self.workers = workers
        self._owned = owned  # the thread pools made here, shut down with the workers
        self._stack: AsyncExitStack | None = None

    @property
    def task_queues(self) -> dict[str, str]:
        return {role: w.task_queue for role, w in self.workers.items()}

    async def __aenter__(self) -> RoleWorkers:
        async with AsyncExitStack() as stack:
            for worker in self.workers.values():
                await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                # Every worker stops polling at once and lets its running activities finish,
                # all within one grace period: one after another, the last would still take
                # work while the first drained, and the process could take one per role.
                try:
                    await asyncio.gather(*(w.shutdown() for w in self.workers.values()))
                finally:
                    await stack.aclose()  # the workers' own exits (their shutdown is done)
        finally:
            for pool in self._owned:
                pool.shutdown(wait=False)


def build_worker(
    client: Client,
    task_queue: str,
    sessions: sessionmaker[Session],
    data_dir: Path,
    gateway: SmsGateway | None = None,
    executor: ThreadPoolExecutor | None = None,
    sms_language: str = "zh",
    max_cached_workflows: int = 1000,
    pdf: PdfRenderer | None = None,
    policy: Policy | None = None,
    strategy: Strategy | None = None,
    roles: Iterable[str] = ROLES,
    sms_threads: int = 8,
    workflow_tasks: int | None = None,
    workflow_polls: int | None = None,
    sms_rate: float | None = None,
    sandbox: str = STRICT,
    cases_part: str | None = None,
) -> RoleWorkers:
    """The workers of `roles` (by default all: one process does everything).

    cases: the workflows (cases, the daily run, the training reminder) and every activity but
    rendering and sending, on `task_queue`;
    render: the agreement render, on "<task_queue>-render", as many at once as the PDF
    processes plus one (so one's database work overlaps another's render); sms: sending, on
    "<task_queue>-sms", at most `sms_rate` a second on that task queue (the server's limit
    for every sms worker together: the provider's rate, SMS_RATE_PER_SECOND). The cases
    role also serves rendering and sending on its own queue, where runs of released versions
    (before collection-v4) still schedule them, whatever other roles the process has
    (role_activities, RELEASED); those sends are not held to `sms_rate`. `workflow_tasks` and
    `workflow_polls`: the cases role's workflow tasks at once and workflow-task pollers (the
    SDK's defaults when None). `sandbox`: how the cases role's runs import workflows/
    (service/sandbox_code.workflow_runner); strict here, so every test runs the workflows in
    the sandbox that refuses the clock; worker.py passes WORKER_SANDBOX (shared by default).
    `cases_part` (WORKER_CASES_PART): WORKFLOWS, the cases role's Worker polls its queue for
    workflow tasks only (no activity object is made, no policy read); ACTIVITIES, for
    activity tasks only (no workflow, no cache); None, both."""
    wanted = [r for r in ROLES if r in set(roles)]
    if cases_part not in (None, *CASE_PARTS):  # not silently both
        raise ValueError(f"cases_part: {' or '.join(CASE_PARTS)} or None, got {cases_part!r}")
    if sandbox not in SANDBOX_MODES:
        raise ValueError(f"sandbox: one of {', '.join(SANDBOX_MODES)}, got {sandbox!r}")
    case_flows = CASES in wanted and cases_part != ACTIVITIES
    case_acts = CASES in wanted and cases_part != WORKFLOWS
    if policy is None and case_acts:
        from service.settings import Settings

        policy = Settings.from_env().policy()
    gateway = gateway or RecordingGateway()
    acting = [r for r in wanted if r != CASES or case_acts]
    by_role = role_activities(sessions, data_dir, gateway, sms_language, pdf, strategy, acting)
    owned: list[ThreadPoolExecutor] = []

    def pool(threads: int) -> ThreadPoolExecutor:
        owned.append(ThreadPoolExecutor(max_workers=threads))
        return owned[-1]

    def worker(role: str, acts: list[object], threads: ThreadPoolExecutor, **kw: Any) -> Worker:
        return Worker(
            client,
            task_queue=role_queue(task_queue, role),
            activities=acts,
            activity_executor=threads,
            max_concurrent_activities=threads._max_workers,
            interceptors=[ActivityTiming()],  # collection_activity_seconds
            # On SIGTERM, running activities get this long to finish before they are cancelled.
            graceful_shutdown_timeout=timedelta(seconds=30),
            **kw,
        )

    workers: dict[str, Worker] = {}
    if CASES in wanted:
        acts: list[object] = []
        if case_acts:
            assert policy is not None
            acts = (
                by_role[CASES]
                + by_role[RELEASED]
                + daily_run_activities(sessions, client, task_queue, data_dir, policy)
                + reminder_activities(sessions, gateway, sms_language, policy)
            )
        flows: dict[str, Any] = {}  # none: the Worker polls for activity tasks only
        if case_flows:
            if sandbox == STRICT:  # each run imports workflows/ afresh: they share its code
                share_workflow_code()  # (and the sandbox's compiled snippets)
            else:
                share_sandbox_snippets()
            flows = {
                "workflows": [
                    LoanCollectionWorkflow,
                    DailyFeedRunWorkflow,
                    TrainingReminderWorkflow,
                ],
                "workflow_runner": workflow_runner(sandbox),
                "max_cached_workflows": max_cached_workflows,
                **({"max_concurrent_workflow_tasks": workflow_tasks} if workflow_tasks else {}),
                **(
                    {"max_concurrent_workflow_task_polls": workflow_polls} if workflow_polls else {}
                ),
            }
        workers[CASES] = worker(CASES, acts, executor or pool(16), **flows)
    if RENDER in wanted:
        processes = getattr(pdf, "processes", 0)  # none given: rendered in the thread
        workers[RENDER] = worker(RENDER, by_role[RENDER], pool(processes + 1))
    if SMS in wanted:
        # The provider's rate as the task queue's: the server hands out no more sends than it
        # takes, to every sms worker together, so a wave waits in the queue (in priority
        # order, domain/case_rules.sms_priority) instead of being refused with 429s.
        limit = {} if sms_rate is None else {"max_task_queue_activities_per_second": sms_rate}
        workers[SMS] = worker(SMS, by_role[SMS], pool(sms_threads), **limit)
    return RoleWorkers(workers, owned)
