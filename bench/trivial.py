"""The baseline: a workflow that does nothing but run K no-op activities and wait for S
signals, so the benchmark can set our cases beside the Temporal server's own speed."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@dataclass
class TrivialInput:
    activities: int
    signals: int


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n


@workflow.defn(name="BenchTrivial")
class TrivialWorkflow:
    def __init__(self) -> None:
        self.signals = 0

    @workflow.run
    async def run(self, inp: TrivialInput) -> int:
        for n in range(inp.activities):
            await workflow.execute_activity(
                "bench_noop", n, start_to_close_timeout=timedelta(seconds=30)
            )
        await workflow.wait_condition(lambda: self.signals >= inp.signals)
        return inp.activities

    @workflow.signal
    def poke(self) -> None:
        self.signals += 1

    @workflow.query
    def signals_seen(self) -> int:
        return self.signals


def worker(client: Client, task_queue: str, max_cached_workflows: int = 1000) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[TrivialWorkflow],
        activities=[noop],
        max_cached_workflows=max_cached_workflows,
    )


async def _main() -> None:
    """A worker process: python -m bench.trivial ADDRESS TASK_QUEUE [MAX_CACHED_WORKFLOWS]."""
    client = await Client.connect(sys.argv[1])
    stop = asyncio.Event()
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cache = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    async with worker(client, sys.argv[2], cache):
        print("ready", os.getpid(), flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
