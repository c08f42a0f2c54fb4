"""Issue 14, item 7: the monthly compliance report per branch, from constructed rows whose
answers are known (each test on SQLite and PostgreSQL).

The month is two months before the borrowers' current month (never a calendar date); the
rows sit at local times chosen to test the edges: the month's first and last minutes on the
branch's clock (UTC puts them in the neighbouring month), the night window's 08:00 and 22:00,
and an SMS at 21:30 (inside quiet hours, outside the night window). LS01 runs on another
clock (Asia/Urumqi) to show that hours and months are the branch's own.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from cli.main import main as cli_main
from db.models import Branch, ContactAttempt, LoanContact, Visit
from db.repository import case_for_loan, loan_by_no
from domain.policy import Policy
from service.compliance import (
    BY_HOUR,
    DECISIONS,
    NIGHT,
    NIGHT_DETAIL,
    TEAMS,
    THIRD,
    Decision,
    compliance_report,
    current_month,
    parse_month,
    to_csv,
)
from tests.test_activities import new_loan

SHANGHAI = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")
POLICY = Policy()  # the contact window 08:00-22:00


def months_ago(n: int) -> date:
    month = current_month(datetime.now(UTC), POLICY)
    for _ in range(n):
        month = (month - timedelta(days=1)).replace(day=1)
    return month


MONTH = months_ago(2)
NEXT = months_ago(1)
LAST_DAY = NEXT - timedelta(days=1)


def at(day: date | int, hour: int, minute: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    d = MONTH.replace(day=day) if isinstance(day, int) else day
    return datetime.combine(d, time(hour, minute), tzinfo=tz)


def case_of(sessions: sessionmaker[Session], branch: str) -> tuple[int, str]:
    loan_no = new_loan(sessions, branch=branch)
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        return case_for_loan(session, loan, datetime.now(UTC)).id, loan_no


def add_contacts(sessions: sessionmaker[Session], case_id: int, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    with sessions.begin() as session:
        for n, (when, channel, outcome, rule, party) in enumerate(rows):
            session.add(
                ContactAttempt(
                    key=f"{case_id}:{n}", case_id=case_id, channel=channel, at=when,
                    outcome=outcome, rule=rule, party=party, ruleset="cba-2026/default-2026-11",
                )
            )  # fmt: skip


def add_visits(sessions: sessionmaker[Session], case_id: int, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    with sessions.begin() as session:
        for n, (when, team) in enumerate(rows, 1):
            session.add(
                Visit(
                    case_id=case_id, visit_no=n, visited_at=when, outcome="MET",
                    collector_ids=team, reported_by=team.split(",")[0], stage="FIELD_VISIT",
                )
            )  # fmt: skip


@pytest.fixture
def portfolio(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    with sessions.begin() as session:
        session.execute(update(Branch).where(Branch.code == "LS01").values(timezone="Asia/Urumqi"))
    qx, loan_no = case_of(sessions, "QX01")
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        contact = LoanContact(
            loan_id=loan.id, name="李四", relation="GUARANTOR", phone="+8613800001111",
            added_at=datetime.now(UTC), added_by="QX01-C01",
        )  # fmt: skip
        session.add(contact)
        session.flush()
        third = f"contact:{contact.id}"
    add_contacts(
        sessions,
        qx,
        [
            (at(10, 9, 15), "SMS", "SENT", "", "borrower"),
            (at(10, 9, 40), "SMS", "SENT", "", "borrower"),
            (at(11, 21, 30), "SMS", "FAILED", "", "borrower"),  # quiet hours, not night
            (at(12, 7, 59), "CALL", "NO_ANSWER", "", "borrower"),  # night
            (at(12, 22, 0), "CALL", "ANSWERED", "", third),  # night, a third party
            (at(13, 8, 0), "VISIT", "MET", "", "borrower"),  # the window opens at 08:00
            (at(1, 0, 10), "SMS", "SENT", "", "borrower"),  # night; UTC: the month before
            (at(LAST_DAY, 23, 50), "SMS", "SENT", "", "borrower"),  # night, the last minutes
            (at(NEXT, 0, 30), "SMS", "SENT", "", "borrower"),  # next month: not counted
            (at(MONTH - timedelta(days=1), 23, 50), "CALL", "ANSWERED", "", "borrower"),  # before
            (at(14, 10, 0), "SMS", "SENT", "", third),  # a third party
            (at(10, 23, 0), "SMS", "DEFERRED", "quiet_hours", "borrower"),
            (at(11, 22, 30), "SMS", "DEFERRED", "quiet_hours", "borrower"),
            (at(12, 12, 0), "SMS", "BLOCKED", "opted_out", "borrower"),
            (at(12, 12, 5), "SMS", "DEFERRED", "daily_cap", "borrower"),
            (at(NEXT, 12, 0), "SMS", "DEFERRED", "daily_cap", "borrower"),  # next month
        ],
    )
    add_visits(
        sessions,
        qx,
        [
            (at(5, 10), "QX01-C01"),
            (at(6, 10), "QX01-C01,QX01-C02"),
            (at(7, 10), "QX01-C02,QX01-C03"),
            (at(NEXT, 10), "QX01-C01,QX01-C02"),  # next month
        ],
    )
    ls, _ = case_of(sessions, "LS01")
    add_contacts(
        sessions,
        ls,
        [
            (at(10, 9, 0, URUMQI), "SMS", "SENT", "", "borrower"),
            (at(10, 7, 30, URUMQI), "CALL", "NO_ANSWER", "", "borrower"),  # 09:30 in Shanghai
            (at(11, 9, 0, URUMQI), "SMS", "DEFERRED", "weekly_cap", "borrower"),
        ],
    )
    add_visits(sessions, ls, [(at(8, 10, 0, URUMQI), "LS01-C01")])
    return sessions


def hours(**counts: int) -> list[int]:
    row = [0] * 24
    for hour, n in counts.items():
        row[int(hour[1:])] = n
    return row


def test_the_month_of_a_branch_with_known_answers(portfolio: sessionmaker[Session]) -> None:
    [qx] = compliance_report(portfolio, MONTH, ["QX01"], POLICY)
    assert (qx.branch, qx.month, qx.timezone, qx.window) == (
        "QX01", f"{MONTH:%Y-%m}", "Asia/Shanghai", "08:00-22:00",
    )  # fmt: skip
    assert qx.contacts == 9
    assert qx.by_hour == {
        "CALL": hours(h07=1, h22=1),
        "SMS": hours(h00=1, h09=2, h10=1, h21=1, h23=1),
        "VISIT": hours(h08=1),
    }
    assert qx.decisions == [
        Decision("SMS", "BLOCKED", "opted_out", 1),
        Decision("SMS", "DEFERRED", "daily_cap", 1),
        Decision("SMS", "DEFERRED", "quiet_hours", 2),
    ]
    assert qx.visits_by_team == {1: 1, 2: 2}
    assert [(n.at, n.channel) for n in qx.night] == [
        (at(1, 0, 10), "SMS"),
        (at(12, 7, 59), "CALL"),
        (at(12, 22, 0), "CALL"),
        (at(LAST_DAY, 23, 50), "SMS"),
    ]
    assert qx.night_by_channel == {"CALL": 2, "SMS": 2}
    assert qx.third_party == {"CALL": 1, "SMS": 1}


def test_hours_and_months_are_on_the_branchs_own_clock(portfolio: sessionmaker[Session]) -> None:
    reports = compliance_report(portfolio, MONTH, None, POLICY)
    assert [r.branch for r in reports] == ["LS01", "QX01", "QX02"]
    ls, _, qx02 = reports
    assert ls.timezone == "Asia/Urumqi" and ls.contacts == 2
    assert ls.by_hour == {"CALL": hours(h07=1), "SMS": hours(h09=1)}
    assert [n.channel for n in ls.night] == ["CALL"]  # 07:30 there, though 09:30 in Shanghai
    assert ls.decisions == [Decision("SMS", "DEFERRED", "weekly_cap", 1)]
    assert ls.visits_by_team == {1: 1}
    assert qx02.contacts == 0 and qx02.decisions == [] and qx02.night == []
    # The month after has the rows of its own.
    [qx] = compliance_report(portfolio, NEXT, ["QX01"], POLICY)
    assert qx.contacts == 1 and qx.by_hour == {"SMS": hours(h00=1)}
    assert qx.decisions == [Decision("SMS", "DEFERRED", "daily_cap", 1)]


def csv_of(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_the_csv_and_the_command_line(
    portfolio: sessionmaker[Session], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = compliance_report(portfolio, MONTH, ["QX01"], POLICY)
    rows = csv_of(to_csv(reports))
    assert rows[0][0] == "网点 branch" and rows[0][-1] == "次数 count"
    m = f"{MONTH:%Y-%m}"
    body = [tuple(r) for r in rows[1:]]
    assert ("QX01", m, BY_HOUR, "SMS", "09", "", "2") in body
    assert ("QX01", m, DECISIONS, "SMS", "quiet_hours", "DEFERRED", "2") in body
    assert ("QX01", m, TEAMS, "VISIT", "2人 team of 2", "", "2") in body
    assert ("QX01", m, NIGHT, "CALL", "outside 08:00-22:00", "", "2") in body
    assert ("QX01", m, THIRD, "SMS", "party != borrower", "", "1") in body
    assert sum(1 for r in body if r[2] == NIGHT_DETAIL) == 4
    assert sum(int(r[6]) for r in body if r[2] == BY_HOUR) == 9
    monkeypatch.setenv("COLLECTION_DB_URL", db_url)
    out = tmp_path / "report.csv"
    args = ["report", "compliance", "--month", m, "--branch", "QX01", "--format", "csv"]
    assert cli_main([*args, "--out", str(out)]) == 0
    assert out.read_bytes() == to_csv(reports)
    assert cli_main(["report", "compliance", "--month", "2026-13", "--out", str(out)]) == 2
    assert cli_main(["report", "compliance", "--month", m, "--branch", "XX99"]) == 2


def test_months_are_read_strictly() -> None:
    assert parse_month("2031-02") == date(2031, 2, 1)
    for bad in ("2031-2", "2031-00", "31-02", "2031/02", ""):
        with pytest.raises(ValueError, match="month"):
            parse_month(bad)
