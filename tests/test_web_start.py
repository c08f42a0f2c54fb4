"""README: `make web` "refuses to start without a Chinese font (an agreement of empty boxes
must never be signed)" (issue 13, item 19).

As tests/test_agreement_document.py does for the renderer, fontconfig is replaced by an
`fc-list` that knows no font (first on PATH); the web app's entry point, the command
`make web` runs, must then exit with the reason instead of serving. The same command with
the machine's own fonts serves: the check below tells the two apart.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_web_runs_the_web_apps_entry_point() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^web:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None and "python -m webapp.app" in recipe.group(1)


def start_web(tmp_path: Path, path: str) -> tuple[bool, int | None, str]:
    """`python -m webapp.app` with PATH `path`: (served, exit code, stderr) within 30 s.

    The app is given port 0: uvicorn binds a free port itself and logs which, so no other
    process can have taken it between a choice here and the app's start."""
    env = {
        **os.environ,
        "PATH": path,
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": "0",
        "TWILIO_AUTH_TOKEN": "0" * 32,
        "COLLECTION_DB_URL": f"sqlite:///{tmp_path / 'collection.db'}",
        "COLLECTION_DATA_DIR": str(tmp_path / "data"),
    }
    stderr = tmp_path / f"web-{len(list(tmp_path.glob('web-*.err')))}.err"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        served = False
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                running = re.search(r"running on http://127\.0\.0\.1:(\d+)", stderr.read_text())
                if running:
                    with socket.socket() as s:
                        served = s.connect_ex(("127.0.0.1", int(running.group(1)))) == 0
                    break
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    code = None if served else process.returncode
    return served, code, stderr.read_text()


def test_the_web_app_serves_with_the_machines_fonts(tmp_path: Path) -> None:
    served, _, err = start_web(tmp_path, os.environ["PATH"])
    assert served, err


def test_the_web_app_refuses_to_start_without_a_cjk_font(tmp_path: Path) -> None:
    no_fonts = tmp_path / "bin"
    no_fonts.mkdir()
    fc_list = no_fonts / "fc-list"
    fc_list.write_text("#!/bin/sh\nexit 0\n")
    fc_list.chmod(0o755)
    served, code, err = start_web(tmp_path, f"{no_fonts}{os.pathsep}{os.environ['PATH']}")
    assert not served, "the web app served without a CJK font"
    assert code not in (None, 0), err
    assert "install Debian's fonts-noto-cjk" in err
