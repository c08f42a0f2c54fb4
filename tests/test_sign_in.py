"""Signing in under attack: cross-origin calls, forged forms, password guessing. The web app
against a real database (SQLite and PostgreSQL); no case and no Temporal server needed."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.users import Role, create_user
from tests.web_support import PASSWORD, form_login, login_csrf
from webapp.app import create_app
from webapp.pages import WebConfig
from webapp.twilio_webhooks import WebhookConfig

UI = "http://localhost:8233"  # Temporal's web UI: allowed on /codec, and only there
JSON = {"accept": "application/json"}


async def no_temporal():  # type: ignore[no-untyped-def]
    raise AssertionError("signing in needs no Temporal server")


def app(sessions: sessionmaker[Session], **config: object):  # type: ignore[no-untyped-def]
    return create_app(sessions, no_temporal, WebhookConfig("0" * 32), WebConfig(**config))  # type: ignore[arg-type]


def client(web, address: str = "10.0.0.1") -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=web, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def users(sessions: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    with sessions.begin() as session:
        create_user(session, "sup", PASSWORD, Role.SUPERVISOR, branches=["QX01"])
        create_user(session, "office", PASSWORD, Role.BACK_OFFICE)
    yield sessions


@pytest.fixture
async def http(users: sessionmaker[Session]) -> AsyncIterator[httpx.AsyncClient]:
    async with client(app(users)) as c:
        yield c


async def test_cross_origin_calls_are_allowed_on_the_codec_endpoint_only(http) -> None:
    preflight = {"origin": UI, "access-control-request-method": "POST"}
    codec = await http.options("/codec/decode", headers=preflight)
    assert codec.headers.get("access-control-allow-origin") == UI
    for path in ("/login", "/cases/L1/visit", "/feeds", "/logout"):
        r = await http.options(path, headers=preflight)
        assert "access-control-allow-origin" not in r.headers, path
    token = (await http.post("/login", json={"username": "office", "password": PASSWORD})).json()
    r = await http.get(
        "/feeds", headers={"origin": UI, "authorization": f"Bearer {token['token']}"}
    )
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers


async def test_the_login_form_carries_a_csrf_token_of_its_own(http) -> None:
    form = {"username": "sup", "password": PASSWORD}
    # A form posted from another site: no token, or a token without its cookie.
    forged = await http.post("/login", data=form)
    assert forged.status_code == 403 and "collection_session" not in forged.cookies
    token, cookie = await login_csrf(http)
    http.cookies.clear()
    assert (await http.post("/login", data={**form, "csrf": token})).status_code == 403
    http.cookies.set(*cookie)
    other = await http.post("/login", data={**form, "csrf": token[:-2] + "xx"})
    assert other.status_code == 403
    # The page's own form: its hidden field and its cookie agree.
    ok = await http.post("/login", data={**form, "csrf": token})
    assert ok.status_code == 303 and ok.cookies.get("collection_session")
    # Tools post JSON, which no page of another site can send here without CORS.
    assert (await http.post("/login", json=form)).status_code == 200


async def test_csrf_tokens_are_compared_in_constant_time(http, monkeypatch) -> None:
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token, cookie = await login_csrf(http)
    r = await http.post("/login", data={"username": "office", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303
    assert any(token in map(_text, pair) for pair in compared), "login form token"
    http.cookies.set("collection_session", r.cookies["collection_session"])
    page = await http.get("/feeds")
    form_token = page.text.split('name="csrf" value="')[1].split('"')[0]
    compared.clear()
    wrong = await http.post("/feeds", data={"csrf": "x" * len(form_token), "kind": "loans"})
    assert wrong.status_code == 403
    assert any(form_token in map(_text, pair) for pair in compared), "session token"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def counting_hashes(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """Every scrypt verification sign-in runs, by the user name's stored hash."""
    import service.users

    runs: list[str] = []
    real = service.users.verify_password

    def counted(password: str, stored: str) -> bool:
        runs.append(stored)
        return real(password, stored)

    monkeypatch.setattr(service.users, "verify_password", counted)
    return runs


async def test_five_wrong_passwords_lock_the_user_for_a_quarter_hour(users, monkeypatch) -> None:
    runs = counting_hashes(monkeypatch)
    wrong, right = {"username": "sup", "password": "guess-guess"}, {"password": PASSWORD}
    web = app(users)
    async with client(web, "10.0.0.1") as a, client(web, "10.0.0.2") as b:
        for _ in range(5):
            assert (await a.post("/login", json=wrong)).status_code == 401
        hashed = len(runs)
        for who in (a, b):  # per user, from any address; even the right password
            locked = await who.post("/login", json={**wrong, **right})
            assert locked.status_code == 429, locked.text
            assert 14 * 60 < int(locked.headers["retry-after"]) <= 15 * 60
            assert "try again" in locked.json()["error"]
        page = await form_login(a, "sup")
        assert page.status_code == 429 and "retry-after" in page.headers
        assert len(runs) == hashed, "no scrypt run for a locked user"
        # Another user from the same address is not locked out.
        assert (await a.post("/login", json={"username": "office", **right})).status_code == 200
    # A restarted web app (or another process) knows the lock: it is in the database.
    async with client(app(users), "10.0.0.3") as c:
        assert (await c.post("/login", json={**wrong, **right})).status_code == 429
    from db.models import AuditEvent, SignInFailure

    with users.begin() as session:
        locks = session.scalars(select(AuditEvent).where(AuditEvent.action == "login_lock")).all()
        assert [(e.username, e.outcome) for e in locks] == [("sup", "LOCKED")]
        assert "5 failed" in locks[0].detail
        # The quarter hour passes.
        row = session.get(SignInFailure, ("USER", "sup"))
        assert row is not None and row.locked_until is not None
        row.locked_until = datetime.now(UTC) - timedelta(seconds=1)
    async with client(web, "10.0.0.4") as d:
        assert (await d.post("/login", json={**wrong, **right})).status_code == 200
        # A success forgets the user's failures: four more are not yet a lock.
        for _ in range(4):
            assert (await d.post("/login", json=wrong)).status_code == 401
        assert (await d.post("/login", json={**wrong, **right})).status_code == 200


async def test_one_address_guessing_many_names_is_locked_out(users) -> None:
    web = app(users)
    async with client(web, "10.0.0.9") as guesser, client(web, "10.0.0.10") as colleague:
        for n in range(20):
            r = await guesser.post("/login", json={"username": f"u{n}", "password": "guess-guess"})
            assert r.status_code == 401
        r = await guesser.post("/login", json={"username": "sup", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 14 * 60
        ok = await colleague.post("/login", json={"username": "sup", "password": PASSWORD})
        assert ok.status_code == 200
    with users.begin() as session:
        from db.models import AuditEvent

        details = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "login_lock")
        ).all()
    assert len(details) == 1 and "10.0.0.9" in details[0]


async def test_a_flood_of_sign_ins_runs_scrypt_on_the_cores_only(users, monkeypatch) -> None:
    import asyncio
    import threading

    import service.users

    release, guard = threading.Event(), threading.Lock()
    running, peak = [0], [0]

    def slow(password: str, stored: str) -> bool:  # scrypt, held until the test lets go
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with guard:
            running[0] -= 1
        return False

    monkeypatch.setattr(service.users, "verify_password", slow)
    config = WebConfig()
    config.hash_slots, config.hash_waiting = 2, 4  # type: ignore[attr-defined]
    web = create_app(users, no_temporal, WebhookConfig("0" * 32), config)
    async with client(web, "10.0.0.20") as http:
        flood = [
            asyncio.create_task(
                http.post("/login", json={"username": f"x{n}", "password": "guess-guess"})
            )
            for n in range(12)
        ]
        for _ in range(200):
            if sum(t.done() for t in flood) >= 6 or peak[0] > 2:
                break
            await asyncio.sleep(0.02)
        release.set()
        answers = await asyncio.gather(*flood)
    assert peak[0] <= 2, f"{peak[0]} scrypt runs at once"
    busy = [r for r in answers if r.status_code == 503]
    assert len(busy) == 6 and all(r.headers.get("retry-after") for r in busy)
    assert sorted({r.status_code for r in answers}) == [401, 503]


async def test_signing_out_clears_the_phones_kept_pages(http) -> None:
    """Issue 15 review, item 3: the pages are kept per session (X-Offline-Key), and signing
    out tells the browser to drop them (Clear-Site-Data)."""
    answers = []
    for _ in range(2):
        token = await http.post("/login", json={"username": "office", "password": PASSWORD})
        auth = {"authorization": f"Bearer {token.json()['token']}"}
        feeds = await http.get("/feeds", headers=auth)
        assert feeds.status_code == 200 and "no-store" in feeds.headers["cache-control"]
        answers.append(feeds.headers["x-offline-key"])
        out = await http.post("/logout", headers=auth)
        assert out.headers["clear-site-data"] == '"cache", "storage"'
    assert answers[0] != answers[1]  # a session's own key
