"""A workflow module for tests/test_sandbox_code.py: it counts its own imports, and reads the
clock the way workflow code must not."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow

IMPORTS = [1]  # module state: a module shared between runs would show their sum


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    @workflow.run
    async def run(self, read_clock: bool) -> int:
        if read_clock:
            return datetime.now(UTC).year  # non-deterministic: the sandbox must refuse it
        IMPORTS.append(1)
        return len(IMPORTS) - 1
