"""PDF from HTML with WeasyPrint, in a CJK font from Debian's packages (fonts-noto-cjk)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

# fontTools stamps embedded font subsets with the current time unless SOURCE_DATE_EPOCH is
# set; with it, the same HTML always gives the same PDF bytes, hence the same SHA-256.
os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")

log = logging.getLogger(__name__)


class MissingFontError(RuntimeError):
    pass


def cjk_fonts(fc_list: str = "fc-list") -> list[str]:
    """Font families installed for Chinese, as fontconfig (which WeasyPrint uses) sees them."""
    if shutil.which(fc_list) is None:
        return []
    out = subprocess.run(
        [fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return sorted({name.strip() for line in out.splitlines() for name in line.split(",")})


def check_fonts(fc_list: str = "fc-list") -> None:
    """Refuse to start without a Chinese font: a PDF of empty boxes must never be signed."""
    if not any(f.startswith(("Noto Serif CJK", "Noto Sans CJK")) for f in cjk_fonts(fc_list)):
        raise MissingFontError(
            "no CJK font for agreements: install Debian's fonts-noto-cjk "
            "(`make setup` does, as root)"
        )


_local = threading.local()


def _render_in_process(html: str) -> bytes:
    """One render. The font configuration is kept per thread: building it anew (what
    WeasyPrint does when none is given) costs a quarter of each render, and Pango's font
    objects are not to be shared between threads. The bytes are the same either way."""
    import weasyprint
    from weasyprint.text.fonts import FontConfiguration

    config = getattr(_local, "font_config", None)
    if config is None:
        config = _local.font_config = FontConfiguration()
    return weasyprint.HTML(string=html).write_pdf(font_config=config)


class PdfRenderer:
    """WeasyPrint, in this process or in `processes` separate ones.

    A render takes ~0.2 s of pure-Python CPU (~0.5 s the first in a process). In the worker's
    own process it holds the GIL that long, and every workflow task and Query of every case
    waits; in a process pool the activity's thread only waits for the result.
    """

    def __init__(self, fc_list: str = "fc-list", processes: int = 0) -> None:
        check_fonts(fc_list)
        import weasyprint  # noqa: F401  heavy: loaded by the worker, never by workflow code
        from weasyprint.text.ffi import harfbuzz_subset

        if harfbuzz_subset is None:
            # fontTools' subsetter takes ~20 s for a CJK font where HarfBuzz takes 0.5 s.
            log.warning("libharfbuzz-subset0 is missing: agreement PDFs render very slowly")
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        if processes > 0:
            # spawn, not fork: the worker process has threads (Temporal's core, the pools).
            self._pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))

    def render(self, html: str) -> bytes:
        if self._pool is not None:
            return self._pool.submit(_render_in_process, html).result()
        return _render_in_process(html)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
