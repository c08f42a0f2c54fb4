"""What a cached case costs in the worker: `python -m bench.memory_profile [K]`.

K cases (default 100) parked at the visit, as in the memory section, in a worker of this
process (the workers' settings, the SDK's sandboxed runner); then:

- tracemalloc: the memory allocated by Python since the worker was idle, per case, by what
  allocated it (the sandbox's per-run imports, decoding the state, the workflow's code ...);
- the modules each run's sandbox imports afresh (not passed through), and what they hold;
- the size of a case's state (CaseState and its parts: policy, history, phone ops ...), as
  deep object sizes in this process and as the JSON payload.

Not a figure of the report: a breakdown to decide what to cut (issue 17, item 2).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import uuid
from collections import Counter
from dataclasses import fields, is_dataclass
from types import ModuleType
from typing import Any

from bench.harness import add_loans, bounded, database, dev_server, rss_kb
from bench.lifecycle import LIFECYCLE_POLICY
from service.case_start import start_case
from service.converter import DATA_CONVERTER
from service.worker_factory import build_worker

FRAMES = 40


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of obj and everything it refers to (not modules, classes or functions), once."""
    seen = set() if seen is None else seen
    todo = [obj]
    total = 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, ModuleType)) or callable(o):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            todo.extend(o.keys())
            todo.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            todo.extend(o)
        elif is_dataclass(o):
            todo.extend(getattr(o, f.name) for f in fields(o) if hasattr(o, f.name))
            if hasattr(o, "__dict__"):
                total += sys.getsizeof(o.__dict__)
        elif hasattr(o, "__dict__"):
            todo.append(o.__dict__)
    return total


def module_size(mod: ModuleType) -> int:
    """Bytes a module copy holds: its dict, its functions and classes (their dicts, code is
    shared), its constants."""
    seen: set[int] = set()
    total = sys.getsizeof(mod) + sys.getsizeof(vars(mod))
    for v in vars(mod).values():
        if isinstance(v, ModuleType) or id(v) in seen:
            continue
        if getattr(v, "__module__", None) != mod.__name__:
            continue
        seen.add(id(v))
        total += sys.getsizeof(v)
        if isinstance(v, type):
            total += sys.getsizeof(v.__dict__)
            for m in vars(v).values():
                if id(m) not in seen:
                    seen.add(id(m))
                    total += sys.getsizeof(m)
    return total


def category(tb: tracemalloc.Traceback) -> str:
    files = [f.filename for f in tb]
    if any("workflow_sandbox/_importer.py" in f for f in files):
        if any("/workflows/" in f for f in files):
            return "sandbox: our workflow modules, re-imported per run"
        return "sandbox: other per-run imports"
    if any("workflow_sandbox/_restrictions.py" in f for f in files):
        return "sandbox: restriction proxies"
    if any("temporalio/converter.py" in f or "service/converter.py" in f for f in files):
        return "payload conversion (inputs, results, state)"
    if any("/workflows/" in f for f in files):
        return "our workflow code (state, handles, tasks)"
    if any("temporalio/worker/_workflow_instance.py" in f for f in files):
        return "SDK workflow instance"
    if any("temporalio/worker/workflow_sandbox" in f for f in files):
        return "sandbox: instance set-up"
    if any("temporalio/worker/_workflow.py" in f for f in files):
        return "SDK worker (activations)"
    if any("/activities/" in f or "sqlalchemy" in f for f in files):
        return "activities, database"
    return f"other: {tb[0].filename.rsplit('/', 2)[-2:]}"


async def main(k: int) -> None:
    env = await dev_server()
    try:
        with database("sqlite") as (url, sessions, tmp):
            report = add_loans(sessions, tmp / "export.csv", k)
            tq = f"profile-{uuid.uuid4().hex[:6]}"
            workers = build_worker(
                env.client, tq, sessions, tmp / "data", max_cached_workflows=max(1000, k + 100)
            )
            async with workers:
                await asyncio.sleep(2)
                gc.collect()
                tracemalloc.start(FRAMES)
                idle_rss = rss_kb(0 or __import__("os").getpid())
                before = tracemalloc.take_snapshot()
                await bounded(
                    report.good,
                    lambda spec: start_case(
                        env.client, tq, spec.loan_no, spec.branch, LIFECYCLE_POLICY
                    ),
                )
                parked_q = f"TaskQueue='{tq}' AND CollectionStage='FIELD_VISIT'"
                while (await env.client.count_workflows(parked_q)).count < k:
                    await asyncio.sleep(0.5)
                await asyncio.sleep(5)  # visit tasks and notices written
                gc.collect()
                after = tracemalloc.take_snapshot()
                parked_rss = rss_kb(__import__("os").getpid())
                tracemalloc.stop()
                wf_worker = workers.workers["cases"]._workflow_worker
                assert wf_worker is not None
                running = list(wf_worker._running_workflows.values())
                report_breakdown(k, before, after, idle_rss, parked_rss, running)
    finally:
        await env.shutdown()


def report_breakdown(
    k: int,
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    idle_rss: int,
    parked_rss: int,
    running: list[Any],
) -> None:
    stats = after.compare_to(before, "traceback")
    by_cat: Counter[str] = Counter()
    for st in stats:
        by_cat[category(st.traceback)] += st.size_diff
    total = sum(by_cat.values())
    print(f"\n{len(running)} runs cached; RSS grew {(parked_rss - idle_rss) / k:.0f} KB a case")
    print(f"tracemalloc: {total / k / 1024:.0f} KB a case (Python objects), by who allocated:")
    for cat, size in by_cat.most_common():
        if abs(size) / k >= 512:
            print(f"  {size / k / 1024:8.1f} KB  {cat}")
    print("\ntop allocation sites (per case):")
    for st in after.compare_to(before, "lineno")[:25]:
        print(f"  {st.size_diff / k / 1024:8.1f} KB  {st.traceback[0]}")

    ours = [r for r in running if r.instance.get_info().workflow_type == "LoanCollectionWorkflow"]
    inst = ours[0].instance
    modules = inst.importer.new_modules
    fresh = sorted(n for n, m in modules.items() if m is not sys.modules.get(n))
    print(f"\nmodules a run's sandbox holds: {len(modules)}; imported afresh: {len(fresh)}")
    sizes = {n: module_size(modules[n]) for n in fresh if isinstance(modules[n], ModuleType)}
    for n, size in sorted(sizes.items(), key=lambda x: -x[1])[:40]:
        print(f"  {size / 1024:7.1f} KB  {n}")
    print(f"  {sum(sizes.values()) / 1024:7.1f} KB  in all (dicts, functions, classes)")

    wf = inst.globals_and_locals["__temporal_in_sandbox"].instance._object
    state = wf.s
    print(f"\na case's state: {deep_size(state) / 1024:.1f} KB in memory")
    for f in fields(state):
        size = deep_size(getattr(state, f.name))
        if size > 1024:
            print(f"  {size / 1024:7.1f} KB  {f.name}")
    payload = DATA_CONVERTER.payload_converter.to_payloads([state])[0]
    print(f"  as JSON: {len(payload.data) / 1024:.1f} KB; history entries {len(state.history)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
