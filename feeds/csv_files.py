"""Reading core-banking CSV exports: UTF-8 (with or without BOM) or GB18030, Chinese or
English headers, and errors that name the row and the field."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from domain.capital import MAX_AMOUNT_FEN

# Spreadsheet programs run a cell that starts with these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_FIELD = 500


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
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileError("the file is neither UTF-8 nor GB18030 text")


def read_rows(
    path: Path, columns: dict[str, tuple[str, ...]], required: set[str]
) -> list[tuple[int, dict[str, str]]]:
    """Rows as {canonical column: text}, with their line numbers. Headers may be any alias."""
    text = decode(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))  # csv handles \r, \n and \r\n itself
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise FileError("the file is empty") from None
    except csv.Error as e:
        raise FileError(f"row 1 (the header): {e}") from None
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
    rows = []
    line = 1
    try:
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            rows.append(
                (line, {n: (cells[i].strip() if i < len(cells) else "") for n, i in index.items()})
            )
    except csv.Error as e:  # a cell beyond 128 KiB, a broken quote: the file is not usable
        raise FileError(f"row {line + 1}: {e}") from None
    return rows


def text_field(
    row: int, field: str, value: str, errors: list[RowError], required: bool = True
) -> str:
    if not value:
        if required:
            errors.append(RowError(row, field, "missing"))
        return ""
    if value.startswith(FORMULA_STARTS):
        errors.append(RowError(row, field, "starts like a spreadsheet formula; refused"))
        return ""
    if len(value) > MAX_FIELD:
        errors.append(RowError(row, field, f"longer than {MAX_FIELD} characters"))
        return ""
    return value


def yuan_to_fen(
    row: int, field: str, value: str, errors: list[RowError], required: bool = True
) -> int:
    """'12,345.67' → 1234567; refuses negatives, more than two decimals, non-numbers."""
    if not value:
        if required:
            errors.append(RowError(row, field, "missing"))
        return 0
    try:
        amount = Decimal(value.replace(",", "").replace("，", ""))
    except InvalidOperation:
        errors.append(RowError(row, field, f"{value!r} is not an amount in yuan"))
        return 0
    if not amount.is_finite() or amount < 0:
        errors.append(RowError(row, field, f"{value!r}: an amount cannot be negative"))
        return 0
    fen = amount * 100
    if fen != fen.to_integral_value():
        errors.append(RowError(row, field, f"{value!r}: at most two decimals (fen)"))
        return 0
    if fen > MAX_AMOUNT_FEN:
        errors.append(RowError(row, field, f"{value!r}: larger than any loan can be"))
        return 0
    return int(fen)
