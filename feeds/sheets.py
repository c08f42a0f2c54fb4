"""Master-data files as the back office keeps them: CSV (feeds/csv_files.py) or an Excel
workbook (.xlsx, its first sheet), read into the same rows with the same line numbers and
header aliases. openpyxl is the field-standard .xlsx reader; without it a workbook is a
FileError that says so."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from datetime import date, datetime
from pathlib import Path

from feeds.csv_files import FileError, read_rows

XLSX_MAGIC = b"PK\x03\x04"  # a zip archive: what an .xlsx is
MAX_SHEET_ROWS = 100_000


def is_xlsx(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == XLSX_MAGIC


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value.date() if value.time() == datetime.min.time() else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 40.0 (capacity), 13912345678.0 (a number typed as a number)
    return str(value)


def xlsx_as_csv(path: Path) -> str:
    """The first sheet as CSV text, one record per sheet row (so row numbers agree)."""
    try:
        from openpyxl import load_workbook
    except ImportError:  # pragma: no cover - a dependency in pyproject
        raise FileError("an .xlsx file needs openpyxl; or save it as CSV") from None
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise FileError(f"not a readable .xlsx workbook ({type(e).__name__})") from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise FileError("the workbook has no sheet")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for n, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if n > MAX_SHEET_ROWS:
                raise FileError(f"more than {MAX_SHEET_ROWS} rows")
            writer.writerow([_cell(v) for v in values])
        return out.getvalue()
    finally:
        book.close()


def read_table(
    path: Path, columns: dict[str, tuple[str, ...]], required: set[str]
) -> list[tuple[int, dict[str, str]]]:
    """read_rows for a CSV or an .xlsx (recognised by its content, not its name)."""
    if not is_xlsx(path):
        return read_rows(path, columns, required)
    text = xlsx_as_csv(path)
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / "sheet.csv"
        converted.write_text(text, encoding="utf-8")
        return read_rows(converted, columns, required)
