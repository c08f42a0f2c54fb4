"""Signing in under attack: cross-origin calls, forged forms, password guessing. The web app
against a real database (SQLite and PostgreSQL); no case and no Temporal server needed."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.users import Role, create_user
from tests.web_support import PASSWORD, login_csrf
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
