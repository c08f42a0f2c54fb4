"""PDF from HTML with WeasyPrint, in a CJK font from Debian's packages (fonts-noto-cjk)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

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


class PdfRenderer:
    def __init__(self, fc_list: str = "fc-list") -> None:
        check_fonts(fc_list)
        import weasyprint  # heavy: loaded once, by the worker, never by workflow code
        from weasyprint.text.ffi import harfbuzz_subset

        if harfbuzz_subset is None:
            # fontTools' subsetter takes ~20 s for a CJK font where HarfBuzz takes 0.5 s.
            log.warning("libharfbuzz-subset0 is missing: agreement PDFs render very slowly")
        self._weasyprint = weasyprint

    def render(self, html: str) -> bytes:
        return self._weasyprint.HTML(string=html).write_pdf()
