"""The trivial workflow's worker process: python -m bench.trivial_worker ADDRESS TASK_QUEUE
[MAX_CACHED_WORKFLOWS]. A module of its own so that the workflow class lives in
`bench.trivial`, not in `__main__` (which the sandbox loads afresh in every run as
`__temporal_main__`, whatever is passed through): the baseline's sandbox is then set as our
cases worker's (WORKER_SANDBOX)."""

from __future__ import annotations

import asyncio

from bench.trivial import serve

if __name__ == "__main__":
    asyncio.run(serve())
