"""Recorded histories of released workflow code replay on the current code.

A change that would break running cases (a new activity call, a reordered timer) fails
here before it lands; such a change needs `workflow.patched`. The histories were recorded
from the path tests: `RECORD_HISTORIES=1 pytest tests/test_workflow_paths.py`. Each released
version keeps its own: the top folder holds the first release's, `v2/` those recorded
with the `collection-v2` patch, `v3/`, `v4/`, `v5/` and `v6/` with each patch since. Record a new
folder for each release; never overwrite an older one.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.models import CaseInput
from service.converter import DATA_CONVERTER
from service.sandbox_code import SANDBOX_MODES, workflow_runner
from workflows.collection import LoanCollectionWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").rglob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 5, "tests/histories/ lost its recorded histories"


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)  # the worker replays in either (WORKER_SANDBOX)
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path, sandbox: str) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[LoanCollectionWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(sandbox),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="LoanCollectionWorkflow", sandboxed=False)
class _ChangedWorkflow:
    """A 'new version' that forgot workflow.patched: it sleeps before doing anything."""

    @workflow.run
    async def run(self, inp: CaseInput) -> None:
        await workflow.sleep(timedelta(hours=1))


async def test_the_guard_catches_an_incompatible_change() -> None:
    path = next(p for p in HISTORIES if p.stem == "test_paid_after_first_sms")
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[_ChangedWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
