"""Runs share our workflow modules' compiled code (service/sandbox_code.py) and the type
adapters of their payload converters (service/converter.py), and nothing else:
each run still imports the modules afresh in its sandbox, which still refuses what
workflow code must not do."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from importlib.machinery import SourceFileLoader
from types import CodeType

import pytest
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowFailureError
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._restrictions import RestrictedWorkflowAccessError
from temporalio.worker.workflow_sandbox._runner import _fake_info
from temporalio.workflow import _Definition

from service import sandbox_code
from service.sandbox_code import SharedCodeFinder, SharedCodeLoader, share_workflow_code

PROBE = "tests.sandbox_probe"


@pytest.fixture
def probe_shared() -> Iterator[type]:
    """tests/sandbox_probe.py found by a SharedCodeFinder, as workflows/ is in the worker."""
    finder = SharedCodeFinder([PROBE])
    sys.meta_path.insert(0, finder)
    sys.modules.pop(PROBE, None)
    try:
        from tests.sandbox_probe import SandboxProbe

        yield SandboxProbe
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop(PROBE, None)


async def test_each_run_imports_its_own_module_and_the_sandbox_still_refuses_the_clock(
    env: WorkflowEnvironment, probe_shared: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(sys.modules[PROBE].__spec__.loader, SharedCodeLoader)
    # The host's import above compiled the probe: forgotten, so that the runs' own imports
    # must compile it, and each compilation (the path loader's get_code) is counted.
    path = sys.modules[PROBE].__file__
    monkeypatch.delitem(sandbox_code._codes, path, raising=False)
    compiled: list[str] = []
    get_code = SourceFileLoader.get_code

    def counting_get_code(self: SourceFileLoader, fullname: str) -> CodeType | None:
        if fullname == PROBE:
            compiled.append(fullname)
        return get_code(self, fullname)

    monkeypatch.setattr(SourceFileLoader, "get_code", counting_get_code)
    tq = f"probe-{uuid.uuid4().hex[:6]}"
    async with Worker(
        env.client,
        task_queue=tq,
        workflows=[probe_shared],
        workflow_failure_exception_types=[RestrictedWorkflowAccessError],
    ):
        runs = [
            await env.client.execute_workflow(
                "SandboxProbe", False, id=f"probe-{uuid.uuid4()}", task_queue=tq, result_type=int
            )
            for _ in range(3)
        ]
        # Every run appended to its own module's list, never to another run's.
        assert runs == [1, 1, 1]
        with pytest.raises(WorkflowFailureError) as failed:
            await env.client.execute_workflow(
                "SandboxProbe", True, id=f"probe-{uuid.uuid4()}", task_queue=tq
            )
    assert "datetime.datetime.now" in str(failed.value.cause)
    # The host's module was never touched by the runs; the four runs' imports compiled the
    # probe once (without the shared loader, each run's import gets its own code).
    assert sys.modules[PROBE].IMPORTS == [1]
    assert compiled == [PROBE]
    assert path in sandbox_code._codes


def sandboxed(cls: type) -> object:
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


@pytest.fixture
def shared_workflow_code() -> Iterator[None]:
    """share_workflow_code() for one test: the finder it installs is removed afterwards
    (unless one was there before), so later tests import workflows/ as usual."""
    before = list(sys.meta_path)
    share_workflow_code()
    try:
        yield
    finally:
        for finder in [f for f in sys.meta_path if f not in before]:
            sys.meta_path.remove(finder)


async def test_case_runs_share_code_not_modules(shared_workflow_code: None) -> None:
    from workflows.collection import LoanCollectionWorkflow

    await asyncio.sleep(0)  # the instances need the running loop
    assert any(isinstance(f, SharedCodeFinder) for f in sys.meta_path)
    first, second = sandboxed(LoanCollectionWorkflow), sandboxed(LoanCollectionWorkflow)
    a = first.importer.new_modules  # type: ignore[attr-defined]
    b = second.importer.new_modules  # type: ignore[attr-defined]
    for name in ("workflows.case", "workflows.collection", "workflows.stages.field_visit"):
        assert a[name] is not b[name] and a[name] is not sys.modules[name]
    # One compiled code for both runs' functions ...
    assert a["workflows.case"].Case.note.__code__ is b["workflows.case"].Case.note.__code__
    # ... while each sees the sandbox's restricted datetime, not the host's class.
    assert a["workflows.case"].datetime is not datetime
    with pytest.raises(RestrictedWorkflowAccessError):
        a["workflows.case"].datetime.now()


def test_runs_converters_share_type_adapters_and_write_what_pydantic_writes() -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter

    from domain.models import CaseInput
    from domain.policy import Policy
    from service.converter import DATA_CONVERTER, TYPE_ADAPTERS

    value = CaseInput(loan_no="L1", branch="QX01", policy=Policy(), generation="g1")
    theirs = pydantic_data_converter.payload_converter.to_payloads([value])
    # Two runs' converters (the worker makes one per run): the same bytes as Pydantic's,
    # the same value back, and one type adapter between them.
    first, second = (DATA_CONVERTER._new_payload_converter() for _ in range(2))
    assert first.to_payloads([value]) == theirs
    assert first.from_payloads(theirs, [CaseInput]) == [value]
    before = TYPE_ADAPTERS.cache_info()
    assert second.from_payloads(theirs, [CaseInput]) == [value]
    after = TYPE_ADAPTERS.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


async def test_sandbox_snippets_compiled_once_a_process(
    shared_workflow_code: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox's step snippets (service/sandbox_code.share_sandbox_snippets): compiled
    at their first run, then the same code for every run, which still works."""
    from workflows.collection import LoanCollectionWorkflow

    await asyncio.sleep(0)  # the instances need the running loop
    compiled: list[str] = []

    def counting_compile(source: str, filename: str, mode: str) -> CodeType:
        compiled.append(source)
        return compile(source, filename, mode)

    monkeypatch.setattr(sandbox_code, "_snippets", {})
    monkeypatch.setattr(sandbox_code, "compile", counting_compile, raising=False)
    first = sandboxed(LoanCollectionWorkflow)
    assert compiled and len(compiled) == len(set(compiled))  # creating it: each snippet once
    seen = len(compiled)
    second = sandboxed(LoanCollectionWorkflow)
    assert len(compiled) == seen  # the second run: none compiled again
    a = first.importer.new_modules  # type: ignore[attr-defined]
    b = second.importer.new_modules  # type: ignore[attr-defined]
    assert a["workflows.collection"] is not b["workflows.collection"]  # still its own modules
    assert first.get_serialization_context(None) == second.get_serialization_context(None)  # type: ignore[attr-defined]
    assert len(compiled) == seen + 1  # the context's snippet: once for both runs


def test_snippets_are_shared_only_on_the_sdk_releases_checked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The private method is wrapped on a release whose method was read (and with its
    signature); another release runs as it is, with a warning, never a guessed wrapper."""
    import temporalio
    from temporalio.worker.workflow_sandbox import _runner

    def run_code(self: object, code: str, **extra_globals: object) -> None:
        exec(code, dict(extra_globals))

    for version, wrapped in (("1.99.0", False), ("1.35.9", True)):
        monkeypatch.setattr(_runner._Instance, "_run_code", run_code)
        monkeypatch.setattr(temporalio, "__version__", version)
        caplog.clear()
        sandbox_code.share_sandbox_snippets()
        now = _runner._Instance._run_code
        assert (now is not run_code) is wrapped, version
        assert ("not shared" in caplog.text) is not wrapped, version

    def other(self: object, source: str) -> None:  # another signature: left alone
        exec(source)

    monkeypatch.setattr(_runner._Instance, "_run_code", other)
    sandbox_code.share_sandbox_snippets()
    assert _runner._Instance._run_code is other
