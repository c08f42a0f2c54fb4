"""The pages' JSON API and access rules, over HTTP, against real cases on the dev server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.models import AuditEvent, User, Visit
from domain.names import workflow_id
from service.users import Role
from tests.harness import Harness, running_worker
from tests.web_support import PASSWORD, add_user, app_for, case_waiting_for_visit, form_login
from workflows.collection import LoanCollectionWorkflow as WF

JSON = {"accept": "application/json"}


@pytest.fixture
async def web(
    dev_env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:
        transport = httpx.ASGITransport(app=app_for(h))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


async def token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**JSON, "authorization": f"Bearer {r.json()['token']}"}


async def close(h: Harness, handle) -> None:  # type: ignore[no-untyped-def]
    from domain.models import CloseRequest

    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "test"))
    await handle.result()


async def test_sign_in_is_required_and_passwords_are_kept_hashed(web) -> None:
    h, http = web
    add_user(h, "sup1", Role.SUPERVISOR, branches=["QX01"])
    r = await http.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/dashboard"
    assert (await http.get("/dashboard", headers=JSON)).status_code == 401
    wrong = await form_login(http, "sup1", "guess-guess")
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    unknown = await form_login(http, "nobody")
    assert unknown.status_code == 401
    ok = await form_login(http, "sup1")
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    assert "httponly" in ok.headers["set-cookie"].lower()
    with h.sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "sup1"))
    assert stored and PASSWORD not in stored and stored.startswith("scrypt$")
    with h.sessions() as session:
        logins = session.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "login"))
        assert sorted(logins) == ["DONE", "REFUSED", "REFUSED"]


async def test_collectors_see_only_their_cases_and_their_actions_are_audited(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    team = (await h.status(case.handle)).collectors  # the rule set's team of two
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in team)
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "theirs", Role.COLLECTOR, collector_id=other)
    add_user(h, "far", Role.SUPERVISOR, branches=["LS01"])
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    mine, theirs = await token(http, "mine"), await token(http, "theirs")

    # Another collector's case and another branch's supervisor: 404, as if it did not exist.
    assert (await http.get(f"/cases/{case.loan_no}", headers=theirs)).status_code == 404
    far = await token(http, "far")
    assert (await http.get(f"/cases/{case.loan_no}", headers=far)).status_code == 404
    refused = await http.post(
        f"/cases/{case.loan_no}/visit", json={"outcome": "MET"}, headers=theirs
    )
    assert refused.status_code == 404
    # A collector's own list, and no supervisor pages for them.
    listed = (await http.get("/my", headers=mine)).json()["cases"]
    assert [c["loan_no"] for c in listed] == [case.loan_no]
    assert "next_action_stamp" not in listed[0] and "next_action_at" in listed[0]
    assert (await http.get("/dashboard", headers=mine)).status_code == 404

    page = (await http.get(f"/cases/{case.loan_no}", headers=mine)).json()
    assert page["status"]["stage"] == "FIELD_VISIT"

    # A report the case refuses comes back with the validator's reason, naming the field.
    bad = await http.post(f"/cases/{case.loan_no}/visit", json={"outcome": "GONE"}, headers=mine)
    assert bad.status_code == 409 and bad.json()["message"].startswith("outcome:")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    late = await http.post(
        f"/cases/{case.loan_no}/visit",
        json={"outcome": "MET", "visited_at": tomorrow, "teammates": team},
        headers=mine,
    )
    assert late.status_code == 409 and late.json()["message"].startswith("visited_at:")
    good = await http.post(
        f"/cases/{case.loan_no}/visit",
        json={"outcome": "MET", "notes": "met at the farmhouse", "teammates": team},
        headers=mine,
    )
    assert good.status_code == 200 and good.json()["accepted"], good.text
    await h.at_stage(case.handle, "NEGOTIATION")

    with h.sessions() as session:
        visits = session.scalars(select(Visit)).all()
        assert [(v.outcome, v.reported_by) for v in visits] == [("MET", case.collector)]
        trail = session.execute(
            select(AuditEvent.username, AuditEvent.action, AuditEvent.outcome)
            .where(AuditEvent.loan_no == case.loan_no)
            .order_by(AuditEvent.id)
        ).all()
    assert trail == [
        ("mine", "report_visit", "REFUSED"),
        ("mine", "report_visit", "REFUSED"),
        ("mine", "report_visit", "ACCEPTED"),
    ]
    # Supervisors' actions are theirs alone; the case page shows the timeline with the user.
    assert (
        await http.post(
            f"/cases/{case.loan_no}/close",
            json={"outcome": "CANCELLED", "reason": "x"},
            headers=mine,
        )  # fmt: skip
    ).status_code == 404
    sup = await token(http, "sup")
    record = (await http.get(f"/cases/{case.loan_no}", headers=sup)).json()["record"]
    assert any(e["who"] == "mine" and e["kind"] == "report_visit" for e in record["timeline"])
    assert record["phone_masked"].endswith("5678") and "1391234" not in record["phone_masked"]
    closed = await http.post(
        f"/cases/{case.loan_no}/close",
        json={"outcome": "CANCELLED", "reason": "paid off at the branch"},
        headers=sup,
    )
    assert closed.json()["accepted"], closed.text
    result = await case.handle.result()
    assert result.outcome == "CANCELLED"


async def test_form_posts_need_the_sessions_csrf_token(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "c1", Role.COLLECTOR, collector_id=case.collector)
    r = await form_login(http, "c1")
    http.cookies.set("collection_session", r.cookies["collection_session"])
    forged = await http.post(f"/cases/{case.loan_no}/visit", data={"outcome": "MET"})
    assert forged.status_code == 403
    assert (await h.status(case.handle)).counters.visits == 0
    await close(h, case.handle)


async def test_dashboard_counts_lists_and_caseloads_for_the_supervisors_branches(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    elsewhere = await case_waiting_for_visit(h, branch="LS01")
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    sup = await token(http, "sup")
    for _ in range(100):  # visibility is eventually consistent
        board = (await http.get("/dashboard?stage=FIELD_VISIT", headers=sup)).json()
        if case.loan_no in [c["loan_no"] for c in board["cases"]]:
            break
        await asyncio.sleep(0.1)
    loans = [c["loan_no"] for c in board["cases"]]
    assert case.loan_no in loans and elsewhere.loan_no not in loans
    assert {c["branch"] for c in board["counts"]} == {"QX01"}
    assert any(c["stage"] == "FIELD_VISIT" and c["cases"] >= 1 for c in board["counts"])
    loads = {c["collector_id"]: c["open_cases"] for c in board["caseloads"]}
    assert loads[case.collector] >= 1 and all(k.startswith("QX01") for k in loads)
    assert board["complaints"] == []  # none yet (tests/test_complaints.py counts them)
    bad = await http.get("/dashboard?stage=NOPE", headers=sup)
    assert bad.status_code == 400 and bad.json()["error"].startswith("stage:")
    html = await http.get(
        "/dashboard?stage=FIELD_VISIT", headers={"authorization": sup["authorization"]}
    )
    assert html.status_code == 200 and case.loan_no in html.text
    # The same list as an Excel workbook: the supervisor's branches only, Chinese first.
    from openpyxl import load_workbook

    xlsx = await http.get("/dashboard/cases.xlsx?stage=FIELD_VISIT", headers=sup)
    assert xlsx.status_code == 200 and "spreadsheetml" in xlsx.headers["content-type"]
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "贷款编号 Loan"
    mine = next(r for r in rows[1:] if r[0] == case.loan_no)
    assert mine[1] == "上门外访 FIELD_VISIT" and mine[6] == 10_000  # yuan, to the fen
    assert elsewhere.loan_no not in [r[0] for r in rows]
    bad_xlsx = await http.get("/dashboard/cases.xlsx?min_dpd=x", headers=sup)
    assert bad_xlsx.status_code == 400 and "min_dpd" in bad_xlsx.text
    with h.sessions() as session:
        assert session.scalar(select(AuditEvent).where(AuditEvent.action == "export_cases"))
    for c in (case, elsewhere):
        await close(h, c.handle)


async def test_back_office_uploads_the_export_and_sees_each_rejected_row(web) -> None:
    from tests.test_feeds import HEADER_ZH, export

    h, http = web
    add_user(h, "office", Role.BACK_OFFICE)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    assert (await http.get("/feeds", headers=await token(http, "sup"))).status_code == 404
    r = await form_login(http, "office")
    http.cookies.set("collection_session", r.cookies["collection_session"])
    page = await http.get("/feeds")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    # The feed's "today" is the wall clock's: the rows' dates are weeks around it, and their
    # loan numbers this test's own.
    x = export(datetime.now(UTC).date())
    body = "\n".join([HEADER_ZH, *x.good, *(row for row, _ in x.bad)]).encode("gb18030")
    upload = await http.post(
        "/feeds",
        data={"csrf": csrf, "kind": "loans"},
        files={"file": ("导出.csv", body, "text/csv")},
    )
    assert upload.status_code == 200, upload.text
    assert "9 rows: imported 2, cases started 2" in upload.text
    for line, (_row, field) in enumerate(x.bad, start=4):  # header line 1, good rows 2-3
        assert f'<td class="num">{line}</td><td>{field}</td>' in upload.text
    # The rejected rows come back as a file to correct and upload again, in the upload's
    # encoding, with the reason first.
    link = upload.text.split('id="rejected-download" download="')[1]
    assert link.startswith("导出.rejected.csv")
    data = base64.b64decode(link.split("base64,")[1].split('"')[0]).decode("gb18030")
    assert data.splitlines()[0] == "拒绝原因," + HEADER_ZH and len(data.splitlines()) == 8
    with h.sessions() as session:
        events = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "feed_loans"))
        assert [e for e in events if "rejected rows 7" in e]
    for loan in x.loans:
        handle = h.client.get_workflow_handle(workflow_id(loan))
        h.started.append(handle)
        await handle.cancel()


def generated(strategy, n: int = 60) -> list:  # type: ignore[no-untyped-def, type-arg]
    """`n` examples drawn by Hypothesis (checked afterwards against a live case)."""
    from hypothesis import HealthCheck, given, settings

    drawn: list = []  # type: ignore[type-arg]

    @settings(max_examples=n, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example) -> None:  # type: ignore[no-untyped-def]
        drawn.append(example)

    collect()
    return drawn


async def test_any_action_body_is_answered_with_a_reason_and_changes_nothing(web) -> None:
    from hypothesis import strategies as st

    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    sup = await token(http, "sup")
    # Dates around today (the calendar moves on; a literal date would one day be in the past).
    today = datetime.now(UTC).date()
    far, last_week = today + timedelta(days=400), datetime.now(UTC) - timedelta(days=7)
    values = st.one_of(
        st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
        st.lists(st.text(max_size=8), max_size=3), st.dictionaries(st.text(max_size=5), st.none()),
        st.sampled_from(["MET", far.isoformat(), f"{last_week:%Y-%m-%dT%H:%M}", "1e99", "-1",
                         "CANCELLED"]),
    )  # fmt: skip
    fields = ["outcome", "collector_ids", "visited_at", "months", "first_due", "down_payment",
              "version", "sha256", "place", "until", "reason", "teammate", "collector_id",
              "signed_at", "notes", "called_at", "party", "given", "how", "at",
              "contact_id"]  # fmt: skip
    bodies = generated(st.dictionaries(st.sampled_from(fields), values, max_size=6))
    # Each route and the fields its refusals may name (its own, the case's stage, the body).
    names = {
        "visit": {"outcome", "collector_ids", "visited_at", "notes", "teammate", "teammates"},
        "plan": {"months", "first_due", "down_payment", "notes", "installments"},
        "signature": {"version", "sha256", "collector_id", "signed_at", "place"},
        "hold": {"until", "reason"},
        "lift-hold": {"reason", "by"},
        "close": {"outcome", "reason"},
        "reassign": {"collector_ids", "reason"},
        "call": {"outcome", "collector_id", "called_at", "party", "notes"},
        "consent": {"given", "how", "at", "notes", "kind", "by"},
        "third-party": {"contact_id", "by"},
    }
    actions = [*names, "nope"]
    for n, body in enumerate(bodies):
        action = actions[n % len(actions)]
        if action == "visit" and body.get("outcome") in ("MET", "NOT_HOME", "REFUSED"):
            body["outcome"] = "GONE"  # every body is one the case must refuse
        if action in ("hold", "close", "reassign"):
            body.pop("reason", None)  # without a reason they are refused, whatever else
        r = await http.post(  # json.dumps writes NaN and Infinity, as sloppy clients do
            f"/cases/{case.loan_no}/{action}",
            content=json.dumps(body),
            headers={**sup, "content-type": "application/json"},
        )
        if action == "nope":  # the one route that does not exist
            assert r.status_code == 404, (action, body, r.status_code, r.text)
            continue
        # A real route answers: refused (409), never "no such route", naming the field.
        assert r.status_code == 409, (action, body, r.status_code, r.text)
        message = r.json()["message"]
        field, _, reason = message.partition(":")
        named = names[action] | {"stage", "body"}
        assert field in named and reason.strip(), (action, body, message)
    status = await h.status(case.handle)
    assert status.stage == "FIELD_VISIT" and status.hold is None
    assert status.counters.visits == 0 and status.plan_number is None
    not_json = await http.post(
        f"/cases/{case.loan_no}/visit",
        content=b"{not json",
        headers={**sup, "content-type": "application/json"},
    )
    assert not_json.status_code == 409 and not_json.json()["message"].startswith("body:")
    await case.handle.cancel()


async def test_each_role_sees_the_same_borrower_data_in_json_and_html(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    with h.sessions() as session:
        from db.models import Borrower, Loan

        phone = session.scalar(
            select(Borrower.phone).join(Loan).where(Loan.loan_no == case.loan_no)
        )
    assert phone and len(phone) > 8
    digits, masked = phone.lstrip("+"), phone[:-8] + "****" + phone[-4:]
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "office", Role.BACK_OFFICE)

    async def both(path: str, user: str) -> tuple[httpx.Response, httpx.Response]:
        auth = await token(http, user)
        as_json = await http.get(path, headers=auth)
        as_html = await http.get(path, headers={"authorization": auth["authorization"]})
        assert "json" in as_json.headers["content-type"], path
        assert "html" in as_html.headers["content-type"], path
        return as_json, as_html

    # Supervisors: masked, whatever the representation; never the digits anywhere.
    for r in await both(f"/cases/{case.loan_no}", "sup"):
        assert r.status_code == 200 and masked in r.text
        assert digits not in r.text and phone[-8:] not in r.text, r.text[:400]
    as_json, _ = await both(f"/cases/{case.loan_no}", "sup")
    assert as_json.json()["record"]["phone"] is None
    for r in await both("/dashboard", "sup"):
        assert r.status_code == 200 and digits not in r.text
    # The case's own collector: the full number in both.
    as_json, as_html = await both(f"/cases/{case.loan_no}", "mine")
    assert as_json.json()["record"]["phone"] == phone
    assert f'href="tel:{phone}"' in as_html.text
    # Their phone page: the number to dial on each of their cases, as on the case page.
    as_json, as_html = await both("/my", "mine")
    assert [c["phone"] for c in as_json.json()["cases"]] == [phone]
    assert f'href="tel:{phone}"' in as_html.text
    # The back office sees no case, in either form.
    for r in await both(f"/cases/{case.loan_no}", "office"):
        assert r.status_code == 404 and digits not in r.text and case.loan_no not in r.text
    await case.handle.cancel()


async def test_the_case_page_shows_only_the_servers_own_message_after_a_form(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "c1", Role.COLLECTOR, collector_id=case.collector)
    r = await form_login(http, "c1")
    http.cookies.set("collection_session", r.cookies["collection_session"])
    # A crafted link cannot put its words on our page.
    lure = "账户已冻结 call 400-000-0000 now"
    crafted = await http.get(f"/cases/{case.loan_no}", params={"ok": "1", "msg": lure})
    assert crafted.status_code == 200 and lure not in crafted.text
    assert 'id="flash"' not in crafted.text
    # A form's outcome is shown once, on the page the form came from.
    page = await http.get(f"/cases/{case.loan_no}")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    bad = await http.post(f"/cases/{case.loan_no}/visit", data={"csrf": csrf, "outcome": "GONE"})
    assert bad.status_code == 303 and bad.headers["location"] == f"/cases/{case.loan_no}"
    shown = await http.get(bad.headers["location"])
    assert 'id="flash"' in shown.text and "outcome:" in shown.text
    assert 'id="flash"' not in (await http.get(f"/cases/{case.loan_no}")).text
    await case.handle.cancel()


async def test_promises_and_waivers_through_the_pages_with_each_roles_limit(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "head", Role.BRANCH_HEAD, branches=["QX01"])
    mine, sup, head = await token(http, "mine"), await token(http, "sup"), await token(http, "head")
    url = f"/cases/{case.loan_no}"
    today = datetime.now(UTC).date()
    promised = await http.post(
        f"{url}/promise",
        json={"amount": "500.00", "due_date": (today + timedelta(days=3)).isoformat(),
              "source": "CALL"},
        headers=mine,
    )  # fmt: skip
    assert promised.json()["accepted"], promised.text
    page = (await http.get(url, headers=mine)).json()
    assert [(p["amount_fen"], p["status"], p["by"]) for p in page["status"]["promises"]] == [
        (50_000, "OPEN", case.collector)
    ]
    # A settlement of 9,000 yuan (1,000 waived: interest and penalty) needs a supervisor.
    proposed = await http.post(
        f"{url}/waiver",
        json={"kind": "SETTLEMENT", "settle": "9000", "reason": "harvest lost"},
        headers=mine,
    )
    assert "awaits a SUPERVISOR" in proposed.json()["message"], proposed.text
    # A collector cannot decide (the way in); a head can (the case: level above).
    refused = await http.post(f"{url}/decide-waiver", json={"seq": 1, "approve": 1}, headers=mine)
    assert refused.status_code == 409 and refused.json()["message"].startswith("role:")
    html = (await http.get(url, headers={"authorization": head["authorization"]})).text
    assert "减免与结清" in html and "decide-waiver-form" in html and "承诺还款" in html
    approved = await http.post(
        f"{url}/decide-waiver", json={"seq": 1, "approve": 1, "reason": "ok"}, headers=head
    )
    assert approved.json()["accepted"], approved.text
    status = (await http.get(url, headers=sup)).json()["status"]
    # A settlement is conditional: the debt is lowered once its lump sum is paid.
    assert status["outstanding_fen"] == 1_000_000 and status["waivers"][0]["decided_by"] == "head"
    assert status["waivers"][0]["status"] == "APPROVED" and status["waivers"][0]["pay_by"]
    html = (await http.get(url, headers={"authorization": sup["authorization"]})).text
    assert "已批准 APPROVED (待付 9,000.00 元" in html
    with h.sessions() as session:
        trail = set(
            session.execute(
                select(AuditEvent.username, AuditEvent.action, AuditEvent.outcome).where(
                    AuditEvent.loan_no == case.loan_no
                )
            ).all()
        )
    assert {
        ("mine", "record_promise", "ACCEPTED"),
        ("mine", "propose_waiver", "ACCEPTED"),
        ("mine", "decide_waiver", "REFUSED"),
        ("head", "decide_waiver", "ACCEPTED"),
    } <= trail
    await close(h, case.handle)
