"""Reading what a form or a JSON body says, into typed values; each error names its field."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any

from fastapi import Request

from feeds.csv_files import RowError, yuan_to_fen

MAX_TEXT = 2000


class InputError(ValueError):
    """Input that cannot be used; the message starts with the field's name."""


async def read_input(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise InputError("body: not valid JSON") from None
        if not isinstance(body, dict):
            raise InputError("body: a JSON object is expected")
        return body
    form = await request.form()
    values: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            values.setdefault(k, []).append(v)
    # A repeated field (checkboxes: the visit's teammates) is a list; any other, its text.
    return {k: vs[0] if len(vs) == 1 else vs for k, vs in values.items()}


def text(data: dict[str, Any], name: str, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise InputError(f"{name}: text expected")
    value = value.strip()
    if required and not value:
        raise InputError(f"{name}: required")
    if len(value) > MAX_TEXT:
        raise InputError(f"{name}: at most {MAX_TEXT} characters")
    return value


def integer(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise InputError(f"{name}: a whole number from {low} to {high}") from None
    if not low <= number <= high:
        raise InputError(f"{name}: a whole number from {low} to {high}")
    return number


def moment(
    data: dict[str, Any],
    name: str,
    default: datetime | None = None,
    zone: tzinfo | None = None,
) -> datetime:
    """An aware time: ISO 8601 with an offset, or a browser's datetime-local, which is local
    time in `zone` (the case's clock: service/local_time.py). Without a zone only a time with
    its offset can be read."""
    raw = data.get(name)
    if (raw is None or raw == "") and default is not None:
        return default
    try:
        value = datetime.fromisoformat(str(raw).strip())
    except ValueError:
        raise InputError(f"{name}: a date and time like 2026-11-29T10:30") from None
    if value.utcoffset() is not None:
        return value
    if zone is None:
        raise InputError(f"{name}: a date and time with its offset, like 2026-11-29T10:30+08:00")
    return value.replace(tzinfo=zone)


def flag(data: dict[str, Any], name: str) -> bool:
    """Yes or no: JSON true/false, or a form's 1/0 (true/false, yes/no)."""
    value = data.get(name)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else ""
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise InputError(f"{name}: true or false (1 or 0)")


def day(data: dict[str, Any], name: str) -> date:
    try:
        return date.fromisoformat(str(data.get(name, "")).strip())
    except ValueError:
        raise InputError(f"{name}: a date like 2026-12-10") from None


def amount_fen(data: dict[str, Any], name: str) -> int:
    errors: list[RowError] = []
    fen = yuan_to_fen(0, name, str(data.get(name) or "0").strip(), errors)
    if errors:
        raise InputError(f"{name}: {errors[0].message}")
    return fen


def codes(data: dict[str, Any], name: str) -> list[str]:
    raw = data.get(name, [])
    items = raw if isinstance(raw, list) else str(raw).replace("，", ",").split(",")
    return [str(i).strip() for i in items if str(i).strip()]
