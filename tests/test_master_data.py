"""Master data (issue 18, item 1): the branches and collectors files, on SQLite and
PostgreSQL; deactivating a collector moves their open cases through each case's Update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cli.main import main
from db.models import AuditEvent, Branch, Collector
from feeds.branches import import_branches
from feeds.collectors import import_collectors
from feeds.csv_files import FileError
from service.case_updates import CaseActions
from service.users import Principal, Role
from tests.harness import Harness, running_worker

OPS = Principal("ops-wang", Role.BACK_OFFICE)
COLLECTORS_HEADER = "工号,姓名,网点代码,手机号,案件容量,培训有效期,在岗"


def today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def write(path: Path, lines: list[str], encoding: str = "utf-8-sig") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def errors_of(report) -> set[tuple[int, str]]:  # type: ignore[no-untyped-def]
    return {(e.row, e.field) for e in report.errors}


def test_branches_file_adds_corrects_refuses_and_runs_twice_safely(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "branches.csv",
        [
            "网点代码,网点名称,县,时区",
            "QX01,清溪镇信用社（新址）,临山县,",  # a known branch: a new name, its zone kept
            "HL01,河隆信用社,河隆县,Asia/Urumqi",
            "HL02,河隆二社,河隆县,",  # a new branch: the configured policy's zone
            "HL03,坏时区,河隆县,Mars/Olympus",
            "H L4,空格,河隆县,",
            "HL05,,河隆县,",
            "HL01,twice,河隆县,",
        ],
    )
    report = import_branches(path, sessions, OPS, "Asia/Shanghai")
    assert errors_of(report) == {(5, "timezone"), (6, "code"), (7, "name"), (8, "code")}
    assert report.added == ["HL01", "HL02"]
    assert [u.split(":")[0] for u in report.updated] == ["QX01"]
    with sessions() as s:
        assert s.get(Branch, "HL01").timezone == "Asia/Urumqi"  # type: ignore[union-attr]
        assert s.get(Branch, "HL02").timezone == "Asia/Shanghai"  # type: ignore[union-attr]
        assert s.get(Branch, "QX01").name == "清溪镇信用社（新址）"  # type: ignore[union-attr]
        assert s.get(Branch, "HL03") is None
    again = import_branches(path, sessions, OPS, "Asia/Shanghai")
    assert (again.added, again.updated, again.unchanged) == ([], [], 3)
    with sessions() as s:
        audits = s.scalars(select(AuditEvent).where(AuditEvent.action == "import_branches"))
        assert [a.username for a in audits] == ["ops-wang", "ops-wang"]


def test_collectors_file_gb18030_rows_refused_by_field_and_phones_masked(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    soon = today() + timedelta(days=200)
    path = write(
        tmp_path / "collectors.csv",
        [
            COLLECTORS_HEADER,
            f"QX01-C09,赵六,QX01,139 1234 5678,30,{soon},是",
            f"QX01-C01,催收员QX01-1,QX01,13800001111,35,{soon:%Y/%m/%d},",  # known: corrected
            "QX01-C10,钱七,QX01,12345,30,,",
            "QX01-C11,孙八,ZZ99,,30,,",
            "QX01-C12,李九,QX01,,-1,,",
            "QX01-C13,周十,QX01,,2.5,,",
            "QX01-C14,吴一,QX01,,30,2026-02-30,",
            "QX01-C15,郑二,QX01,,30,,也许",
        ],
        encoding="gb18030",
    )
    report = import_collectors_sync(path, sessions)
    assert errors_of(report) == {
        (4, "mobile"), (5, "branch"), (6, "capacity"), (7, "capacity"),
        (8, "training_expires_on"), (9, "active"),
    }  # fmt: skip
    assert report.added == ["QX01-C09"]
    text = " ".join(report.updated + [str(e) for e in report.errors])
    assert "QX01-C01: capacity 40 -> 35" in text and "+86138****1111" in text
    assert "13800001111" not in text and "12345" not in text  # never a number in clear
    with sessions() as s:
        c9 = s.get(Collector, "QX01-C09")
        assert c9 and (c9.mobile, c9.capacity, c9.training_expires_on, c9.active) == (
            "+8613912345678",
            30,
            soon,
            True,
        )
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "import_collectors"))
        assert "13800001111" not in " ".join(a.detail for a in audit)
    again = import_collectors_sync(path, sessions)
    assert (again.added, again.updated, again.unchanged) == ([], [], 2)


def test_an_xlsx_collectors_file_reads_like_the_csv(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    expiry = today() + timedelta(days=90)
    sheet.append(["编号", "姓名", "网点代码", "手机号", "案件容量", "培训有效期"])
    as_excel_keeps_it = datetime(expiry.year, expiry.month, expiry.day)  # a date cell
    sheet.append(["QX02-C07", "冯三", "QX02", 13912345678, 25, as_excel_keeps_it])
    sheet.append(["QX02-C08", "陈四", "QX02", None, 2.5, None])
    path = tmp_path / "staff.xlsx"
    book.save(path)
    report = import_collectors_sync(path, sessions)
    assert errors_of(report) == {(3, "capacity")}
    with sessions() as s:
        c = s.get(Collector, "QX02-C07")
        assert c and (c.mobile, c.capacity, c.training_expires_on) == ("+8613912345678", 25, expiry)
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FileError):
        import_collectors_sync(tmp_path / "broken.xlsx", sessions)


def test_the_commands_exit_codes(
    sessions: sessionmaker[Session], db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLLECTION_DB_URL", db_url)
    good = write(tmp_path / "b.csv", ["code,name,county", "HL01,河隆信用社,河隆县"])
    assert main(["branches", str(good), "--by", "ops"]) == 0
    assert "added: HL01" in capsys.readouterr().out
    assert main(["branches", str(good), "--by", "ops"]) == 0
    assert "unchanged 1" in capsys.readouterr().out
    some_bad = write(tmp_path / "c.csv", [COLLECTORS_HEADER, "HL01-C01,甲,HL01,13912345678,9,,",
                                          "HL01-C02,乙,HL01,,x,,"])  # fmt: skip
    assert main(["collectors", str(some_bad), "--by", "ops"]) == 3
    out = capsys.readouterr()
    assert "row 3, capacity" in out.err and "13912345678" not in out.out + out.err
    (tmp_path / "gibberish.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    assert main(["collectors", str(tmp_path / "gibberish.csv"), "--by", "ops"]) == 1
    assert main(["collectors", str(tmp_path / "payments.csv"), "--by", "ops"]) == 1  # absent
    with pytest.raises(SystemExit) as e:
        main(["collectors", str(good)])  # no --by
    assert e.value.code == 2


def import_collectors_sync(path: Path, sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.run(import_collectors(path, sessions, OPS))


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def test_deactivating_a_collector_moves_their_cases_after_a_dry_run(
    h: Harness, tmp_path: Path
) -> None:
    # QX01 has C01..C03 (capacity 40): the case's team stays as large; of those outside
    # it, all but one are made full, so that one is the least loaded with room.
    _, handle = await h.start()
    team = (await h.until(handle, lambda s: bool(s.collectors), "assigned")).collectors
    leaving, kept = team[0], team[1:]
    others = sorted({"QX01-C01", "QX01-C02", "QX01-C03"} - set(team))
    free, full = others[0], others[1:]
    path = write(
        tmp_path / "c.csv",
        [COLLECTORS_HEADER, f"{leaving},甲,QX01,,40,,否"] + [f"{c},乙,QX01,,0,,是" for c in full],
    )
    actions = CaseActions(h.client, h.sessions, h.policy)
    dry = await import_collectors(path, h.sessions, OPS, actions, apply=False)
    assert [(m.team, m.new_team) for m in dry.moves] == [(team, kept + [free])]
    assert dry.pending == [leaving] and dry.deactivated == [] and not dry.errors
    with h.sessions() as s:
        assert s.get(Collector, leaving).active  # type: ignore[union-attr]
    assert (await h.status(handle)).collectors == team

    done = await import_collectors(path, h.sessions, OPS, actions, apply=True)
    assert done.deactivated == [leaving] and not done.refused and not done.pending
    assert (await h.status(handle)).collectors == kept + [free]
    with h.sessions() as s:
        assert not s.get(Collector, leaving).active  # type: ignore[union-attr]
        moved = s.scalars(select(AuditEvent).where(AuditEvent.action == "reassign")).all()
        assert [(a.username, a.outcome) for a in moved] == [("ops-wang", "ACCEPTED")]
    again = await import_collectors(path, h.sessions, OPS, actions, apply=True)
    assert (again.moves, again.deactivated, again.updated) == ([], [], [])
    assert again.unchanged == 1 + len(full)


async def test_a_deactivation_no_one_has_room_for_keeps_the_collector(
    h: Harness, tmp_path: Path
) -> None:
    _, handle = await h.start()
    team = (await h.until(handle, lambda s: bool(s.collectors), "assigned")).collectors
    leaving = team[0]
    rows = [COLLECTORS_HEADER] + [
        f"{c},x,QX01,,{40 if c == leaving else 0},,{'否' if c == leaving else '是'}"
        for c in ("QX01-C01", "QX01-C02", "QX01-C03")
    ]
    report = await import_collectors(
        write(tmp_path / "c.csv", rows), h.sessions, OPS,
        CaseActions(h.client, h.sessions, h.policy), apply=True,
    )  # fmt: skip
    assert report.pending == [leaving] and report.deactivated == []
    assert len(report.refused) == 1 and "no active collector of QX01 has room" in report.refused[0]
    assert (await h.status(handle)).collectors == team


@pytest.fixture
async def web(dev_env, sqlite_sessions, tmp_path: Path):  # type: ignore[no-untyped-def]
    import httpx

    from tests.web_support import app_for

    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        transport = httpx.ASGITransport(app=app_for(h))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


async def test_back_office_uploads_master_data_and_supervisors_see_training(web) -> None:  # type: ignore[no-untyped-def]
    from tests.test_pages import token
    from tests.web_support import add_user, form_login

    h, http = web
    add_user(h, "office", Role.BACK_OFFICE)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    r = await form_login(http, "office")
    http.cookies.set("collection_session", r.cookies["collection_session"])
    csrf = (await http.get("/feeds")).text.split('name="csrf" value="')[1].split('"')[0]
    branches = "网点代码,网点名称,县\nHL01,河隆信用社,河隆县\nHL02,,河隆县\n".encode("gb18030")
    up = await http.post("/feeds", data={"csrf": csrf, "kind": "branches"},
                         files={"file": ("网点.csv", branches, "text/csv")})  # fmt: skip
    assert up.status_code == 200 and "added: HL01" in up.text
    assert '<td class="num">3</td><td>name</td>' in up.text
    soon, later = today() + timedelta(days=10), today() + timedelta(days=300)
    staff = "\n".join([
        COLLECTORS_HEADER,
        f"QX01-C01,催收员QX01-1,QX01,13812345678,40,{soon},是",
        f"QX01-C02,催收员QX01-2,QX01,,40,{later},是",
        "QX01-C09,新人,QX01,13812345678,abc,,",
    ]).encode("utf-8-sig")  # fmt: skip
    up = await http.post("/feeds", data={"csrf": csrf, "kind": "collectors"},
                         files={"file": ("staff.csv", staff, "text/csv")})  # fmt: skip
    assert up.status_code == 200 and '<td class="num">4</td><td>capacity</td>' in up.text
    assert "+86138****5678" in up.text and "13812345678" not in up.text
    http.cookies.clear()
    with h.sessions.begin() as s:  # a collector whose training was never recorded
        s.get(Collector, "QX01-C03").training_expires_on = None  # type: ignore[union-attr]
    board = (await http.get("/dashboard", headers=await token(http, "sup"))).json()
    loads = {c["collector_id"]: c for c in board["caseloads"]}
    assert loads["QX01-C01"]["training_expires_on"] == soon.isoformat()
    assert [k for k, c in sorted(loads.items()) if c["training_due"]] == ["QX01-C01", "QX01-C03"]
    assert {"capacity", "open_cases"} <= loads["QX01-C02"].keys()
