"""A mapping profile (`intake --profile FILE.toml`): what a cooperative's own export needs
beyond the synonyms of feeds/columns.py. Every key is optional:

```toml
export_date = 2026-11-28      # the day the export was made (days overdue count to it);
                              # `--as-of` wins over it, today (the policy's zone) is the default
header_row = 2                # the header's row, when a title is above it
sheet = "逾期贷款"             # an .xlsx workbook's sheet (default: the first)
date_format = "%d/%m/%Y"      # every date column: a strftime format with %Y, %m and %d once each
                              # ("auto", the default: the forms csv_files.parse_date reads)

[columns]                     # the column as headed in the file → our field, or "ignore"
"客户全称" = "name"
"所属支行" = "branch"
"表外欠息" = "ignore"

[date_formats]                # one date column's format, over date_format
due_date = "%Y%m%d"
```

A profile entry wins over the synonyms: a field the profile maps is read from that column
only. Any error is a `ProfileError` naming the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from feeds.columns import IGNORE
from feeds.csv_files import FileError

KEYS = ("export_date", "header_row", "sheet", "date_format", "columns", "date_formats")
MAX_HEADER_ROW = 50


class ProfileError(FileError):
    """The profile cannot be used; the message names the key."""


@dataclass(frozen=True)
class Profile:
    name: str = "profile"
    columns: dict[str, str] = field(default_factory=dict)  # header as written → field/IGNORE
    date_format: str | None = None  # None: parse_date's own forms
    date_formats: dict[str, str | None] = field(default_factory=dict)
    export_date: date | None = None
    header_row: int | None = None
    sheet: str | None = None

    def format_for(self, name: str) -> str | None:
        return self.date_formats.get(name, self.date_format)


def _format(where: str, value: object) -> str | None:
    if not isinstance(value, str):
        raise ProfileError(f'{where}: a text such as "%d/%m/%Y" or "auto"')
    if value == "auto":
        return None
    directives = re.findall(r"%(.)", value.replace("%%", ""))
    if sorted(directives) != ["Y", "d", "m"]:
        raise ProfileError(
            f"{where}: {value!r} must have %Y, %m and %d, each once, and no other % directive "
            '(e.g. "%d/%m/%Y", "%Y%m%d")'
        )
    sample = date(2026, 11, 5)
    try:
        back = datetime.strptime(sample.strftime(value), value).replace(tzinfo=UTC).date()
    except ValueError:
        back = None
    if back != sample:
        raise ProfileError(f"{where}: {value!r} cannot be read back (separate its parts)")
    return value


def parse_profile(
    text: str, name: str, fields: Collection[str], date_fields: Collection[str]
) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{name}: not TOML: {e}") from None
    for key in data:
        if key not in KEYS:
            raise ProfileError(f"{name}: {key}: unknown key (keys: {', '.join(KEYS)})")
    export_date = data.get("export_date")
    if isinstance(export_date, str):
        try:
            export_date = date.fromisoformat(export_date)
        except ValueError:
            raise ProfileError(f"{name}: export_date: a date as YYYY-MM-DD") from None
    if export_date is not None and type(export_date) is not date:
        raise ProfileError(f"{name}: export_date: a date as YYYY-MM-DD, without a time")
    header_row = data.get("header_row")
    if header_row is not None and not (
        type(header_row) is int and 1 <= header_row <= MAX_HEADER_ROW
    ):
        raise ProfileError(f"{name}: header_row: a row number from 1 to {MAX_HEADER_ROW}")
    sheet = data.get("sheet")
    if sheet is not None and not (isinstance(sheet, str) and sheet):
        raise ProfileError(f"{name}: sheet: the sheet's name as text")
    date_format = _format(f"{name}: date_format", data.get("date_format", "auto"))
    columns = data.get("columns", {})
    if not isinstance(columns, dict):
        raise ProfileError(f'{name}: columns: a table [columns] of "column" = "field"')
    chosen: dict[str, str] = {}
    for column, target in columns.items():
        where = f"{name}: columns.{column!r}"
        if target != IGNORE and target not in fields:
            raise ProfileError(
                f"{where}: {target!r} is not a field (fields: {', '.join(fields)}, or {IGNORE!r})"
            )
        if target != IGNORE and target in chosen:
            raise ProfileError(f"{where}: {target} is columns.{chosen[target]!r} already")
        chosen.setdefault(target, column)
    formats = data.get("date_formats", {})
    if not isinstance(formats, dict):
        raise ProfileError(f'{name}: date_formats: a table [date_formats] of field = "format"')
    for key in formats:
        if key not in date_fields:
            raise ProfileError(
                f"{name}: date_formats.{key}: not a date field ({', '.join(date_fields)})"
            )
    return Profile(
        name=name,
        columns=dict(columns),
        date_format=date_format,
        date_formats={k: _format(f"{name}: date_formats.{k}", v) for k, v in formats.items()},
        export_date=export_date,
        header_row=header_row,
        sheet=sheet,
    )


def load_profile(path: Path, fields: Collection[str], date_fields: Collection[str]) -> Profile:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ProfileError(f"{path.name}: not UTF-8 text") from None
    except OSError as e:
        raise ProfileError(f"{path}: {e.strerror or e}") from None
    return parse_profile(text, path.name, fields, date_fields)
