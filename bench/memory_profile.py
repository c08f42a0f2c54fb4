"""What a cached case costs in the worker, part by part: `python -m bench.memory_profile`.

No server: the parts are measured where they are made, in this process.

1. The sandbox: every run the worker caches gets a sandbox that imports the workflow's
   modules afresh (those not passed through). Bytes a run's sandbox allocates (tracemalloc)
   and the modules it imports, for the trivial workflow (bench/trivial.py) and ours, with
   each run compiling the modules again (the SDK's way without a bytecode cache) and with
   the compiled code shared (service/sandbox_code.py).
2. The payload converter: every run gets a new one; Pydantic's keeps its type adapters (one
   per type decoded) in it. RSS of the adapters a parked case's run makes, per run, with
   Pydantic's converter and with ours (service/converter.py: one set per process).
3. A case's state: CaseState in memory (deep size) and as JSON, with its parts (the policy,
   100 history entries: the most a run keeps).

Not a figure of the report: the breakdown behind the memory section's figure (issue 17).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tracemalloc
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _fake_info
from temporalio.workflow import _Definition

from bench.lifecycle import LIFECYCLE_POLICY
from bench.trivial import TrivialWorkflow
from domain import models
from domain.stages import Stage
from service.converter import DATA_CONVERTER
from service.sandbox_code import share_workflow_code
from workflows.case import HISTORY_KEPT
from workflows.collection import LoanCollectionWorkflow

RUNS = 20
# What a case's run decodes until it is parked at the visit: its input, the activities'
# results, and the messages' arguments its handlers declare.
DECODED = (
    models.CaseInput,
    models.CaseFacts,
    models.Assessment,
    list[str],
    models.SmsResult,
    models.UpdateAccepted,
)


def rss_kb() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sandboxed(cls: type) -> Any:
    """A run's sandboxed instance of the workflow class, as the worker creates one."""
    converter = DataConverter.default
    details = WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=_Definition.must_from_class(cls),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )
    return SandboxedWorkflowRunner().create_instance(details)


def sandbox_kb(cls: type) -> tuple[float, list[str]]:
    """KB a run's sandbox allocates; the modules it imports afresh."""
    keep = [sandboxed(cls)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep += [sandboxed(cls) for _ in range(RUNS)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    modules = keep[-1].importer.new_modules
    fresh = [
        n for n, m in modules.items() if isinstance(m, ModuleType) and m is not sys.modules.get(n)
    ]
    return grown / RUNS / 1024, sorted(fresh)


def adapters_kb(converter: DataConverter) -> float:
    """RSS KB per run of the type adapters for DECODED, made by a new payload converter as
    each run's first decode of each type makes them."""
    keep = []
    gc.collect()
    start = rss_kb()
    for _ in range(RUNS):
        pc = converter._new_payload_converter()
        composite = getattr(pc, "_inner_payload_converter", pc)
        json = next(c for c in composite.converters.values() if hasattr(c, "_type_adapter"))
        keep.append(pc)
        for t in DECODED:
            json._type_adapter(t)
    gc.collect()
    return (rss_kb() - start) / RUNS


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of obj and everything it refers to, each object once."""
    seen = set() if seen is None else seen
    todo, total = [obj], 0
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
            todo.extend(getattr(o, f.name) for f in fields(o))
            if hasattr(o, "__dict__"):
                total += sys.getsizeof(o.__dict__)
    return total


def state_sizes() -> None:
    now = datetime.now(UTC)
    state = models.CaseState(
        loan_no="B0000001",
        branch="QX01",
        policy=LIFECYCLE_POLICY,
        stage=Stage.FIELD_VISIT,
        stage_since=now,
        opened_at=now,
    )
    pc = DATA_CONVERTER.payload_converter
    parked = pc.from_payloads(pc.to_payloads([state]), [models.CaseState])[0]
    json_kb = len(pc.to_payloads([parked])[0].data) / 1024
    print(f"  {deep_size(parked) / 1024:6.1f} KB  a new case's state ({json_kb:.1f} KB as JSON)")
    print(f"  {deep_size(parked.policy) / 1024:6.1f} KB    of which its policy")
    state.history = [
        models.HistoryEntry(now, "stage", f"FIELD_VISIT → NEGOTIATION: visit {i} agreed", "c01")
        for i in range(HISTORY_KEPT)
    ]
    full = pc.from_payloads(pc.to_payloads([state]), [models.CaseState])[0]
    kb = deep_size(full.history) / 1024
    print(f"  {kb:6.1f} KB  {HISTORY_KEPT} history entries (the most a run keeps)")


async def main() -> None:
    print(f"1. the sandbox, per run (tracemalloc, {RUNS} runs)")
    for cls in (TrivialWorkflow, LoanCollectionWorkflow):
        kb, fresh = sandbox_kb(cls)
        print(
            f"  {kb:6.1f} KB  {cls.__name__}, code compiled per run; {len(fresh)} modules afresh:"
        )
        print(f"             {', '.join(fresh)}")
    share_workflow_code()
    kb, _ = sandbox_kb(LoanCollectionWorkflow)
    print(f"  {kb:6.1f} KB  LoanCollectionWorkflow, compiled code shared (service/sandbox_code.py)")
    print(f"2. the payload converter's type adapters, per run (RSS, {RUNS} runs)")
    for which, label in (
        ("pydantic", "Pydantic's converter"),
        ("ours", "ours (service/converter.py)"),
    ):
        # A process of its own: memory freed above would hide the growth of RSS.
        run = [sys.executable, "-m", "bench.memory_profile", "adapters", which]
        kb = float(subprocess.run(run, capture_output=True, text=True, check=True).stdout)
        print(f"  {kb:6.0f} KB  {label}")
    print("3. a case's state")
    state_sizes()


if __name__ == "__main__":
    if sys.argv[1:2] == ["adapters"]:
        print(adapters_kb(DATA_CONVERTER if sys.argv[2] == "ours" else pydantic_data_converter))
    else:
        asyncio.run(main())
