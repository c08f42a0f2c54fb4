"""Section 1, intake: N generated overdue loans through the intake command's code
(validate, upsert, start), against a bare start_workflow loop of N trivial workflows on the
same server with the same concurrency; then the reads (bench/reads.py) with those N cases open.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.harness import CONCURRENCY, bounded, database, dev_server, export_file
from bench.reads import bench_reads
from bench.trivial import TrivialInput, TrivialWorkflow
from domain.policy import fast_policy


async def bench_intake(n: int, db: str) -> dict[str, float]:
    from feeds.loans import intake

    env = await dev_server()
    try:
        with database(db) as (_url, sessions, tmp):
            today = datetime.now(UTC).date()
            path = export_file(tmp / "export.csv", n, today)
            t0 = time.perf_counter()
            report = await intake(
                path,
                sessions,
                env.client,
                "bench-intake",
                fast_policy(),
                today,
                concurrency=CONCURRENCY,
            )
            intake_s = time.perf_counter() - t0
            assert not report.errors and report.started == n, (report.errors[:3], report.started)

            t0 = time.perf_counter()
            await bounded(
                range(n),
                lambda i: env.client.start_workflow(
                    TrivialWorkflow.run, TrivialInput(0, 0), id=f"bare-{i}", task_queue="bench-bare"
                ),
            )
            bare_s = time.perf_counter() - t0
            reads = await bench_reads(env.client, sessions, n)
    finally:
        await env.shutdown()
    return {
        "rows_per_s": n / intake_s,
        "bare_per_s": n / bare_s,
        "ratio": bare_s / intake_s,
        **reads,
    }
