"""Reading core-banking CSV exports: UTF-8 (with or without BOM) or GB18030, Chinese or
English headers, values as people write them (dates and amounts in their usual forms), and
errors that name the row and the field. The rejected rows are written back in the file's own
encoding and headers, with a reason column, to be corrected and sent again."""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from domain.capital import MAX_AMOUNT_FEN

# Spreadsheet programs run a cell that starts with these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_FIELD = 500
# The column added to the rejected-rows file (and ignored when that file is sent again).
REASON_COLUMNS = ("拒绝原因", "reject_reason")


@dataclass
class RowError:
    row: int  # the line in the file, the header being line 1
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"


class FileError(ValueError):
    """The file as a whole cannot be read (encoding, missing columns)."""


def decode(data: bytes) -> str:
    return decode_with_encoding(data)[0]


def decode_with_encoding(data: bytes) -> tuple[str, str]:
    """The text and the encoding to write it back in (a BOM is kept when there was one)."""
    first = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    for encoding in (first, "gb18030"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise FileError("the file is neither UTF-8 nor GB18030 text")


@dataclass
class Table:
    """A CSV file as read: its header and rows as written, and the rows by canonical column."""

    header: list[str]
    encoding: str
    chinese: bool  # the headers are the Chinese ones: the reason column is 拒绝原因
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    cells: dict[int, list[str]] = field(default_factory=dict)  # line → cells as in the file


def read_records(path: Path) -> tuple[list[list[str]], str]:
    """Every record of a CSV file (record n is line n, blank ones included) and its encoding."""
    text, encoding = decode_with_encoding(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))  # csv handles \r, \n and \r\n itself
    records: list[list[str]] = []
    try:
        for cells in reader:
            records.append(cells)
    except csv.Error as e:  # a cell beyond 128 KiB, a broken quote: the file is not usable
        if not records:
            raise FileError(f"row 1 (the header): {e}") from None
        raise FileError(f"row {len(records) + 1}: {e}") from None
    return records, encoding


def table_of(
    records: list[list[str]],
    encoding: str,
    index: dict[str, int],
    chinese: bool,
    header_line: int = 1,
) -> Table:
    """The records after the header (line `header_line`) by field, with `index` the column of
    each field; blank records are skipped (their lines still count)."""
    table = Table(records[header_line - 1], encoding, chinese)
    for line, cells in enumerate(records[header_line:], start=header_line + 1):
        if not any(c.strip() for c in cells):
            continue
        table.cells[line] = cells
        table.rows.append(
            (line, {n: (cells[i].strip() if i < len(cells) else "") for n, i in index.items()})
        )
    return table


def read_table(path: Path, columns: dict[str, tuple[str, ...]], required: set[str]) -> Table:
    """Rows as {canonical column: text}, with their line numbers. Headers may be any alias
    (the first column wins; the loan and payment feeds map theirs with feeds/columns.py)."""
    records, encoding = read_records(path)
    if not records:
        raise FileError("the file is empty")
    header = [h.strip() for h in records[0]]
    alias = {a: name for name, aliases in columns.items() for a in (name, *aliases)}
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in alias:
            index.setdefault(alias[h], i)
    missing = sorted(required - index.keys())
    if missing:
        raise FileError(
            "missing columns: " + ", ".join(f"{m} ({'/'.join(columns[m])})" for m in missing)
        )
    chinese = any(h in alias and h not in columns for h in header)
    return table_of(records, encoding, index, chinese)


def read_rows(
    path: Path, columns: dict[str, tuple[str, ...]], required: set[str]
) -> list[tuple[int, dict[str, str]]]:
    return read_table(path, columns, required).rows


def rejected_path(path: Path) -> Path:
    """Where the rejected rows of `path` go by default: beside it, export.rejected.csv (CSV
    for a workbook too: export.xlsx → export.rejected.csv)."""
    suffix = path.suffix if path.suffix.lower() not in {"", ".xlsx", ".xls"} else ".csv"
    return path.with_name(f"{path.stem}.rejected{suffix}")


def write_rejected(table: Table, errors: Iterable[RowError], path: Path) -> Path:
    """The rejected rows as they were written, in the file's encoding and headers, with the
    reason first (a reason column of an earlier run is replaced). Written on every run, with
    only the header when nothing was rejected, so that a file left from an earlier run is
    never sent again by mistake. A cell that starts like a spreadsheet formula is written
    with a leading ' so that opening the file runs nothing."""
    reasons: dict[int, list[str]] = {}
    for e in errors:
        reasons.setdefault(e.row, []).append(f"{e.field}: {e.message}")
    old = {i for i, h in enumerate(table.header) if h.strip() in REASON_COLUMNS}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [REASON_COLUMNS[0 if table.chinese else 1]]
        + [h for i, h in enumerate(table.header) if i not in old]
    )
    for line in sorted(reasons):
        cells = [c for i, c in enumerate(table.cells.get(line, [])) if i not in old]
        writer.writerow(
            ["; ".join(reasons[line])]
            + [f"'{c}" if c.startswith(FORMULA_STARTS) else c for c in cells]
        )
    path.write_bytes(out.getvalue().encode(table.encoding))
    return path


# What feeds/sheets.py reads for a number of 16 or more digits saved as a number in Excel
# (an ID number, a long loan number or bank reference): Excel keeps 15 significant digits,
# so the rest are lost, and two different IDs can read the same. Refused by row and field.
LONG_NUMBER = "#LONG-NUMBER"


def long_numbers(row: int, cells: Mapping[str, str]) -> list[RowError]:
    """A row's errors for its long numbers saved as numbers (a new row's error list)."""
    return [
        RowError(
            row,
            field,
            "a number of 16 or more digits saved as a number in Excel: its last digits are "
            "lost; format the column as text (文本) and export again",
        )
        for field, value in cells.items()
        if value == LONG_NUMBER
    ]


def text_field(
    row: int,
    field: str,
    value: str,
    errors: list[RowError],
    required: bool = True,
    limit: int = MAX_FIELD,
) -> str:
    """`value` if usable; otherwise "" and an error (missing, a formula, longer than `limit`:
    the column's size, so that the database never refuses a row that passed)."""
    if not value:
        if required:
            errors.append(RowError(row, field, "missing"))
        return ""
    if value.removeprefix("'").startswith(FORMULA_STARTS):  # ' as the rejected file has it
        errors.append(RowError(row, field, "starts like a spreadsheet formula; refused"))
        return ""
    if len(value) > limit:
        errors.append(RowError(row, field, f"longer than {limit} characters"))
        return ""
    return value


def shape(value: str, limit: int = 24) -> str:
    """What a value looks like without what it says: digits as 9, letters as A, Chinese
    characters as 字, other characters kept ('12/31/2026' → '99/99/9999')."""
    out = []
    for ch in value[:limit]:
        if ch.isdigit():
            out.append("9")
        elif ch.isascii() and ch.isalpha():
            out.append("A")
        elif unicodedata.category(ch).startswith("L"):
            out.append("字")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("?")
    return "".join(out) + ("…" if len(value) > limit else "")


_DATE_SEPARATED = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_DATE_CHINESE = re.compile(r"([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日?")
_DATE_DIGITS = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_EXCEL_SERIAL = re.compile(r"[0-9]{5}")
# Excel's day numbers count from 1899-12-30 (its 1900 leap-year bug lies before these).
EXCEL_EPOCH = date(1899, 12, 30)
EXCEL_FIRST = date(1990, 1, 1)  # a serial number is taken for a date only from here...
EXCEL_LAST = date(2099, 12, 31)  # ...to here: 32874 to 73050
DATE_FORMATS = "YYYY-MM-DD, YYYY/M/D, YYYY.MM.DD, YYYY年M月D日, YYYYMMDD or an Excel date number"
# A time after a year-first date (an Excel date-and-time cell, a core system's timestamp):
# the day is what counts.
_TIME_AFTER = re.compile(
    r"([0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2})[ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?"
)


def parse_date(
    row: int,
    field: str,
    value: str,
    errors: list[RowError],
    required: bool = True,
    fmt: str | None = None,
) -> date | None:
    """2026-11-05, 2026/11/5, 2026.11.05, 2026年11月5日, 20261105, or Excel's 46331 (full-width
    digits too; a time after a year-first date is dropped) → a date. With `fmt`, a strftime
    format a mapping profile chose (e.g. '%d/%m/%Y'), the value in that format or as
    YYYY-MM-DD (how a real Excel date cell reads). Refused with the value's shape, never the
    value (it may be a birth date or an ID number in the wrong column)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        if required:
            errors.append(RowError(row, field, "missing"))
        return None
    if m := _TIME_AFTER.fullmatch(text):
        text = m[1]
    if fmt is not None and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            day = datetime.strptime(text, fmt).replace(tzinfo=UTC).date()  # a day, no time
        except ValueError:
            errors.append(
                RowError(
                    row,
                    field,
                    f"a value shaped {shape(text)!r} is not a date in the profile's format {fmt!r}",
                )
            )
            return None
        if day.year < 1900:
            errors.append(RowError(row, field, f"a value shaped {shape(text)!r}: before 1900"))
            return None
        return day
    parts: tuple[str, str, str] | None = None
    if m := _DATE_SEPARATED.fullmatch(text):
        parts = (m[1], m[3], m[4])
    elif m := _DATE_CHINESE.fullmatch(text):
        parts = (m[1], m[2], m[3])
    elif m := _DATE_DIGITS.fullmatch(text):
        parts = (m[1], m[2], m[3])
    elif _EXCEL_SERIAL.fullmatch(text):
        day = EXCEL_EPOCH + timedelta(days=int(text))
        if EXCEL_FIRST <= day <= EXCEL_LAST:
            return day
        errors.append(
            RowError(
                row,
                field,
                f"a number shaped {shape(text)} is not an Excel date between "
                f"{EXCEL_FIRST} and {EXCEL_LAST}",
            )
        )
        return None
    if parts is None:
        errors.append(
            RowError(row, field, f"a value shaped {shape(text)!r} is not a date ({DATE_FORMATS})")
        )
        return None
    try:
        day = date(*(int(p) for p in parts))
    except ValueError:
        errors.append(
            RowError(row, field, f"a value shaped {shape(text)!r} is not a day of the calendar")
        )
        return None
    if day.year < 1900:
        errors.append(RowError(row, field, f"a value shaped {shape(text)!r}: before 1900"))
        return None
    return day


_PLAIN = re.compile(r"[0-9]+(\.[0-9]+)?")
_GROUPED = re.compile(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?")


def yuan_to_fen(
    row: int, field: str, value: str, errors: list[RowError], required: bool = True
) -> int:
    """'12,345.67', '１２，３４５．６７', '12345.67元' → 1234567; refuses words, negatives,
    formulas, NaN/Infinity, more than two decimals, and commas not in thousands groups
    ('12,34' may be a decimal comma)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if text.endswith("元"):
        text = text[:-1].rstrip()
    if not text:
        if required:
            errors.append(RowError(row, field, "missing"))
        return 0
    if text.startswith("-") and _PLAIN.fullmatch(text[1:].replace(",", "")):
        errors.append(RowError(row, field, f"{value!r}: an amount cannot be negative"))
        return 0
    if text.startswith(FORMULA_STARTS):
        errors.append(RowError(row, field, "starts like a spreadsheet formula; refused"))
        return 0
    if not (_PLAIN.fullmatch(text) or _GROUPED.fullmatch(text)):
        errors.append(RowError(row, field, f"{value!r} is not an amount in yuan"))
        return 0
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the patterns above admit only numbers
        errors.append(RowError(row, field, f"{value!r} is not an amount in yuan"))
        return 0
    fen = amount * 100
    if fen != fen.to_integral_value():
        errors.append(RowError(row, field, f"{value!r}: at most two decimals (fen)"))
        return 0
    if fen > MAX_AMOUNT_FEN:
        errors.append(RowError(row, field, f"{value!r}: larger than any loan can be"))
        return 0
    return int(fen)
