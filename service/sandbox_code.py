"""The workflow sandbox imports our workflow modules afresh for every run (its isolation:
each run has its own module state, and the modules see the sandbox's restricted `datetime`,
`random`, `os` ...). Python gives each such import new code objects, compiled again from the
source where there is no bytecode cache (PYTHONDONTWRITEBYTECODE, read-only images): about
300 KB of a cached case's memory, and the CPU of compiling ~4,000 lines, at every run a
worker takes into its cache.

Code objects are immutable, so every run can share one: `share_workflow_code()` puts a finder
in front of the import system that gives the modules of the packages named (by default
`workflows`) a loader that compiles each file once per process and executes that code into
the new module. The module is still executed anew in each sandbox, with the sandbox's
imports and restrictions: only the compiled code is shared, never module state. That is
WORKER_SANDBOX=strict; the default, shared, passes workflows/ through the sandbox instead
(workflow_runner below).

The sandbox also runs each step of a run (an activation, and the serialization context of
every payload sequence the worker encodes or decodes for it, several passes an activation)
as a snippet of source it `exec`s, compiling that source again each time: a few hundred
compilations a case (issue 17). `share_sandbox_snippets()` makes the sandbox compile each
snippet once per process, whatever WORKER_SANDBOX says: the same code, run the same way.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from types import CodeType, ModuleType
from typing import Any

import temporalio
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions, _runner

log = logging.getLogger(__name__)

WORKFLOW_PACKAGES = ("workflows",)

_codes: dict[str, CodeType] = {}
_lock = threading.Lock()


class SharedCodeLoader(SourceFileLoader):
    """A source file's loader whose compiled code is made once per process."""

    def get_code(self, fullname: str) -> CodeType:  # type: ignore[override]
        path = self.get_filename(fullname)
        code = _codes.get(path)
        if code is None:
            with _lock:
                code = _codes.get(path)
                if code is None:
                    code = super().get_code(fullname)
                    assert code is not None
                    _codes[path] = code
        return code


class SharedCodeFinder(MetaPathFinder):
    """Finds the modules of `packages` as the path finder does, with SharedCodeLoader."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = tuple(packages)

    def _ours(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.packages)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not self._ours(fullname):
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        loader: Any = spec.loader if spec is not None else None
        if spec is None or type(loader) is not SourceFileLoader:
            return spec
        spec.loader = SharedCodeLoader(loader.name, loader.path)
        return spec


def share_workflow_code(packages: Sequence[str] = WORKFLOW_PACKAGES) -> None:
    """Install the finder for `packages` (once per process; later calls do nothing), and
    share the sandbox's compiled snippets (share_sandbox_snippets)."""
    if not any(isinstance(f, SharedCodeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SharedCodeFinder(packages))
    share_sandbox_snippets()


# The SDK's snippets are a handful of constant strings; beyond this many, something makes
# them per call, and they are compiled as before rather than kept.
MAX_SNIPPETS = 64
_snippets: dict[str, CodeType] = {}


def compiled_snippet(source: str) -> CodeType | str:
    """`source` compiled as `exec(source)` compiles it (filename "<string>"), once."""
    code = _snippets.get(source)
    if code is None:
        if len(_snippets) >= MAX_SNIPPETS:
            return source
        code = _snippets.setdefault(source, compile(source, "<string>", "exec"))
    return code


# The SDK releases whose private `_Instance._run_code(self, code: str, **extra_globals)` only
# exec's `code` in the sandbox's globals (read in 1.35's _runner.py): another release keeps
# its own way, with a warning, until this is checked against it.
SNIPPET_SDK_RELEASES = ("1.35.",)


def share_sandbox_snippets() -> None:
    """The sandbox's `_Instance._run_code` given each snippet's compiled code (once per
    process), on an SDK release it was written for (SNIPPET_SDK_RELEASES) whose method
    still has that signature; otherwise the SDK runs as it is (every snippet compiled
    anew), and the log says so."""
    instance = getattr(_runner, "_Instance", None)
    run_code = getattr(instance, "_run_code", None)
    if getattr(run_code, "shares_snippets", False):
        return
    try:
        params = list(inspect.signature(run_code).parameters.values()) if run_code else []
    except (TypeError, ValueError):
        params = []
    expected = [p.name for p in params] == ["self", "code", "extra_globals"] and (
        params[2].kind is inspect.Parameter.VAR_KEYWORD
    )
    if (
        run_code is None
        or not expected
        or not temporalio.__version__.startswith(SNIPPET_SDK_RELEASES)
    ):
        log.warning(
            "temporalio %s: the sandbox's snippets are compiled at each use (not shared)",
            temporalio.__version__,
        )
        return

    def _run_code(self: Any, code: Any, **extra_globals: Any) -> None:
        if isinstance(code, str):
            code = compiled_snippet(code)
        run_code(self, code, **extra_globals)

    _run_code.shares_snippets = True  # type: ignore[attr-defined]
    instance._run_code = _run_code  # type: ignore[union-attr]


# WORKER_SANDBOX: how the cases worker's sandbox treats workflows/.
STRICT = "strict"  # imported afresh in every run's sandbox, which refuses the clock, I/O ...
SHARED = "shared"  # passed through: one import per process, shared by every run
SANDBOX_MODES = (SHARED, STRICT)


def parse_sandbox(text: str) -> str:
    """WORKER_SANDBOX: `shared` (the default) or `strict`."""
    mode = text.strip().lower() or SHARED
    if mode not in SANDBOX_MODES:
        raise ValueError(f"WORKER_SANDBOX: one of {', '.join(SANDBOX_MODES)}, got {text!r}")
    return mode


def workflow_runner(mode: str) -> SandboxedWorkflowRunner:
    """The sandbox for the cases worker's runs.

    strict: each run imports workflows/ afresh (its code shared, share_workflow_code), and
    the sandbox refuses `datetime.now()`, randomness and I/O in it at run time: ~130 KB and
    the import's CPU at every run a worker takes into its cache (a new case, a replay after an
    eviction, each continue-as-new).

    shared: workflows/ is passed through the sandbox, imported once per process (~15 KB a
    run). Its modules hold no state a run could leak into another (module level: constants
    and the registries filled at import), and what the sandbox no longer refuses at run time
    is refused before the code is merged: workflows/ruff.toml bans the clock, randomness,
    the environment and I/O by name (every module and member the SDK's sandbox restricts:
    tests/test_shared_sandbox.py), and the test suite runs every workflow in the strict
    sandbox (build_worker's default). The other modules a run imports (the SDK's, the
    standard library's restricted ones) keep the sandbox's rules, and open(), input() and
    breakpoint() stay refused for all code a run calls (the sandbox patches the builtins)."""
    if mode == STRICT:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        # domain/ too, as every import of it in workflows/ already says; and a run must find
        # it in its own `sys.modules`, where Pydantic resolves a dataclass's annotations when
        # the converter builds a type adapter (with workflows/ passed through, the run itself
        # imports nothing: the sandbox hands it passed-through modules when looked up).
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *WORKFLOW_PACKAGES, "domain"
        )
    )
