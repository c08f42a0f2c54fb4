"""The baseline: a workflow that does nothing but the Temporal work of a case, with no-op
bodies: K no-op activities, S signals and U Updates received, T short timers and P
search-attribute upserts; so the benchmark can set our cases beside the Temporal server's own
speed and cost."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

with workflow.unsafe.imports_passed_through():
    from domain import search_attributes as sa
    from service.sandbox_code import SHARED, parse_sandbox, share_sandbox_snippets


@dataclass
class TrivialInput:
    activities: int
    signals: int
    updates: int = 0
    timers: int = 0
    upserts: int = 0


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n


# Short, and all started in the first workflow task: they fire together, at a cost of about
# one workflow task (a case's timers mostly end cancelled, in a task it has anyway).
TIMER = timedelta(milliseconds=50)


@workflow.defn(name="BenchTrivial")
class TrivialWorkflow:
    def __init__(self) -> None:
        self.signals = 0
        self.updates = 0
        self.waiting = False  # its work done, waiting for its signals and Updates

    @workflow.run
    async def run(self, inp: TrivialInput) -> int:
        timers = [asyncio.create_task(workflow.sleep(TIMER)) for _ in range(inp.timers)]
        # One upsert before each activity (a case upserts before the activity that follows a
        # change), the rest before the wait.
        upserts = iter(range(inp.upserts))
        for n in range(inp.activities):
            if (u := next(upserts, None)) is not None:
                workflow.upsert_search_attributes([sa.STAGE.value_set(f"T{u}")])
            await workflow.execute_activity(
                "bench_noop", n, start_to_close_timeout=timedelta(seconds=30)
            )
        for u in upserts:
            workflow.upsert_search_attributes([sa.STAGE.value_set(f"T{u}")])
        await asyncio.gather(*timers)
        self.waiting = True
        await workflow.wait_condition(
            lambda: self.signals >= inp.signals and self.updates >= inp.updates
        )
        return inp.activities

    @workflow.signal
    def poke(self) -> None:
        self.signals += 1

    @workflow.query
    def signals_seen(self) -> int:
        return self.signals

    @workflow.query
    def parked(self) -> bool:
        return self.waiting

    @workflow.update
    def touch(self) -> int:
        self.updates += 1
        return self.updates


def worker(client: Client, task_queue: str, max_cached_workflows: int = 1000) -> Worker:
    """The trivial workflow's worker, its sandbox set as our cases worker's (WORKER_SANDBOX:
    shared passes this module through, as it does workflows/; strict imports it per run)."""
    mode = parse_sandbox(os.environ.get("WORKER_SANDBOX", ""))
    share_sandbox_snippets()  # as build_worker does for our cases, in either mode
    restrictions = SandboxRestrictions.default
    if mode == SHARED:
        restrictions = restrictions.with_passthrough_modules("bench.trivial")
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[TrivialWorkflow],
        activities=[noop],
        max_cached_workflows=max_cached_workflows,
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
    )


async def serve() -> None:
    """A worker process (bench/trivial_worker.py): ADDRESS TASK_QUEUE [MAX_CACHED_WORKFLOWS]."""
    client = await Client.connect(sys.argv[1])
    stop = asyncio.Event()
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cache = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    async with worker(client, sys.argv[2], cache):
        print("ready", os.getpid(), flush=True)
        await stop.wait()
