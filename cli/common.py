"""What the command modules share: how a command is run, once its arguments are parsed.

Each module adds its commands with `add_parsers(sub)` and names the function that runs each
one (`set_defaults(run=...)`); `cli.main` only assembles the parser and calls that function.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from service.settings import Settings

Run = Callable[[argparse.Namespace, Settings], int]
AsyncCommand = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def guarded(
    command: AsyncCommand, interrupted: Callable[[argparse.Namespace], int] | None = None
) -> Run:
    """An async command run to its end: Ctrl-C exits 0 (the demo runs until it) unless
    `interrupted` says what else (a what-if cut short exits 130: its report never came),
    and a RuntimeError (no server to connect to, ...) is one line on stderr and exit code 1."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return asyncio.run(command(args, settings))
        except KeyboardInterrupt:
            return interrupted(args) if interrupted else 0
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    return run
