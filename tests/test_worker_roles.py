"""Worker roles (issue 17): agreement rendering and SMS sending on task queues of their own,
so they can have their own worker processes and cores; one worker with every role (the
default) still runs everything. On the time-skipping server with the real activities."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, PendingActivityState, WorkflowExecutionStatus
from temporalio.client import WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import activities.agreements as agreements_module
import service.worker_factory as worker_factory
import worker as worker_module
import workflows.case as case_module
from activities.documents import PdfRenderer
from domain.names import Activities as A
from domain.names import role_queue
from domain.policy import fast_policy
from service.settings import Settings, parse_cases_part, parse_roles
from service.worker_factory import RELEASED, RoleWorkers, build_worker, role_activities
from tests.harness import Harness, assert_replays
from tests.test_workflow_paths import DEBT, propose, sign, to_field_visit, visit
from worker import DB_HEADROOM, db_connections


class CountingRenderer(PdfRenderer):
    """The render worker's renderer: counts the agreements it rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.rendered = 0

    def render(self, html: str) -> bytes:
        self.rendered += 1
        return super().render(html)


@pytest.fixture
def h(env, sqlite_sessions, tmp_path: Path, request) -> Harness:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("walks policy days: time-skipping server only")
    return Harness(env, env.client, f"tq-{uuid.uuid4()}", sqlite_sessions, tmp_path / "data")


def names(acts: list[object]) -> set[str]:
    return {a.__temporal_activity_definition.name for a in acts}  # type: ignore[attr-defined]


def test_worker_roles_setting() -> None:
    assert parse_roles("") == ("cases", "render", "sms")  # the default: everything
    assert parse_roles(" Render , cases") == ("cases", "render")
    with pytest.raises(ValueError, match="WORKER_ROLES: unknown role 'pdf'"):
        parse_roles("cases,pdf")
    assert Settings().worker_roles == ("cases", "render", "sms")


def test_the_cases_part_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKER_CASES_PART: workflows or activities, both when unset; anything else, or a part
    for a process without the cases role, is refused at start, naming the variable."""
    assert parse_cases_part("") is None and Settings().cases_part is None
    assert parse_cases_part(" Workflows ") == "workflows"
    monkeypatch.setenv("WORKER_CASES_PART", "activities")
    assert Settings.from_env().cases_part == "activities"
    monkeypatch.setenv("WORKER_CASES_PART", "workflow")  # not quite
    with pytest.raises(ValueError, match=r"^WORKER_CASES_PART: 'workflow' is not a part"):
        Settings.from_env()
    monkeypatch.setenv("WORKER_CASES_PART", "workflows")
    monkeypatch.setenv("WORKER_ROLES", "render,sms")
    with pytest.raises(ValueError, match=r"^WORKER_CASES_PART=workflows: only for .*cases role"):
        Settings.from_env()
    # Made in code, not from the environment: refused all the same, not silently both.
    with pytest.raises(ValueError, match=r"^WORKER_CASES_PART: 'workflow' is not a part"):
        Settings(cases_part="workflow")
    with pytest.raises(ValueError, match=r"^WORKER_SANDBOX: one of shared, strict"):
        Settings(sandbox="off")
    # ... and normalised as from the environment: build_worker takes the exact names only.
    made = Settings(cases_part=" Workflows", sandbox="STRICT")
    assert (made.cases_part, made.sandbox) == ("workflows", "strict")
    assert Settings(cases_part="").cases_part is None
    # A workflows-only process holds no database session in a thread of its own.
    flows = Settings(activity_threads=16, sms_threads=8, cases_part="workflows")
    assert db_connections(flows) == 8 + (1 + 1) + DB_HEADROOM


def workflow_task_started(events: list[object]) -> bool:
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED  # type: ignore[attr-defined]
        for e in events
    )


async def test_a_cases_queue_split_between_a_workflows_and_an_activities_process(
    h: Harness,
) -> None:
    """WORKER_CASES_PART: a workflows-only cases worker runs the case's workflow tasks and no
    activity; an activities-only one (with render and sms) runs its activities and no workflow
    task. Each alone leaves the case waiting; the two together take it to the visit."""
    flows = build_worker(
        h.client, h.task_queue, h.sessions, h.data_dir, roles=["cases"], cases_part="workflows"
    )
    acts = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, cases_part="activities")
    assert set(flows.workers) == {"cases"} and set(acts.workers) == {"cases", "render", "sms"}
    flows_config, acts_config = flows.workers["cases"].config(), acts.workers["cases"].config()
    assert not flows_config.get("activities") and len(flows_config["workflows"]) == 3
    assert not acts_config.get("workflows")
    assert {A.LOAD_CASE, A.RECORD_VISIT, "daily_run_intake", "send_training_reminder"} <= names(
        list(acts_config["activities"])
    )
    async with acts:  # activities only: nobody takes the case's first workflow task
        _, handle = await h.start()
        await asyncio.sleep(1.0)
        assert not workflow_task_started([e async for e in handle.fetch_history_events()])
    async with flows:  # workflows only: the case's first activity waits in its queue
        await h.until(handle, lambda s: True, "the first workflow task")
        await asyncio.sleep(1.0)
        [pending] = (await handle.describe()).raw_description.pending_activities
        # The stage's transition, the case's first activity, waits for an activity worker.
        assert pending.activity_type.name == A.RECORD_TRANSITION
        assert pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        assert pending.attempt == 1 and not pending.HasField("last_failure")
        again = build_worker(  # a Worker runs once: a new one, as a restarted process
            h.client, h.task_queue, h.sessions, h.data_dir, cases_part="activities"
        )
        async with again:
            status = await to_field_visit(h, handle)
    assert status.counters.sms_sent >= 1
    await assert_replays(handle)


def test_a_render_or_sms_process_lowers_its_priority_the_cases_role_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WORKER_NICE: a render-only or sms-only process gives the CPU to the cases and the
    server first; a process with the cases role keeps its priority whatever it says."""
    niced: list[int] = []
    monkeypatch.setattr(worker_module.os, "nice", lambda n: niced.append(n) or n)
    monkeypatch.setenv("WORKER_NICE", "10")
    monkeypatch.setenv("WORKER_ROLES", "render,sms")
    assert worker_module.lower_priority(Settings.from_env()) == 10
    assert niced == [10]
    monkeypatch.setenv("WORKER_ROLES", "cases,sms")
    assert worker_module.lower_priority(Settings.from_env()) == 0
    monkeypatch.setenv("WORKER_ROLES", "render")
    monkeypatch.setenv("WORKER_NICE", "0")
    assert worker_module.lower_priority(Settings.from_env()) == 0
    assert niced == [10]  # nothing more


async def test_the_cases_role_takes_its_workflow_task_limits_from_the_settings(
    env, sqlite_sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """WORKER_WORKFLOW_TASKS and WORKER_WORKFLOW_POLLS reach the cases role's Worker (unset:
    the SDK's defaults)."""
    monkeypatch.setenv("WORKER_WORKFLOW_TASKS", "4")
    monkeypatch.setenv("WORKER_WORKFLOW_POLLS", "2")
    settings = Settings.from_env()
    assert (settings.workflow_tasks, settings.workflow_polls) == (4, 2)
    built = build_worker(
        env.client,
        "tq-limits",
        sqlite_sessions,
        tmp_path,
        policy=fast_policy(),
        roles=("cases",),
        workflow_tasks=settings.workflow_tasks,
        workflow_polls=settings.workflow_polls,
    )
    config = built.workers["cases"].config()
    assert config["max_concurrent_workflow_tasks"] == 4
    assert config["max_concurrent_workflow_task_polls"] == 2
    default = build_worker(
        env.client, "tq-default", sqlite_sessions, tmp_path, policy=fast_policy(), roles=("cases",)
    )
    assert default.workers["cases"].config().get("max_concurrent_workflow_tasks") is None
    assert Settings().workflow_tasks is None


@pytest.mark.parametrize("name", ["WORKER_WORKFLOW_TASKS", "WORKER_WORKFLOW_POLLS"])
def test_workflow_task_limits_below_the_sdks_minimum_are_refused_by_name(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With cached workflows (the default) the SDK needs 2 workflow tasks and 2 pollers at
    least: 1 is refused when the settings are read, naming the variable, not by the worker
    later with the SDK's own words."""
    monkeypatch.setenv(name, "1")
    with pytest.raises(ValueError, match=rf"^{name}=1: .*at least 2"):
        Settings.from_env()
    monkeypatch.setenv(name, "many")
    with pytest.raises(ValueError, match=rf"^{name}: a whole number, got 'many'"):
        Settings.from_env()
    # Without a cache, one is enough; none never is.
    monkeypatch.setenv("WORKER_MAX_CACHED_WORKFLOWS", "0")
    monkeypatch.setenv(name, "1")
    settings = Settings.from_env()
    assert (settings.workflow_tasks, settings.workflow_polls).count(1) == 1
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValueError, match=rf"^{name}=0: at least 1"):
        Settings.from_env()
    monkeypatch.setenv("WORKER_MAX_CACHED_WORKFLOWS", "1000")
    monkeypatch.setenv(name, "2")
    assert 2 in (Settings.from_env().workflow_tasks, Settings.from_env().workflow_polls)


async def test_the_database_pool_has_a_connection_for_every_activity_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every role's activity threads can hold a session at once (sms and render threads
    too, not only the cases'), with headroom: none waits for the pool."""
    every = Settings(activity_threads=16, sms_threads=8, pdf_processes=2)
    assert db_connections(every) == 16 + 8 + (2 + 1) + DB_HEADROOM
    render = Settings(activity_threads=16, pdf_processes=4, worker_roles=("render",))
    assert db_connections(render) == 4 + 1 + DB_HEADROOM
    cases_sms = Settings(activity_threads=10, sms_threads=3, worker_roles=("cases", "sms"))
    assert db_connections(cases_sms) == 10 + 3 + DB_HEADROOM

    class Made(Exception):
        pass

    def make_engine(url: str, **kwargs: object) -> None:
        raise Made(kwargs)

    monkeypatch.setattr(worker_module, "make_engine", make_engine)
    postgres = Settings(
        db_url="postgresql+psycopg://db/collection", activity_threads=16, sms_threads=8
    )
    with pytest.raises(Made) as made:
        await worker_module.run_worker(postgres, asyncio.Event())
    assert made.value.args[0] == {"pool_size": 16 + 8 + 2 + DB_HEADROOM}


def test_the_cases_role_renders_and_sends_only_for_released_runs(
    sqlite_sessions, tmp_path: Path
) -> None:
    cases = role_activities(sqlite_sessions, tmp_path, roles=["cases"])
    assert set(cases) == {"cases", RELEASED}
    assert {A.RENDER_AGREEMENT, A.SEND_SMS}.isdisjoint(names(cases["cases"]))
    assert A.RECORD_SIGNATURE in names(cases["cases"])
    # On the case's own queue, where runs begun before collection-v4 schedule them.
    assert names(cases[RELEASED]) == {A.RENDER_AGREEMENT, A.SEND_SMS}


async def scheduled_on(handle: WorkflowHandle) -> dict[str, set[str]]:
    """The task queues each activity type was scheduled on, from the case's history."""
    queues: dict[str, set[str]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            queues.setdefault(attrs.activity_type.name, set()).add(attrs.task_queue.name)
    return queues


async def to_signing(h: Harness, handle: WorkflowHandle) -> None:
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT)
    await h.at_stage(handle, "AGREEMENT_SIGNING")


async def test_the_render_worker_renders_the_agreement_on_its_own_queue(h: Harness) -> None:
    pdf = CountingRenderer()
    cases_and_sms = build_worker(
        h.client, h.task_queue, h.sessions, h.data_dir, roles=parse_roles("cases,sms")
    )
    render = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, pdf=pdf, roles=["render"])
    assert set(cases_and_sms.workers) == {"cases", "sms"} and set(render.workers) == {"render"}
    async with cases_and_sms, render:
        _, handle = await h.start()
        await to_signing(h, handle)
        await sign(h, handle)
        await h.at_stage(handle, "FOLLOW_UP")
        await h.pay(handle, DEBT)
        assert (await handle.result()).outcome == "PAID_IN_FULL"
    assert pdf.rendered == 1  # the render worker's renderer; the cases worker has none
    queues = await scheduled_on(handle)
    assert queues[A.RENDER_AGREEMENT] == {role_queue(h.task_queue, "render")}
    assert queues[A.SEND_SMS] == {f"{h.task_queue}-sms"}
    assert queues[A.RECORD_SIGNATURE] == {h.task_queue}
    await assert_replays(handle)


async def test_without_a_render_worker_the_agreement_waits(h: Harness) -> None:
    cases = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, roles=parse_roles("cases"))
    sms = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, roles=["sms"])
    async with cases, sms:
        _, handle = await h.start()
        await to_signing(h, handle)
        await asyncio.sleep(1.5)  # a render worker would have rendered it by now
        status = await h.status(handle)
        assert status.stage == "AGREEMENT_SIGNING" and status.agreement is None
        described = await handle.describe()
        assert described.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        [pending] = described.raw_description.pending_activities
        assert pending.activity_type.name == A.RENDER_AGREEMENT
        # Waiting in its task queue for a worker, not failing and retrying.
        assert pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        assert pending.attempt == 1 and not pending.HasField("last_failure")

        pdf = CountingRenderer()
        async with build_worker(
            h.client, h.task_queue, h.sessions, h.data_dir, pdf=pdf, roles=["render"]
        ):
            await sign(h, handle)  # waits for the agreement, then signs it
            await h.at_stage(handle, "FOLLOW_UP")
        assert pdf.rendered == 1
        await h.pay(handle, DEBT)
        assert (await handle.result()).outcome == "PAID_IN_FULL"


class MadeRenderers:
    """Stands in for activities.agreements.PdfRenderer: records each renderer made."""

    made: list[PdfRenderer] = []

    def __new__(cls, *args: object, **kwargs: object) -> PdfRenderer:  # type: ignore[misc]
        renderer = PdfRenderer(*args, **kwargs)  # type: ignore[arg-type]
        cls.made.append(renderer)
        return renderer


async def test_a_released_case_renders_and_sends_on_a_cases_only_worker(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs begun before collection-v4 schedule render_agreement and send_sms on the case's
    own queue. README's split (cases with sms on one machine, render on another) or
    WORKER_ROLES=cases must still serve them there: the cases worker renders (in its own
    process, the renderer made at the first such render) and sends them."""
    # A released run's routing: every activity on the case's queue (_task_queue -> None).
    # Unsandboxed, so the patched method is the one the workflow runs.
    monkeypatch.setattr(case_module.Case, "_task_queue", lambda self, name: None)

    def unsandboxed(*args: object, **kwargs: object) -> Worker:
        if kwargs.get("workflows"):
            kwargs["workflow_runner"] = UnsandboxedWorkflowRunner()
        return Worker(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_factory, "Worker", unsandboxed)
    monkeypatch.setattr(agreements_module, "PdfRenderer", MadeRenderers)
    MadeRenderers.made.clear()
    pdf = CountingRenderer()
    cases = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, roles=["cases"])
    render = build_worker(h.client, h.task_queue, h.sessions, h.data_dir, pdf=pdf, roles=["render"])
    assert MadeRenderers.made == []  # no renderer (nor PDF pool) until a released case needs it
    async with cases, render:
        _, handle = await h.start()
        await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice sent")
        await to_signing(h, handle)
        await sign(h, handle)
        await h.at_stage(handle, "FOLLOW_UP")
        await h.pay(handle, DEBT)
        assert (await handle.result()).outcome == "PAID_IN_FULL"
    queues = await scheduled_on(handle)
    assert queues[A.RENDER_AGREEMENT] == {h.task_queue} and queues[A.SEND_SMS] == {h.task_queue}
    assert pdf.rendered == 0  # the render worker's queue saw nothing of this case
    [made] = MadeRenderers.made  # one renderer, made at the render, in the worker's process
    assert made.processes == 0


STARTED: list[tuple[float, str]] = []  # (time.monotonic(), task queue) of each slow start


@activity.defn(name="roles_test_slow")
async def slow(task_queue: str) -> None:
    """Longer than the grace period: the worker cancels it when the grace is over."""
    STARTED.append((time.monotonic(), task_queue))
    await asyncio.sleep(60)


@workflow.defn(name="RolesTestSlow", sandboxed=False)
class SlowOn:
    @workflow.run
    async def run(self, task_queue: str) -> None:
        await workflow.execute_activity(
            slow, task_queue, task_queue=task_queue, start_to_close_timeout=timedelta(minutes=2)
        )


async def test_the_role_workers_stop_together(dev_env) -> None:  # type: ignore[no-untyped-def]
    """On SIGTERM every role's worker stops polling at once and the process is gone within
    one grace period, not one per role with the cases worker still taking work meanwhile."""
    client, tq, grace = dev_env.client, f"tq-{uuid.uuid4()}", 2.0

    def worker(role: str, **kw: object) -> Worker:
        return Worker(
            client,
            task_queue=role_queue(tq, role),
            activities=[slow],
            graceful_shutdown_timeout=timedelta(seconds=grace),
            **kw,  # type: ignore[arg-type]
        )

    STARTED.clear()
    roles = RoleWorkers(
        {
            "cases": worker("cases", workflows=[SlowOn]),
            "render": worker("render"),
            "sms": worker("sms"),
        },
        [],
    )
    async with roles:
        for role in ("cases", "render", "sms"):
            await client.start_workflow(
                SlowOn.run, role_queue(tq, role), id=f"slow-{uuid.uuid4()}", task_queue=tq
            )
        while len(STARTED) < 3:  # one activity running on each role's queue
            await asyncio.sleep(0.1)
        stopping = time.monotonic()
        exiting = asyncio.ensure_future(roles.__aexit__(None, None, None))
        await asyncio.sleep(0.3)
        # Work that arrives after the SIGTERM, for the cases worker's queue.
        await client.start_workflow(SlowOn.run, tq, id=f"late-{uuid.uuid4()}", task_queue=tq)
        await exiting
        took = time.monotonic() - stopping
    # (The block's own exit finds the workers stopped: it does nothing.)
    assert [q for t, q in STARTED if t >= stopping] == []  # nothing started after the SIGTERM
    assert took < 2 * grace, f"shutdown took {took:.1f} s (grace {grace} s)"


async def test_build_worker_refuses_a_part_or_sandbox_it_does_not_know(
    env, sqlite_sessions, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    def build(**kw: str) -> object:
        return build_worker(
            env.client, "tq-refused", sqlite_sessions, tmp_path, policy=fast_policy(), **kw
        )

    with pytest.raises(ValueError, match=r"^cases_part: workflows or activities or None"):
        build(cases_part="workflow")
    with pytest.raises(ValueError, match=r"^sandbox: one of shared, strict, got 'Strict'"):
        build(sandbox="Strict")
