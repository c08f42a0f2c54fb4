"""WORKER_SANDBOX=shared, worker.py's default: workflows/ is passed through the sandbox (one
import per process, not one per cached run), and what the sandbox then no longer refuses at
run time in our workflow code is refused by ruff (workflows/ruff.toml) before a merge."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxRestrictions

from domain.policy import fast_policy
from service.converter import DATA_CONVERTER, TYPE_ADAPTERS
from service.sandbox_code import SHARED, STRICT, parse_sandbox, workflow_runner
from service.settings import Settings
from service.worker_factory import build_worker
from tests.harness import Harness, assert_replays, run_histories, running_worker
from tests.test_sandbox_code import sandboxed
from tests.test_workflow_paths import to_follow_up
from workflows.collection import LoanCollectionWorkflow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def shared(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    fast = request.config.getoption("--workflow-env") == "local"
    # Adapters built by earlier tests (in strict runs or the host) would hide how a shared
    # run builds its own: every type is decoded afresh here (service/converter.py).
    TYPE_ADAPTERS.cache_clear()
    async with running_worker(
        env, sqlite_sessions, tmp_path / "data", fast=fast, sandbox=SHARED
    ) as harness:
        yield harness


def test_the_setting_defaults_to_shared_and_names_itself_when_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WORKER_SANDBOX", raising=False)
    assert Settings.from_env().sandbox == SHARED
    monkeypatch.setenv("WORKER_SANDBOX", " Strict ")
    assert Settings.from_env().sandbox == STRICT
    monkeypatch.setenv("WORKER_SANDBOX", "off")
    with pytest.raises(ValueError, match="WORKER_SANDBOX: one of shared, strict, got 'off'"):
        Settings.from_env()
    assert parse_sandbox("") == SHARED


async def test_a_shared_run_imports_none_of_workflows_a_strict_run_all() -> None:
    import asyncio

    await asyncio.sleep(0)  # the instances need the running loop
    runner = workflow_runner(SHARED)
    original = sandboxed.__globals__["SandboxedWorkflowRunner"]
    sandboxed.__globals__["SandboxedWorkflowRunner"] = lambda: runner
    try:
        lean = sandboxed(LoanCollectionWorkflow)
    finally:
        sandboxed.__globals__["SandboxedWorkflowRunner"] = original
    strict = sandboxed(LoanCollectionWorkflow)
    ours = {"workflows.case", "workflows.collection", "workflows.stages.field_visit"}
    lean_modules = lean.importer.new_modules  # type: ignore[attr-defined]
    # Nothing of workflows/ imported by the shared run: at most the host's own modules.
    assert all(lean_modules.get(n, sys.modules[n]) is sys.modules[n] for n in ours)
    assert any(n in lean_modules for n in ours)  # the workflow's own module, looked up
    strict_modules = strict.importer.new_modules  # type: ignore[attr-defined]
    assert all(strict_modules[n] is not sys.modules[n] for n in ours)


async def test_a_case_in_the_shared_sandbox_replays_in_both(shared: Harness) -> None:
    """The same code, the same commands: a case taken to its follow-up by a shared-sandbox
    worker (several workflow tasks, Updates, timers; every type decoded afresh) replays in
    the strict sandbox and in the shared one, as a worker replays it after an eviction."""
    _, handle = await shared.start()
    status = await to_follow_up(shared, handle)
    assert status.stage == "FOLLOW_UP"
    await assert_replays(handle)  # strict
    for history in await run_histories(handle):
        await Replayer(
            workflows=[LoanCollectionWorkflow],
            data_converter=DATA_CONVERTER,
            workflow_runner=workflow_runner(SHARED),
        ).replay_workflow(history)


LINT_CASES = [
    ("from datetime import datetime\nx = datetime.now()\n", "datetime.datetime.now"),
    ("import datetime as dt\nx = dt.date.today()\n", "datetime.date.today"),
    ("import random\nx = random.random()\n", "`random` is banned"),
    ("from uuid import uuid4\nx = uuid4()\n", "uuid.uuid4"),
    ("import os\nx = os.environ['A']\n", "`os` is banned"),
    ("from time import monotonic\nx = monotonic()\n", "`time` is banned"),
    ("from sqlalchemy import select\n", "`sqlalchemy` is banned"),
    ("import activities.cases\n", "`activities` is banned"),
    ("x = open('f')\n", "PTH123"),
    ("print(1)\n", "T201"),
]


def ruff(code: str, filename: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", filename, "-"],
        input=code, capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("code", "expected"), LINT_CASES)
@pytest.mark.parametrize("where", ["workflows/probe.py", "workflows/stages/probe.py"])
def test_workflow_code_may_not_reach_the_clock_randomness_or_io(
    code: str, expected: str, where: str
) -> None:
    done = ruff(code, where)
    assert done.returncode == 1 and expected in done.stdout, done.stdout + done.stderr


def test_the_ban_is_for_workflow_code_only_and_workflows_pass_it() -> None:
    done = ruff("import random\n\nx = random.random()\n", "activities/probe.py")
    assert done.returncode == 0, done.stdout
    whole = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "workflows"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stdout


async def test_the_cases_worker_gets_the_runner_asked(env, sqlite_sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def runner(**kw: str) -> object:
        queue = f"tq-sandbox-{uuid.uuid4()}"
        built = build_worker(
            env.client, queue, sqlite_sessions, tmp_path, policy=fast_policy(), roles=("cases",),
            **kw,
        )  # fmt: skip
        return built.workers["cases"].config()["workflow_runner"]

    passed = runner(sandbox=SHARED).restrictions.passthrough_modules  # type: ignore[attr-defined]
    # domain/ with it: a shared run finds domain's modules only so (service/sandbox_code.py)
    assert {"workflows", "domain"} <= passed
    for strict in (runner(sandbox=STRICT), runner()):  # build_worker's default: strict
        assert "workflows" not in strict.restrictions.passthrough_modules  # type: ignore[attr-defined]


def restricted_names(matcher: object, path: str) -> list[str]:
    """The dotted names a sandbox matcher restricts (its `use` members and children's)."""
    members = set(matcher.use) | set(matcher.access)  # type: ignore[attr-defined]
    names = [f"{path}.{u}" for u in sorted(members)]
    for key, child in sorted(matcher.children.items()):  # type: ignore[attr-defined]
        names += restricted_names(child, f"{path}.{key}")
    return names or [path]


def test_ruff_bans_whatever_the_sdks_sandbox_restricts(tmp_path: Path) -> None:
    """Every module and member the installed SDK's default sandbox refuses (its list grows
    with SDK releases) is banned in workflows/ by workflows/ruff.toml: one probe file each,
    importing the module and naming the member, must be refused (TID251)."""
    probes: dict[str, str] = {}
    top = SandboxRestrictions.default.invalid_module_members.children
    for module, matcher in sorted(top.items()):
        if module == "__builtins__":  # open/input/breakpoint: refused at run time regardless
            continue
        for name in restricted_names(matcher, module):
            name = name.removesuffix(".__call__").replace(".*", ".anything")
            probe = tmp_path / f"probe_{len(probes)}.py"
            probe.write_text(f"import {module}\n\nx = {name}\n")
            probes[probe.name] = name
    # A module the SDK refuses whole (none in 1.35's defaults): its import must be refused.
    for module in sorted(SandboxRestrictions.default.invalid_modules.children):
        probe = tmp_path / f"probe_{len(probes)}.py"
        probe.write_text(f"import {module}\n")
        probes[probe.name] = module
    assert len(probes) > 50
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json",
         "--config", str(ROOT / "workflows" / "ruff.toml"), str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    refused = {Path(d["filename"]).name for d in json.loads(done.stdout) if d["code"] == "TID251"}
    assert sorted(set(probes) - refused, key=probes.get) == [], [
        probes[p] for p in set(probes) - refused
    ]


async def test_the_benchmarks_trivial_baseline_follows_the_setting(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """bench/trivial_worker.py runs the baseline with its class in bench.trivial (not
    __main__, which a sandbox loads afresh whatever is passed through), passed through as
    workflows/ is for our cases: the memory and CPU ratios compare like with like."""
    from bench.trivial import TrivialWorkflow
    from bench.trivial import worker as trivial_worker

    assert TrivialWorkflow.__module__ == "bench.trivial"
    for mode, passed in ((None, True), ("shared", True), ("strict", False)):
        if mode is None:
            monkeypatch.delenv("WORKER_SANDBOX", raising=False)
        else:
            monkeypatch.setenv("WORKER_SANDBOX", mode)
        config = trivial_worker(env.client, f"tq-trivial-{uuid.uuid4()}").config()
        modules = config["workflow_runner"].restrictions.passthrough_modules
        assert ("bench.trivial" in modules) is passed, mode
