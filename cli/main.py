"""`python -m cli.main COMMAND`: the demo, migrations, one case's status, lists by stage.

Exit codes: 0 success; 1 a refused or failed operation; 2 bad arguments; 3 some rows of a
feed or some cases of a batch were refused (the rest were done).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cli import (
    action_commands,
    case_commands,
    evidence_commands,
    feeds_commands,
    master_commands,
    office_commands,
    schedule_commands,
    setup_commands,
)
from service.log_masking import configure
from service.settings import Settings

# One module per group of commands, each adding its own; in this order in `--help`.
GROUPS = (
    setup_commands,
    case_commands,
    feeds_commands,
    schedule_commands,
    master_commands,
    action_commands,
    office_commands,
    evidence_commands,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collection", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    configure(logging.WARNING, "%(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    settings = Settings.from_env()
    return args.run(args, settings)


def exit_now(code: int) -> None:
    """Exit without interpreter finalization. The Temporal SDK's core threads can abort a
    finalizing interpreter (SIGABRT, "PyGILState_Release ... must be current") after the
    command has done and printed everything: seen in CI on `list`. The command's work is
    committed by then; only the output and the log handlers are flushed here."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
