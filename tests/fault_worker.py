"""The real worker (worker.py) for fault tests, run as a process the test can SIGKILL.

With FAULT_RENDER_MARKER set, an agreement render first writes that file and then sleeps
FAULT_RENDER_DELAY seconds: the test kills the process while it renders.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from activities.documents import PdfRenderer
from service.settings import Settings
from worker import run_worker


class SlowRenderer(PdfRenderer):
    def render(self, html: str) -> bytes:
        marker = os.environ.get("FAULT_RENDER_MARKER")
        if marker:
            Path(marker).write_text("rendering")
            time.sleep(float(os.environ.get("FAULT_RENDER_DELAY", "60")))
        return super().render(html)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(Settings.from_env(), pdf=SlowRenderer()))
