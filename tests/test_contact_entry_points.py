"""Issue 14's entry points: calls, consent and third parties through the JSON API, the case
pages and the CLI, with the same role checks and the same masking on every way in; the loan
contacts file (CSV) on SQLite and PostgreSQL.

The web and CLI tests run real cases on the dev server (wall clock). The harness's policy
opens the night window; the test that needs it closed starts its case with 08:00-22:00.
Times are the last 23:00 in Shanghai or now, never a calendar date.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from db.models import AuditEvent, Loan, LoanContact, SmsOutbox
from db.seed import add_loan
from feeds.contacts import import_contacts
from service.users import Role
from tests.harness import Harness, loan_spec, running_worker
from tests.web_support import (
    PASSWORD,
    WAITS_FOR_VISIT,
    WaitingCase,
    add_user,
    app_for,
    case_waiting_for_visit,
    form_login,
)

ROOT = Path(__file__).resolve().parent.parent
SH = ZoneInfo("Asia/Shanghai")
JSON = {"accept": "application/json"}
BORROWER_PHONE = "+8613912345678"  # the harness's borrowers' number
DIGITS = "13912345678"


def id_number() -> str:
    """One borrower's ID number, this test's own (two loans of one borrower share it)."""
    return f"52240119800101{uuid.uuid4().int % 10_000:04d}"


def last_2300() -> datetime:
    """A past moment of the night window in Shanghai, well under a day ago: half an hour
    ago when that was night, else the latest 23:30."""
    now = datetime.now(SH)
    t = now - timedelta(minutes=30)
    if t.hour >= 22 or t.hour < 7:
        return t
    moment = now.replace(hour=23, minute=30, second=0, microsecond=0)
    return moment if moment <= now else moment - timedelta(days=1)


def add_contact(h: Harness, loan_no: str, relation: str, phone: str, name: str = "李四") -> int:
    with h.sessions.begin() as session:
        loan = session.scalar(select(Loan).where(Loan.loan_no == loan_no))
        assert loan is not None
        contact = LoanContact(
            loan_id=loan.id, name=name, relation=relation, phone=phone,
            added_at=datetime.now(UTC), added_by="office",
        )  # fmt: skip
        session.add(contact)
        session.flush()
        return contact.id


def trail(h: Harness, loan_no: str, action: str) -> list[tuple[str, str]]:
    with h.sessions() as session:
        rows = session.execute(
            select(AuditEvent.username, AuditEvent.outcome)
            .where(AuditEvent.loan_no == loan_no, AuditEvent.action == action)
            .order_by(AuditEvent.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


# ---------------------------------------------------------------- the web app


@pytest.fixture
async def web(
    dev_env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        transport = httpx.ASGITransport(app=app_for(h))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


async def bearer(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**JSON, "authorization": f"Bearer {r.json()['token']}"}


async def cancel(*cases: WaitingCase) -> None:
    for case in cases:
        await case.handle.cancel()


async def test_calls_through_the_api_up_to_the_cap_over_every_loan_of_the_borrower(web) -> None:
    h, http = web
    borrower = id_number()
    a = await case_waiting_for_visit(h, id_number=borrower)
    b = await case_waiting_for_visit(h, id_number=borrower)  # the same borrower and number
    status = await h.status(a.handle)
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in status.collectors)
    add_user(h, "mine", Role.COLLECTOR, collector_id=a.collector)
    add_user(h, "theirs", Role.COLLECTOR, collector_id=other)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "far", Role.SUPERVISOR, branches=["LS01"])
    auth = {u: await bearer(http, u) for u in ("mine", "theirs", "sup", "far")}
    url = f"/cases/{a.loan_no}"
    bodies = {
        "call": {"outcome": "NO_ANSWER", "collector_id": a.collector},
        "consent": {"given": True, "how": "VISIT"},
        "third-party": {"contact_id": 1},
    }
    # Another collector, another branch's supervisor: as if the case did not exist.
    for user in ("theirs", "far"):
        for action, body in bodies.items():
            r = await http.post(f"{url}/{action}", json=body, headers=auth[user])
            assert r.status_code == 404, (user, action, r.text)

    # Six unanswered calls to the number: each accepted with the stage.
    for _ in range(6):
        r = await http.post(f"{url}/call", json={"outcome": "NO_ANSWER"}, headers=auth["mine"])
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "FIELD_VISIT", r.text
        assert "call recorded: NO_ANSWER" in r.json()["message"]
    # The seventh on this loan: the workflow's validator refuses it, naming the field.
    seventh = await http.post(f"{url}/call", json={"outcome": "NO_ANSWER"}, headers=auth["mine"])
    assert seventh.status_code == 409
    assert seventh.json()["message"].startswith("outcome: already 6 unanswered calls")
    # The other loan's case has seen no call: its activity counts the number over both loans
    # and refuses (the reason nested in the activity's failure, unpacked to the field).
    b_status = await h.status(b.handle)
    other_loan = await http.post(
        f"/cases/{b.loan_no}/call",
        json={"outcome": "NO_ANSWER", "collector_id": b_status.collectors[0]},
        headers=auth["sup"],
    )
    assert other_loan.status_code == 409, other_loan.text
    message = other_loan.json()["message"]
    assert message.startswith("outcome: already 6 unanswered calls") and "every loan" in message
    assert DIGITS not in message  # the number in the reason is masked
    # An answered call is no attempt over the cap; a bad outcome names its field.
    answered = await http.post(f"{url}/call", json={"outcome": "ANSWERED"}, headers=auth["mine"])
    assert answered.status_code == 200, answered.text
    bad = await http.post(f"{url}/call", json={"outcome": "BUSY"}, headers=auth["mine"])
    assert bad.status_code == 409 and bad.json()["message"].startswith("outcome:")
    assert trail(h, a.loan_no, "record_call") == [("mine", "ACCEPTED")] * 6 + [
        ("mine", "REFUSED"),
        ("mine", "ACCEPTED"),
        ("mine", "REFUSED"),
    ]
    assert trail(h, b.loan_no, "record_call") == [("sup", "REFUSED")]

    # The collector's phone page: the number to dial and today's count, for each case.
    mine_list = (await http.get("/my", headers=auth["mine"])).json()
    listed = {c["loan_no"]: c for c in mine_list["cases"]}
    assert listed[a.loan_no]["phone"] == BORROWER_PHONE
    assert listed[a.loan_no]["unanswered_calls_today"] == 6
    assert mine_list["max_unanswered_calls_per_day"] == 6
    my_html = await http.get("/my", headers={"authorization": auth["mine"]["authorization"]})
    assert f'href="tel:{BORROWER_PHONE}"' in my_html.text and "今日未接通 6 / 6" in my_html.text

    # The case page: the collector dials the full number; a supervisor sees it masked, in
    # the HTML and in its JSON alike.
    html = {
        u: (await http.get(url, headers={"authorization": auth[u]["authorization"]})).text
        for u in ("mine", "sup")
    }
    assert f'href="tel:{BORROWER_PHONE}"' in html["mine"]
    assert "今日未接通 6 / 6" in html["mine"] and "今日未接通 6 / 6" in html["sup"]
    assert "无人接听" in html["sup"] and "空号" in html["sup"]  # the outcomes, Chinese first
    assert DIGITS not in html["sup"] and "tel:" not in html["sup"]
    sup_json = (await http.get(url, headers=auth["sup"])).json()
    assert sup_json["record"]["phone"] is None and sup_json["calls"]["unanswered_today"] == 6
    assert DIGITS not in str(sup_json)
    await cancel(a, b)


async def test_night_calls_need_consent_given_and_withdrawn_through_the_api(web) -> None:
    h, http = web
    policy = WAITS_FOR_VISIT.with_overrides(
        {"contact_window_start": "08:00", "contact_window_end": "22:00"}
    )
    spec, handle = await h.start(policy)
    status = await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    add_user(h, "mine", Role.COLLECTOR, collector_id=status.collectors[0])
    mine = await bearer(http, "mine")
    url = f"/cases/{spec.loan_no}"
    night = {"outcome": "ANSWERED", "called_at": last_2300().isoformat()}

    refused = await http.post(f"{url}/call", json=night, headers=mine)
    assert refused.status_code == 409
    assert refused.json()["message"].startswith("called_at: no calls or visits between 22:00")
    for body, field in (
        ({"given": True, "how": "FAX"}, "how:"),
        ({"how": "VISIT"}, "given:"),
        ({"given": "maybe", "how": "VISIT"}, "given:"),
    ):
        r = await http.post(f"{url}/consent", json=body, headers=mine)
        assert r.status_code == 409 and r.json()["message"].startswith(field), (body, r.text)
    given = await http.post(f"{url}/consent", json={"given": True, "how": "VISIT"}, headers=mine)
    assert given.status_code == 200 and "consent given" in given.json()["message"], given.text
    assert (await h.status(handle)).night_consent
    assert (await http.post(f"{url}/call", json=night, headers=mine)).status_code == 200
    page = (await http.get(url, headers={"authorization": mine["authorization"]})).text
    assert "已同意 given" in page and "夜间联系同意" in page
    # Withdrawn through the page's form (its select sends "0"), with the session's CSRF token.
    signed_in = await form_login(http, "mine")
    http.cookies.set("collection_session", signed_in.cookies["collection_session"])
    csrf = (await http.get(url)).text.split('name="csrf" value="')[1].split('"')[0]
    form = {"given": "0", "how": "CALL"}
    assert (await http.post(f"{url}/consent", data=form)).status_code == 403  # no token
    withdrawn = await http.post(f"{url}/consent", data={**form, "csrf": csrf})
    assert withdrawn.status_code == 303
    assert "withdrawn" in (await http.get(url)).text  # the page's message after the form
    http.cookies.clear()
    assert not (await h.status(handle)).night_consent
    again = await http.post(f"{url}/call", json=night, headers=mine)
    assert again.status_code == 409 and again.json()["message"].startswith("called_at:")
    # The case's refusal and the unreadable bodies are audited alike (the latter by route).
    assert [o for _, o in trail(h, spec.loan_no, "record_consent")] == [
        "REFUSED", "ACCEPTED", "ACCEPTED",
    ]  # fmt: skip
    assert [o for _, o in trail(h, spec.loan_no, "consent")] == ["REFUSED", "REFUSED"]
    await handle.cancel()


async def test_third_parties_through_the_api_and_the_page(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    neighbour = add_contact(h, case.loan_no, "OTHER", "+8613700000011", "邻居张")
    guarantor = add_contact(h, case.loan_no, "GUARANTOR", "+8613700000012", "保人王")
    elsewhere = h.add_loan()
    strangers = add_contact(h, elsewhere.loan_no, "GUARANTOR", "+8613700000013")
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    mine, sup = await bearer(http, "mine"), await bearer(http, "sup")
    url = f"/cases/{case.loan_no}"

    # The page: the contacts with their relation in Chinese; the unrelated one's button is
    # disabled with the reason until contact with the debtor is lost; numbers by role.
    sup_page = (await http.get(url, headers={"authorization": sup["authorization"]})).text
    assert "邻居张" in sup_page and "其他" in sup_page and "保证人" in sup_page
    assert "13700000011" not in sup_page and "+86137****0011" in sup_page
    row = sup_page.split(f'id="contact-{neighbour}"')[1].split("</tr>")[0]
    assert "请其转告" in row and "disabled" in row and "失联前不得联系无关第三方" in row
    row = sup_page.split(f'id="contact-{guarantor}"')[1].split("</tr>")[0]
    assert "请其转告" in row and "disabled" not in row
    mine_page = (await http.get(url, headers={"authorization": mine["authorization"]})).text
    assert 'href="tel:+8613700000011"' in mine_page
    sup_json = (await http.get(url, headers=sup)).json()
    assert [c["phone"] for c in sup_json["record"]["contacts"]] == [None, None]
    assert "13700000011" not in str(sup_json)
    assert sup_json["third_party"][str(neighbour)].startswith("contact_id: an unrelated")
    mine_json = (await http.get(url, headers=mine)).json()
    assert [c["phone"] for c in mine_json["record"]["contacts"]] == [
        "+8613700000011",
        "+8613700000012",
    ]

    # Whether a contact is related is the database's word, not the caller's.
    early = await http.post(
        f"{url}/third-party", json={"contact_id": neighbour, "related": True}, headers=mine
    )
    assert early.status_code == 409
    assert early.json()["message"].startswith(
        "contact_id: an unrelated third party may be contacted only after contact with the "
        "debtor is lost"
    )
    foreign = await http.post(f"{url}/third-party", json={"contact_id": strangers}, headers=sup)
    assert foreign.status_code == 409
    assert foreign.json()["message"] == (
        f"contact_id: {strangers} is not a contact of loan {case.loan_no}"
    )
    related = await http.post(f"{url}/third-party", json={"contact_id": guarantor}, headers=mine)
    assert related.status_code == 200 and related.json()["stage"] == "FIELD_VISIT", related.text
    # A form post needs the session's CSRF token.
    signed_in = await form_login(http, "mine")
    http.cookies.set("collection_session", signed_in.cookies["collection_session"])
    forged = await http.post(f"{url}/third-party", data={"contact_id": str(guarantor)})
    assert forged.status_code == 403
    http.cookies.clear()

    for _ in range(3):  # three failed attempts in a row: contact with the debtor is lost
        r = await http.post(f"{url}/call", json={"outcome": "NO_ANSWER"}, headers=mine)
        assert r.status_code == 200, r.text
    assert (await h.status(case.handle)).contact_lost
    sup_page = (await http.get(url, headers={"authorization": sup["authorization"]})).text
    row = sup_page.split(f'id="contact-{neighbour}"')[1].split("</tr>")[0]
    assert "disabled" not in row
    late = await http.post(f"{url}/third-party", json={"contact_id": neighbour}, headers=mine)
    assert late.status_code == 200, late.text
    week = await http.post(f"{url}/third-party", json={"contact_id": neighbour}, headers=mine)
    assert week.status_code == 409 and "at most once in 7 days" in week.json()["message"]
    with h.sessions() as session:
        sent = session.scalars(
            select(SmsOutbox.purpose).where(SmsOutbox.to_number == "+8613700000011")
        ).all()
    assert sent == ["third_party_request"]
    assert [o for _, o in trail(h, case.loan_no, "contact_third_party")] == [
        "REFUSED", "REFUSED", "ACCEPTED", "ACCEPTED", "REFUSED",
    ]  # fmt: skip
    await case.handle.cancel()


# ---------------------------------------------------------------- the CLI


@pytest.fixture
async def cli(dev_env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[tuple[Harness, object]]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "COLLECTION_DB_URL": str(sqlite_sessions.kw["bind"].url),
        "COLLECTION_DATA_DIR": str(tmp_path / "data"),
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        yield h, run


async def test_the_cli_records_calls_consent_and_third_parties(cli) -> None:
    h, run = cli
    case = await case_waiting_for_visit(h)
    neighbour = add_contact(h, case.loan_no, "FAMILY", "+8613700000021")
    guarantor = add_contact(h, case.loan_no, "CO_BORROWER", "+8613700000022")
    by = ("--by", "李主任")

    early = await run("third-party", case.loan_no, "--contact", str(neighbour), *by)
    assert early.returncode == 1
    assert "refused: contact_id: an unrelated third party may be contacted only after" in (
        early.stderr
    )
    unknown = await run("third-party", case.loan_no, "--contact", "999999", *by)
    assert unknown.returncode == 1 and "refused: contact_id: 999999 is not a contact" in (
        unknown.stderr
    )
    done = await run("third-party", case.loan_no, "--contact", str(guarantor), *by)
    assert done.returncode == 0 and "accepted, stage FIELD_VISIT" in done.stdout, done.stderr

    call = ("call", case.loan_no, "--collector", case.collector, *by)
    for _ in range(6):
        r = await run(*call, "--outcome", "NO_ANSWER")
        assert r.returncode == 0 and "call recorded: NO_ANSWER" in r.stdout, r.stderr
    seventh = await run(*call, "--outcome", "NO_ANSWER", "--at", datetime.now(SH).isoformat())
    assert seventh.returncode == 1
    assert "refused: outcome: already 6 unanswered calls" in seventh.stderr
    contact_call = await run(*call, "--outcome", "ANSWERED", "--party", f"contact:{guarantor}")
    assert contact_call.returncode == 0, contact_call.stderr
    assert "13700000022" not in contact_call.stdout + contact_call.stderr
    stranger = await run(*call, "--outcome", "ANSWERED", "--party", "contact:999999")
    assert stranger.returncode == 1 and "refused: party:" in stranger.stderr
    wrong = await run("call", case.loan_no, "--outcome", "ANSWERED", "--collector", "QX02-C01", *by)
    assert wrong.returncode == 1 and "refused: collector_ids:" in wrong.stderr

    given = await run("consent", case.loan_no, "--give", "--how", "VISIT", *by)
    assert given.returncode == 0 and "consent given: NIGHT_CONTACT" in given.stdout, given.stderr
    assert (await h.status(case.handle)).night_consent
    withdrawn = await run("consent", case.loan_no, "--withdraw", "--how", "CALL", *by)
    assert withdrawn.returncode == 0 and "withdrawn" in withdrawn.stdout
    assert not (await h.status(case.handle)).night_consent
    assert (await run("consent", case.loan_no, "--give", "--how", "FAX", *by)).returncode == 2

    # Contact lost after the failed calls: the family member may now be asked.
    late = await run("third-party", case.loan_no, "--contact", str(neighbour), *by)
    assert late.returncode == 0, late.stderr
    with h.sessions() as session:
        actions = session.execute(
            select(AuditEvent.action, AuditEvent.outcome, AuditEvent.username)
            .where(AuditEvent.loan_no == case.loan_no)
            .order_by(AuditEvent.id)
        ).all()
    assert {u for *_, u in actions} == {"李主任"}
    assert [(a, o) for a, o, _ in actions if a == "record_call"] == [
        *[("record_call", "ACCEPTED")] * 6,
        ("record_call", "REFUSED"),
        ("record_call", "ACCEPTED"),
        ("record_call", "REFUSED"),
        ("record_call", "REFUSED"),
    ]
    await case.handle.cancel()


# ---------------------------------------------------------------- the contacts file


def contacts_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLLECTION_DB_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "contacts", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def stored(sessions) -> list[tuple[int, str, str, str, str]]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        rows = session.execute(
            select(LoanContact.id, Loan.loan_no, LoanContact.name, LoanContact.relation,
                   LoanContact.phone)
            .join(Loan, Loan.id == LoanContact.loan_id)
            .order_by(LoanContact.id)
        ).all()  # fmt: skip
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_the_contacts_file_imports_good_rows_reports_bad_ones_and_runs_twice_safely(
    sessions, tmp_path: Path
) -> None:
    one, two = loan_spec(), loan_spec()
    with sessions.begin() as session:
        add_loan(session, one)
        add_loan(session, two)
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    good = [
        f"{one.loan_no},李四,保证人,139 0000 1111",
        f"{one.loan_no},王芳,共同借款人,１３９００００２２２２",
        f"{one.loan_no},李小,亲属,+86 139-0000-3333",
        f"{two.loan_no},赵大,其他,13900004444",
        f"{two.loan_no},钱二,家属,13900005555",
    ]
    bad = [
        (f"{one.loan_no},孙三,其他,12345", "phone"),
        ("NO-SUCH-LOAN,周四,其他,13900006666", "loan_no"),
        (f"{one.loan_no},吴五,朋友,13900007777", "relation"),
        (f"{one.loan_no},郑六,其他,{DIGITS}", "phone"),  # the borrower's own number
        (f"{one.loan_no},冯七,其他,139 0000 1111", "phone"),  # twice in the file for the loan
        (f"{two.loan_no},=HYPERLINK(1),其他,13900008888", "name"),
        (f"{two.loan_no},陈八,其他,", "phone"),
    ]
    path = tmp_path / "contacts.csv"
    path.write_text(
        "\n".join(["贷款编号,姓名,关系,手机号", *good, *(r for r, _ in bad)]) + "\n",
        encoding="utf-8-sig",
    )
    first = contacts_cli(url, str(path), "--by", "office")
    assert first.returncode == 3, first.stderr
    assert "12 rows: added 5, updated 0, unchanged 0, rejected 7" in first.stdout
    rejected = [line for line in first.stderr.splitlines() if line.startswith("rejected: ")]
    assert [line.split(",")[1].split(":")[0].strip() for line in rejected] == [f for _, f in bad]
    assert [int(line.split(",")[0].split()[-1]) for line in rejected] == list(range(7, 14))
    for digits in ("13900001111", "13900006666", "13900007777", DIGITS):
        assert digits not in first.stdout + first.stderr  # personal data: never printed
    rows = stored(sessions)
    assert [(loan, name, relation, phone) for _, loan, name, relation, phone in rows] == [
        (one.loan_no, "李四", "GUARANTOR", "+8613900001111"),
        (one.loan_no, "王芳", "CO_BORROWER", "+8613900002222"),
        (one.loan_no, "李小", "FAMILY", "+8613900003333"),
        (two.loan_no, "赵大", "OTHER", "+8613900004444"),
        (two.loan_no, "钱二", "FAMILY", "+8613900005555"),
    ]

    again = contacts_cli(url, str(path), "--by", "office")
    assert again.returncode == 3
    assert "12 rows: added 0, updated 0, unchanged 5, rejected 7" in again.stdout
    assert stored(sessions) == rows  # the same rows, the same ids

    # GB18030 with English headers and English relations; a corrected relation is updated.
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(
        f"loan_no,name,relation,phone\n{two.loan_no},赵大,guarantor,139 0000 4444\n",
        encoding="gb18030",
    )
    corrected = contacts_cli(url, str(fixed))
    assert corrected.returncode == 0, corrected.stderr
    assert "1 rows: added 0, updated 1, unchanged 0, rejected 0" in corrected.stdout
    assert stored(sessions)[3][3] == "GUARANTOR"
    listed = contacts_cli(url, "--loan", one.loan_no)
    assert listed.returncode == 0 and "+86139****1111" in listed.stdout
    assert "保证人" in listed.stdout
    assert "13900001111" not in listed.stdout and f"{one.loan_no}: 3 contacts" in listed.stdout

    # A file that is not a contacts file, or not there: exit 1, nothing stored.
    wrong = tmp_path / "payments.csv"
    wrong.write_text("loan_no,amount_yuan,paid_on,reference\n", encoding="utf-8")
    missing = contacts_cli(url, str(wrong))
    assert missing.returncode == 1 and "missing columns: name" in missing.stderr
    assert contacts_cli(url, str(tmp_path / "none.csv")).returncode == 1
    assert stored(sessions)[:3] == rows[:3]
    with sessions() as session:
        audits = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "import_contacts")
        ).all()
    assert len(audits) == 3 and all("+86" not in d for d in audits)


def test_the_reader_takes_the_service_path_the_cli_takes(sessions, tmp_path: Path) -> None:
    """The reader on its own: the same row stored once however often it comes."""
    spec = loan_spec()
    with sessions.begin() as session:
        add_loan(session, spec)
    path = tmp_path / "c.csv"
    path.write_text(f"loan_no,name,relation,phone\n{spec.loan_no},甲,OTHER,13900009999\n")
    assert import_contacts(path, sessions).stored.added == 1
    report = import_contacts(path, sessions)
    assert (report.stored.added, report.stored.unchanged, report.errors) == (0, 1, [])
    assert len(stored(sessions)) == 1
