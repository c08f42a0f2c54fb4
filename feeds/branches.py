"""The branches file: the cooperative's branches (网点), registered or corrected.

| column | also | what |
| --- | --- | --- |
| code | 网点代码, 网点编号 | letters, digits, - and _, at most 16 |
| name | 网点名称 | the branch's name |
| county | 县, 县区, region | the county (holds for a region name it) |
| timezone | 时区 | optional: an IANA zone (e.g. Asia/Urumqi) |
| phone | 电话, 网点电话 | optional: where borrowers call (0851-86001234), for one-way texts |

An empty time zone: a new branch takes the configured policy's, a known one keeps its own;
likewise an empty phone keeps the branch's.

CSV (UTF-8 with or without BOM, or GB18030) or .xlsx. Every row is validated; a rejected
row is reported with its line and field; the good rows are stored in one transaction, keyed
by code: the same file again changes nothing and says so. Branches are never deleted.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.models import Branch
from feeds.csv_files import RowError, long_numbers, text_field
from feeds.sheets import read_table
from service import audit
from service.users import Principal

COLUMNS: dict[str, tuple[str, ...]] = {
    "code": ("网点代码", "网点编号"),
    "name": ("网点名称",),
    "county": ("县", "县区", "region"),
    "timezone": ("时区",),
    "phone": ("电话", "网点电话"),
}
REQUIRED = {"code", "name", "county"}
CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
OFFICE_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{3,17}[0-9]")  # branches.phone: 20 at most


@dataclass
class MasterReport:
    """What an import of master data did: keys added, changes made, rows refused."""

    rows: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # "QX01: name 'a' -> 'b'"
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.rows} rows: added {len(self.added)}, updated {len(self.updated)}, "
            f"unchanged {self.unchanged}, rejected {len({e.row for e in self.errors})}"
        )


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(row: int, value: str, errors: list[RowError]) -> str:
    if value and value not in _zones():
        errors.append(RowError(row, "timezone", f"{value[:40]!r} is not a known time zone "
                                                "(IANA, e.g. Asia/Urumqi)"))  # fmt: skip
        return ""
    return value


def check_code(row: int, field_name: str, value: str, errors: list[RowError], longest: int) -> str:
    code = text_field(row, field_name, value, errors)
    if code and not (CODE.fullmatch(code) and len(code) <= longest):
        errors.append(
            RowError(row, field_name, f"letters, digits, - and _ only, at most {longest}")
        )
        return ""
    return code


def changes(old: dict[str, object], new: dict[str, object]) -> list[str]:
    return [f"{k} {old[k]!r} -> {v!r}" for k, v in new.items() if old[k] != v]


def import_branches(
    path: Path, sessions: sessionmaker[Session], who: Principal, default_timezone: str
) -> MasterReport:
    """Raises FileError when the file cannot be read or lacks a column."""
    rows = read_table(path, COLUMNS, REQUIRED)
    report = MasterReport(rows=len(rows))
    good: list[tuple[int, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        errors = long_numbers(line, cells)
        code = check_code(line, "code", cells["code"], errors, 16)
        if code in seen:
            errors.append(RowError(line, "code", f"{code} is in row {seen[code]} already"))
        seen.setdefault(code, line)
        values = {
            "name": text_field(line, "name", cells["name"], errors),
            "region": text_field(line, "county", cells["county"], errors),
        }
        if len(values["name"]) > 100 or len(values["region"]) > 100:
            errors.append(RowError(line, "name" if len(values["name"]) > 100 else "county",
                                   "longer than 100 characters"))  # fmt: skip
        zone = check_timezone(line, cells.get("timezone", ""), errors)
        phone = cells.get("phone", "").strip()
        if phone and not OFFICE_PHONE.fullmatch(phone):
            errors.append(RowError(line, "phone", f"{phone[:24]!r} is not a phone number "
                                   "(digits, with - ( ) + or spaces, at most 20)"))  # fmt: skip
        if errors:
            report.errors.extend(errors)
            continue
        if zone:
            values["timezone"] = zone
        if phone:
            values["phone"] = phone
        good.append((line, {"code": code, **values}))
    with sessions.begin() as session:
        for _, values in good:
            branch = session.get(Branch, values["code"])
            if branch is None:
                values.setdefault("timezone", default_timezone)
                session.add(Branch(**values))
                report.added.append(values["code"])
                continue
            new = {k: v for k, v in values.items() if k != "code"}
            diff = changes({k: getattr(branch, k) for k in new}, new)
            if not diff:
                report.unchanged += 1
                continue
            for k, v in new.items():
                setattr(branch, k, v)
            report.updated.append(f"{branch.code}: {', '.join(diff)}")
    audit.record(
        sessions, who.username, who.role.value, "import_branches",
        "PARTLY" if report.errors else "DONE",
        f"{path.name}: {report.line()}; added {', '.join(report.added) or '-'}; "
        + "; ".join(report.updated),
    )  # fmt: skip
    return report
