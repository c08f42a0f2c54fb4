"""Who may POST what (issue 13, item 19): every POST route of the web app, for every role
that may not use it, against a real case on the dev server.

README: actions are `visit | plan | signature` (collectors on their own cases, supervisors)
and `reassign | hold | lift-hold | close` (supervisors); a case the user may not see is 404;
without a session a tool gets 401 and a browser is sent to /login; the back office has the
feeds and no case pages; the codec endpoint is for signed-in supervisors only. The app
answers a role's missing route 404 too ("a page a role cannot use does not exist for it").

Every refused body here is one the case would accept or refuse on its merits (never 404),
so a missing role check shows as another status; and at the end the case is unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Loan
from domain.models import CloseRequest
from service.codec import EncryptionCodec, Keys
from service.users import Role
from tests.harness import Harness, running_worker
from tests.web_support import PASSWORD, add_user, case_waiting_for_visit
from webapp.app import create_app
from webapp.pages import WebConfig
from webapp.twilio_webhooks import WebhookConfig
from workflows.collection import LoanCollectionWorkflow as WF

JSON = {"accept": "application/json"}
CASE_ACTIONS = ("visit", "plan", "signature", "reassign", "hold", "lift-hold", "close")
SUPERVISORS_ONLY = ("reassign", "hold", "lift-hold", "close")


@pytest.fixture
async def web(
    dev_env, sqlite_sessions, tmp_path: Path
) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    async with running_worker(dev_env, sqlite_sessions, tmp_path / "data") as h:

        async def temporal():  # type: ignore[no-untyped-def]
            return h.client

        codec = EncryptionCodec(Keys.parse(Keys.generate("k1")))
        app = create_app(
            h.sessions, temporal, WebhookConfig("0" * 32), WebConfig(h.task_queue, h.policy), codec
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield h, http


async def bearer(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    r = await http.post("/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**JSON, "authorization": f"Bearer {r.json()['token']}"}


def bodies(collectors: list[str], other: str) -> dict[str, dict[str, object]]:
    """For each action, a body that names everything it needs."""
    now = datetime.now(UTC)
    return {
        "visit": {"outcome": "MET", "collector_ids": collectors, "notes": "met"},
        "plan": {"months": 3, "first_due": (now + timedelta(days=30)).date().isoformat()},
        "signature": {
            "version": 1,
            "sha256": "0" * 64,
            "collector_id": collectors[0],
            "place": "村委会",
        },  # fmt: skip
        "reassign": {"collector_ids": [other], "reason": "closer to the village"},
        "hold": {"until": (now + timedelta(days=10)).isoformat(), "reason": "flood"},
        "lift-hold": {"reason": "recovered"},
        "close": {"outcome": "CANCELLED", "reason": "paid at the counter"},
    }


async def test_every_post_route_refuses_the_roles_it_is_not_for(web) -> None:
    h, http = web
    case = await case_waiting_for_visit(h)
    before = await h.status(case.handle)
    other = next(c for c in ("QX01-C01", "QX01-C02", "QX01-C03") if c not in before.collectors)
    add_user(h, "mine", Role.COLLECTOR, collector_id=case.collector)
    add_user(h, "theirs", Role.COLLECTOR, collector_id=other)
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    add_user(h, "far", Role.SUPERVISOR, branches=["LS01"])
    add_user(h, "office", Role.BACK_OFFICE)
    auth = {u: await bearer(http, u) for u in ("mine", "theirs", "sup", "far", "office")}
    body = bodies(before.collectors, other)
    url = f"/cases/{case.loan_no}"

    refused = {
        # Another collector's case, another branch's supervisor, the back office: 404.
        "theirs": CASE_ACTIONS,
        "far": CASE_ACTIONS,
        "office": CASE_ACTIONS,
        # The case's own collector: the supervisors' actions do not exist for them.
        "mine": SUPERVISORS_ONLY,
    }
    answers = {}
    for user, actions in refused.items():
        for action in actions:
            r = await http.post(f"{url}/{action}", json=body[action], headers=auth[user])
            answers[(user, action)] = r.status_code
    assert {k: v for k, v in answers.items() if v != 404} == {}
    # Without a session: 401 for a tool, the sign-in page for a browser.
    for action in CASE_ACTIONS:
        assert (await http.post(f"{url}/{action}", json=body[action])).status_code == 401
        browser = await http.post(f"{url}/{action}", data={"outcome": "MET"})
        assert browser.status_code == 303
        assert browser.headers["location"] == f"/login?next={url}/{action}"

    # The feeds: the back office's only. The codec: supervisors' only.
    export = {"file": ("export.csv", b"loan_no\n", "text/csv")}
    for user in ("mine", "sup"):
        r = await http.post("/feeds", data={"kind": "loans"}, files=export, headers=auth[user])
        assert r.status_code == 404, (user, r.status_code)
    assert (await http.post("/feeds", data={"kind": "loans"}, files=export)).status_code == 303
    for path in ("/codec/encode", "/codec/decode"):
        for user in ("mine", "theirs", "office"):
            r = await http.post(path, json={"payloads": []}, headers=auth[user])
            assert r.status_code == 404, (path, user, r.status_code)
        assert (await http.post(path, json={"payloads": []}, headers=JSON)).status_code == 401
        ok = await http.post(path, json={"payloads": []}, headers=auth["sup"])
        assert ok.status_code == 200, (path, ok.text)

    # Nothing reached the case.
    status = await h.status(case.handle)
    assert status.stage == "FIELD_VISIT" and status.hold is None and status.plan_number is None
    assert status.counters.visits == 0 and status.collectors == before.collectors
    with h.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Loan)) == 1  # no feed imported

    # The same routes work for those they are for: the refusals above were the roles'.
    held = await http.post(f"{url}/hold", json=body["hold"], headers=auth["sup"])
    assert held.status_code == 200 and held.json()["accepted"], held.text
    await h.at_stage(case.handle, "ON_HOLD")
    lifted = await http.post(f"{url}/lift-hold", json=body["lift-hold"], headers=auth["sup"])
    assert lifted.status_code == 200, lifted.text
    await h.at_stage(case.handle, "FIELD_VISIT")
    met = await http.post(f"{url}/visit", json=body["visit"], headers=auth["mine"])
    assert met.status_code == 200 and met.json()["accepted"], met.text
    await h.at_stage(case.handle, "NEGOTIATION")
    await case.handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "over", "qa"))
    await case.handle.result()
