"""Issue 14, item 7: a case's collection record (催收记录), as CSV and PDF, from the CLI and
from the case page's download links, with phone numbers as the case page shows them.

The case is made by the real activities where they exist (SMS deferred by quiet hours then
sent, visit, payment, stage changes with a hold) and by rows where the writer is another
engineer's (a CALL row, as record_call writes it) or a person's (a signed scan, an audit
event). The record's content is checked on SQLite and PostgreSQL; the PDF, the CLI and the
pages on SQLite (they read the same service).
"""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import activities.sms as sms_module
from activities.cases import CaseActivities
from activities.sms import SmsActivities
from cli.main import main as cli_main
from db.models import (
    Agreement,
    AgreementInstallment,
    AuditEvent,
    Case,
    ContactAttempt,
    InboundMessage,
    LoanContact,
    SignedScan,
)
from db.repository import case_for_loan, loan_by_no
from domain.models import PaymentPosted, PaymentRecord, VisitRecord, VisitReport
from domain.policy import Policy
from domain.stages import Stage
from service import audit
from service.collection_record import CSV_HEADER, collection_record, to_csv, to_pdf
from service.users import Principal, Role, create_user
from tests.test_activities import CountingGateway, new_loan, sms, transition
from webapp.app import create_app
from webapp.pages import WebConfig
from webapp.twilio_webhooks import WebhookConfig

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = Policy()
PHONE, MASKED = "+8613912345678", "+86139****5678"
GUARANTOR, GUARANTOR_MASKED = "+8613800001111", "+86138****1111"
SUPERVISOR = Principal("sup", Role.SUPERVISOR, ("QX01",))
MINE = Principal("zhang", Role.COLLECTOR, collector_id="QX01-C01")
PASSWORD = "correct horse battery"


def local(days_from_today: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(SHANGHAI).date() + timedelta(days=days_from_today)
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


def make_case(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> str:
    loan_no = new_loan(sessions, phone=PHONE)
    acts = CaseActivities(sessions)
    opened = local(-3, 9)
    steps = [
        (Stage.INITIAL_CONTACT, None, opened, "case opened"),
        (Stage.FIELD_VISIT, Stage.INITIAL_CONTACT, local(-2, 9), "no answer"),
        (Stage.ON_HOLD, Stage.FIELD_VISIT, local(-2, 10), "洪灾 flood"),
        (Stage.FIELD_VISIT, Stage.ON_HOLD, local(-1, 10), "hold lifted"),
    ]
    for seq, (to, frm, when, why) in enumerate(steps, 1):
        acts.record_transition(
            transition(loan_no, seq, to, from_stage=frm, at=when.astimezone(UTC), reason=why)
        )
    # An SMS held by quiet hours, then sent: two decisions of the contact log.
    clock = {"now": local(-3, 23)}
    monkeypatch.setattr(sms_module, "activity_now", lambda: clock["now"].astimezone(UTC))
    sender = SmsActivities(sessions, CountingGateway())
    assert sender.send_sms(sms(loan_no, f"{loan_no}:n:1", POLICY)).status == "DEFERRED"
    clock["now"] = local(-2, 8, 30)
    assert sender.send_sms(sms(loan_no, f"{loan_no}:n:1", POLICY)).status == "SENT"
    report = VisitReport(
        "NOT_HOME", ["QX01-C01", "QX01-C02"], local(-1, 15).astimezone(UTC),
        "邻居说他的新号是 13912345678",
    )  # fmt: skip
    acts.record_visit(VisitRecord(loan_no, 1, report, Stage.FIELD_VISIT, "", POLICY))
    acts.record_payment(
        PaymentRecord(loan_no, PaymentPosted("BANK-77", 12_345, local(-1, 16)), True, 12_345, 0)
    )
    with sessions.begin() as session:
        loan = loan_by_no(session, loan_no)
        assert loan is not None
        case = case_for_loan(session, loan, opened)
        case.primary_collector = "QX01-C01"
        guarantor = LoanContact(
            loan_id=loan.id, name="李四", relation="GUARANTOR", phone=GUARANTOR,
            added_at=opened, added_by="QX01-C01",
        )  # fmt: skip
        session.add(guarantor)
        session.flush()
        session.add(
            ContactAttempt(
                key=f"{loan_no}:call:1", case_id=case.id, channel="CALL", at=local(-1, 11),
                outcome="ANSWERED", detail=f"{GUARANTOR_MASKED} by QX01-C01: =cmd|' /C calc'!A0",
                party=f"contact:{guarantor.id}", ruleset="cba-2026/default-2026-11",
            )
        )  # fmt: skip
        agreement = Agreement(
            case_id=case.id, version=1, plan_number=1, plan_hash="p" * 64, sha256="a" * 64,
            pdf_path="v1.pdf", size_bytes=2048, html_path="v1.html", html_sha256="b" * 64,
            total_fen=1_000_000, created_at=local(-1, 17), signed_at=local(-1, 18),
            signed_by="QX01-C01", signed_place="村委会",
            installments=[AgreementInstallment(seq=1, due_at=local(30, 23), amount_fen=1_000_000)],
        )  # fmt: skip
        session.add(agreement)
        session.flush()
        session.add(
            SignedScan(
                agreement_id=agreement.id, sha256="c" * 64, path="scan.jpg", size_bytes=1,
                content_type="image/jpeg", uploaded_by="QX01-C01", uploaded_at=local(-1, 19),
            )
        )  # fmt: skip
        session.add(
            InboundMessage(
                message_sid="SM" + "9" * 32, from_number=PHONE, body="已还 打我13912345678",
                intent="PAID_CLAIM", borrower_id=loan.borrower_id, case_id=case.id,
                received_at=local(-1, 20),
            )
        )  # fmt: skip
    audit.record(sessions, "sup", "SUPERVISOR", "hold", "ACCEPTED", '=HYPERLINK("x")', loan_no)
    return loan_no


def rows_of(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_the_record_holds_every_kind_of_evidence_in_order(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    loan_no = make_case(sessions, monkeypatch)
    record = collection_record(sessions, loan_no, SUPERVISOR, POLICY, datetime.now(UTC))
    assert record is not None and record.collectors == ["QX01-C01"]
    assert [(c.channel, c.outcome, c.rule, c.ruleset) for c in record.contacts] == [
        ("SMS", "DEFERRED", "quiet_hours", "cba-2026/default-2026-11"),
        ("SMS", "SENT", "", "cba-2026/default-2026-11"),
        ("CALL", "ANSWERED", "", "cba-2026/default-2026-11"),
        ("VISIT", "NOT_HOME", "", "cba-2026/default-2026-11"),
    ]
    assert record.contacts[2].party == f"GUARANTOR 李四 {GUARANTOR_MASKED}"
    assert [(v.team, v.team_size) for v in record.visits] == [(["QX01-C01", "QX01-C02"], 2)]
    [a] = record.agreements
    assert (a.sha256, a.html_sha256, a.signed_place, len(a.scans)) == ("a" * 64, "b" * 64,
                                                                      "村委会", 1)  # fmt: skip
    assert [(p.reference, p.amount_fen) for p in record.payments] == [("BANK-77", 12_345)]
    assert [(s.to_stage, s.hold) for s in record.stages] == [
        ("INITIAL_CONTACT", False), ("FIELD_VISIT", False), ("ON_HOLD", True),
        ("FIELD_VISIT", True),
    ]  # fmt: skip
    assert [e.action for e in record.actions] == ["hold"]
    assert [m.direction for m in record.messages] == ["发出 OUT", "收到 IN"]
    assert record.complaints == []  # a complaints table (0012), none for this case

    rows = rows_of(to_csv(record))
    assert rows[1] == CSV_HEADER and rows[1][0] == "类别 section"
    sections = [r[0] for r in rows[2:]]
    assert sections == (
        ["联系 contact"] * 4 + ["外访 visit"] + ["协议 agreement"] * 2 + ["还款 payment"]
        + ["阶段 stage"] * 2 + ["暂停 hold"] * 2 + ["操作 action"] + ["短信 message"] * 2
    )  # fmt: skip
    deferral = rows[2]
    assert deferral[1] == local(-3, 23).strftime("%Y-%m-%d %H:%M:%S")  # the branch's clock
    assert deferral[2:7] == ["SMS", "借款人 borrower", "DEFERRED", "quiet_hours",
                             "cba-2026/default-2026-11"]  # fmt: skip
    # A cell that starts like a formula is quoted (as the feeds refuse one).
    assert rows[4][8].startswith(f"'{GUARANTOR_MASKED} by QX01-C01: ")
    assert (
        rows[14][:3] == ["操作 action", rows[14][1], "hold"] and rows[14][8] == '\'=HYPERLINK("x")'
    )
    assert rows[10][4] == "立案 opened → INITIAL_CONTACT" and rows[12][4] == "FIELD_VISIT → ON_HOLD"
    assert rows[6][7] == "QX01-C01,QX01-C02" and "2人 team of 2" in rows[6][8]
    assert "a" * 64 in rows[7][8] and "b" * 64 in rows[7][8] and rows[7][4].startswith("签署")


def test_phone_numbers_are_shown_as_the_case_page_shows_them(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    loan_no = make_case(sessions, monkeypatch)
    now = datetime.now(UTC)
    for who in (SUPERVISOR, None, Principal("c2", Role.COLLECTOR, collector_id="QX01-C02")):
        record = collection_record(sessions, loan_no, who, POLICY, now)
        data = to_csv(record).decode("utf-8-sig")  # type: ignore[arg-type]
        assert record.phone == MASKED and MASKED in data  # type: ignore[union-attr]
        assert "13912345678" not in data and GUARANTOR[3:] not in data, who
        assert "**************" in data and record.id_number.endswith(record.id_number[-4:])  # type: ignore[union-attr]
    mine = collection_record(sessions, loan_no, MINE, POLICY, now)
    data = to_csv(mine).decode("utf-8-sig")  # type: ignore[arg-type]
    assert mine.phone == PHONE and f"GUARANTOR 李四 {GUARANTOR}" in data  # type: ignore[union-attr]
    assert "新号是 13912345678" in data


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    assert pdf.startswith(b"%PDF")
    path = tmp_path / "record.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_pdf_and_the_command_line(
    sqlite_sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loan_no = make_case(sqlite_sessions, monkeypatch)
    record = collection_record(sqlite_sessions, loan_no, None, POLICY, datetime.now(UTC))
    text = pdf_text(to_pdf(record, "命令行 CLI"), tmp_path)  # type: ignore[arg-type]
    for heading in ("催收记录", "联系记录", "外访记录", "还款协议", "还款记录", "阶段变更与暂停"):
        assert heading in text, heading
    assert "quiet_hours" in text and "cba-2026/default-2026-11" in text and "村委会" in text
    assert MASKED in text and "13912345678" not in text
    monkeypatch.setenv("COLLECTION_DB_URL", str(sqlite_sessions.kw["bind"].url))
    out = tmp_path / "cli.csv"
    assert cli_main(["record", loan_no, "--format", "csv", "--out", str(out)]) == 0
    assert rows_of(out.read_bytes())[1:] == rows_of(to_csv(record))[1:]  # all but the header
    assert cli_main(["record", loan_no, "--format", "pdf"]) == 2  # a PDF needs --out
    assert cli_main(["record", "NO-SUCH-LOAN", "--format", "csv"]) == 1
    assert cli_main(["record", loan_no, "--format", "pdf", "--out", str(tmp_path / "r.pdf")]) == 0
    assert "外访记录" in pdf_text((tmp_path / "r.pdf").read_bytes(), tmp_path)


# ---------------------------------------------------------------- the pages


class NoCases:
    """Visibility with no case in it: the dashboard's lists come from Temporal, which is not
    what these tests are about (tests/test_pages.py runs them on the dev server)."""

    async def list_workflows(self, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        for _ in ():
            yield


@pytest.fixture
async def web(
    sqlite_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> tuple[sessionmaker[Session], httpx.AsyncClient, str]:
    loan_no = make_case(sqlite_sessions, monkeypatch)
    with sqlite_sessions.begin() as session:
        create_user(session, "sup", PASSWORD, Role.SUPERVISOR, ["QX01"])
        create_user(session, "sup-ls", PASSWORD, Role.SUPERVISOR, ["LS01"])
        create_user(session, "mine", PASSWORD, Role.COLLECTOR, collector_id="QX01-C01")
        create_user(session, "teammate", PASSWORD, Role.COLLECTOR, collector_id="QX01-C02")
        create_user(session, "office", PASSWORD, Role.BACK_OFFICE)

    async def temporal():  # type: ignore[no-untyped-def]
        return NoCases()

    app = create_app(sqlite_sessions, temporal, WebhookConfig("0" * 32), WebConfig(policy=POLICY))
    transport = httpx.ASGITransport(app=app)
    return sqlite_sessions, httpx.AsyncClient(transport=transport, base_url="http://t"), loan_no


async def bearer(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


async def test_the_case_pages_downloads_follow_the_case_pages_rules(web, tmp_path: Path) -> None:
    sessions, http, loan_no = web
    async with http:
        sup = await bearer(http, "sup")
        r = await http.get(f"/cases/{loan_no}/record.csv", headers=sup)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        assert MASKED in r.text and "13912345678" not in r.text
        r = await http.get(f"/cases/{loan_no}/record.pdf", headers=sup)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert MASKED in pdf_text(r.content, tmp_path)
        mine = await http.get(f"/cases/{loan_no}/record.csv", headers=await bearer(http, "mine"))
        assert mine.status_code == 200 and PHONE in mine.text
        # Another branch's supervisor, a collector not assigned, the back office: no case.
        for user in ("sup-ls", "teammate", "office"):
            for kind in ("csv", "pdf"):
                r = await http.get(
                    f"/cases/{loan_no}/record.{kind}", headers=await bearer(http, user)
                )
                assert r.status_code == 404 and "13912345678" not in r.text, (user, kind)
        anonymous = {"accept": "application/json"}
        r = await http.get(f"/cases/{loan_no}/record.csv", headers=anonymous)
        assert r.status_code == 401
        assert (await http.get("/cases/NO-SUCH/record.csv", headers=sup)).status_code == 404
    with sessions() as session:
        exports = session.scalars(
            select(AuditEvent.username).where(AuditEvent.action == "record_export")
        ).all()
    assert sorted(exports) == ["mine", "sup", "sup"]


async def test_the_dashboard_shows_the_compliance_month_and_its_csv(web) -> None:
    sessions, http, loan_no = web
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    async with http:
        sup = await bearer(http, "sup")
        page = await http.get("/dashboard", headers=sup)
        assert page.status_code == 200 and 'id="compliance"' in page.text
        assert f'value="{month}"' in page.text and f"compliance.csv?month={month}" in page.text
        as_json = await http.get("/dashboard", headers={**sup, "accept": "application/json"})
        [qx] = as_json.json()["compliance"]  # the supervisor's branch only
        assert qx["branch"] == "QX01" and qx["month"] == month
        # The case's contacts of this month (the deferral three days ago may be last month's).
        this_month = [
            c for c in (local(-2, 8, 30), local(-1, 11), local(-1, 15)) if f"{c:%Y-%m}" == month
        ]
        assert qx["contacts"] == len(this_month)
        r = await http.get(f"/dashboard/compliance.csv?month={month}", headers=sup)
        assert r.status_code == 200 and r.text.lstrip("\ufeff").startswith("网点 branch")
        assert {row[0] for row in rows_of(r.content)[1:]} <= {"QX01"}
        bad = await http.get("/dashboard/compliance.csv?month=2026-13", headers=sup)
        assert bad.status_code == 400 and "month" in bad.text
        page = await http.get("/dashboard?month=13", headers=sup)
        assert page.status_code == 400 and "month" in page.text
        mine = await bearer(http, "mine")
        assert (await http.get("/dashboard/compliance.csv", headers=mine)).status_code == 404
    with sessions() as session:
        assert session.scalar(select(Case.primary_collector)) == "QX01-C01"
