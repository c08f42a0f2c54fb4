"""Master-data files as the back office keeps them: CSV (feeds/csv_files.py) or an Excel
workbook (.xlsx, its first sheet), read into the same rows with the same line numbers and
header aliases. openpyxl is the field-standard .xlsx reader; without it a workbook is a
FileError that says so."""

from __future__ import annotations

import csv
import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path

from feeds.columns import ColumnMap, map_columns, recognised
from feeds.csv_files import (
    LONG_NUMBER,
    REASON_COLUMNS,
    FileError,
    Table,
    read_records,
    read_rows,
    table_of,
)
from feeds.profile import Profile

XLSX_MAGIC = b"PK\x03\x04"  # a zip archive: what an .xlsx is
XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # an OLE2 compound file: Excel 97-2003's .xls
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
    if isinstance(value, int | float) and abs(value) >= 10**15:
        return LONG_NUMBER  # its last digits are lost: refused by row and field
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 40.0 (capacity), 13912345678.0 (a number typed as a number)
    if isinstance(value, float) and abs(value - round(value, 2)) < 1e-7:
        # A computed amount's binary noise (1234.5600000000002): the fen it shows. A typed
        # 1.005 is kept as it is, and refused as more than two decimals.
        return f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return str(value)


def xlsx_records(path: Path, sheet_name: str | None = None) -> list[list[str]]:
    """A sheet's rows as text (the first sheet unless named), one record per sheet row, so
    that row numbers agree with what Excel shows. Date cells read as YYYY-MM-DD."""
    try:
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException
    except ImportError:  # pragma: no cover - a dependency in pyproject
        raise FileError("an .xlsx file needs openpyxl; or save it as CSV") from None
    # Read from the bytes, not by name: openpyxl refuses a workbook whose name does not end
    # in .xlsx (an upload saved as feed.csv), and the content says what it is.
    data = io.BytesIO(path.read_bytes())
    try:
        book = load_workbook(data, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, InvalidFileException) as e:
        raise FileError(f"not a readable .xlsx workbook ({type(e).__name__})") from None
    try:
        if sheet_name is not None:
            if sheet_name not in book.sheetnames:
                raise FileError(
                    f"the workbook has no sheet {sheet_name!r} (it has: "
                    f"{', '.join(book.sheetnames)})"
                )
            sheet = book[sheet_name]
        else:
            sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise FileError("the workbook has no sheet")
        records: list[list[str]] = []
        for n, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if n > MAX_SHEET_ROWS:
                raise FileError(f"more than {MAX_SHEET_ROWS} rows")
            records.append([_cell(v) for v in values])
        return records
    except FileError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as e:
        # A damaged sheet inside a readable zip (its XML is read row by row).
        raise FileError(f"not a readable .xlsx workbook ({type(e).__name__})") from None
    finally:
        book.close()


def xlsx_as_csv(path: Path) -> str:
    """The first sheet as CSV text, one record per sheet row (so row numbers agree)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(xlsx_records(path))
    return out.getvalue()


def records_of(path: Path, sheet_name: str | None = None) -> tuple[list[list[str]], str]:
    """The records of a CSV file or an .xlsx workbook (told by content, not name), and the
    encoding their rejected rows are written back in (UTF-8 with BOM for a workbook: Excel
    opens it with its Chinese intact)."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == XLS_MAGIC:
        raise FileError("an Excel 97-2003 workbook (.xls): save it as .xlsx or CSV")
    if magic == XLSX_MAGIC:
        return xlsx_records(path, sheet_name), "utf-8-sig"
    return read_records(path)


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


# A title or a date line above the header: the header is looked for in the first rows.
HEADER_SEARCH_ROWS = 10
# A unit line above the header ("金额单位：万元") that is not yuan.
_OTHER_UNIT = re.compile(r"(万|千|百万|亿)\s*元")


def read_export(
    path: Path,
    fields: Mapping[str, tuple[str, ...]],
    required: Iterable[str | tuple[str, ...]],
    profile: Profile | None = None,
) -> tuple[Table, ColumnMap]:
    """A CSV or .xlsx export read by feeds/columns.py's synonyms (and the profile's columns
    first): its rows by field, with their line numbers (a sheet's row numbers), and which
    column fed which field. The header is the profile's `header_row`, else the first row, or,
    when that row has fewer than two known headers, the first of the next rows that has three
    (a title above the header)."""
    profile = profile or Profile()
    records, encoding = records_of(path, profile.sheet)
    if not records:
        raise FileError("the file is empty")
    line = profile.header_row or 1
    if line > len(records):
        raise FileError(f"profile header_row: the file has {len(records)} rows")
    if profile.header_row is None and recognised(records[0], fields) < 2:
        for n, cells in enumerate(records[1:HEADER_SEARCH_ROWS], start=2):
            if recognised(cells, fields) >= 3:
                line = n
                break
    for n, cells in enumerate(records[: line - 1], start=1):
        unit = next((c for c in cells if _OTHER_UNIT.search(c)), None)
        if unit is not None:
            # Amounts in ten-thousands read as yuan would be debts 10,000 times too small.
            raise FileError(
                f"row {n} says the amounts are not in yuan ({unit.strip()[:40]!r}): export "
                "them in 元 (yuan)"
            )
    cmap = map_columns(records[line - 1], fields, required, profile.columns)
    cmap.unused = [u for u in cmap.unused if u not in REASON_COLUMNS]
    return table_of(records, encoding, cmap.index, cmap.chinese, line), cmap
