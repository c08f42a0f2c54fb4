"""README: "sessions are random tokens of which only the SHA-256 is stored, 12 hours; …
cookies are HttpOnly and SameSite=Lax (`WEB_SECURE_COOKIES=1` behind HTTPS)" (issue 13,
item 19). The app as `make web` builds it (`app_from_env`), on SQLite and PostgreSQL; no
Temporal server is needed to sign in.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

import service.users
from db.models import WebSession
from service.users import Role, create_user
from tests.web_support import PASSWORD, form_login
from webapp.app import app_from_env

JSON = {"accept": "application/json"}
TWELVE_HOURS = timedelta(hours=12)


@pytest.fixture
def users(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    with sessions.begin() as session:
        create_user(session, "sup", PASSWORD, Role.SUPERVISOR, branches=["QX01"])
    return sessions


def web_app(
    users: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, secure: str | None = None
) -> FastAPI:
    """The app from the environment, as `python -m webapp.app` (make web) makes it."""
    url = users.kw["bind"].url.render_as_string(hide_password=False)
    monkeypatch.setenv("COLLECTION_DB_URL", url)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "0" * 32)
    if secure is None:
        monkeypatch.delenv("WEB_SECURE_COOKIES", raising=False)
    else:
        monkeypatch.setenv("WEB_SECURE_COOKIES", secure)
    return app_from_env()


def browser(app: FastAPI) -> httpx.AsyncClient:
    # Behind HTTPS, as a browser reaches it: a Secure cookie is sent back only over https.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


def set_cookie(response: httpx.Response, name: str) -> tuple[str, dict[str, str]]:
    """The value and the attributes (lower-case names) of one Set-Cookie header."""
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    value, *attributes = [part.strip() for part in header.split(";")]
    attrs = {}
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        attrs[key.lower()] = val
    return value.split("=", 1)[1], attrs


@pytest.mark.parametrize(
    ("setting", "secure"), [(None, False), ("0", False), ("1", True)], ids=["unset", "0", "1"]
)
async def test_the_session_cookie_is_httponly_samesite_lax_and_secure_when_configured(
    users, monkeypatch: pytest.MonkeyPatch, setting: str | None, secure: bool
) -> None:
    async with browser(web_app(users, monkeypatch, setting)) as http:
        signed = await form_login(http, "sup")
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
        token, attrs = set_cookie(signed, "collection_session")
        assert "httponly" in attrs
        assert attrs["samesite"].lower() == "lax"
        assert ("secure" in attrs) is secure
        assert int(attrs["max-age"]) == TWELVE_HOURS.total_seconds()
        assert attrs.get("path", "/") == "/"
        # The browser's cookie signs it in.
        home = await http.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/dashboard"
    # Only the token's SHA-256 is stored.
    with users() as session:
        [stored] = session.scalars(select(WebSession.token_sha256)).all()
    assert stored == hashlib.sha256(token.encode()).hexdigest() and token not in stored


class Later(datetime):
    """The clock of service.users, moved on by `ahead`."""

    ahead = timedelta(0)

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
        return datetime.now(tz) + cls.ahead


async def test_a_session_ends_12_hours_after_sign_in(
    users, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with browser(web_app(users, monkeypatch)) as http:
        token = (await http.post("/login", json={"username": "sup", "password": PASSWORD})).json()[
            "token"
        ]
        cookie = (await form_login(http, "sup")).cookies["collection_session"]
        http.cookies.clear()
        with users() as session:
            rows = session.scalars(select(WebSession)).all()
        assert [r.expires_at - r.created_at for r in rows] == [TWELVE_HOURS] * 2
        bearer = {**JSON, "authorization": f"Bearer {token}"}

        async def as_browser(path: str) -> httpx.Response:
            http.cookies.set("collection_session", cookie)
            try:
                return await http.get(path)
            finally:
                http.cookies.clear()

        monkeypatch.setattr(service.users, "datetime", Later)
        Later.ahead = TWELVE_HOURS - timedelta(minutes=1)
        assert (await http.get("/", headers=bearer)).status_code == 303
        assert (await as_browser("/")).status_code == 303
        Later.ahead = TWELVE_HOURS + timedelta(minutes=1)
        assert (await http.get("/", headers=bearer)).status_code == 401  # a tool
        page = await as_browser("/dashboard")
        assert page.status_code == 303  # a browser: back to the sign-in page
        assert page.headers["location"] == "/login?next=/dashboard"


async def test_a_session_whose_expiry_passed_is_refused(
    users, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with browser(web_app(users, monkeypatch)) as http:
        token = (await http.post("/login", json={"username": "sup", "password": PASSWORD})).json()[
            "token"
        ]
        bearer = {**JSON, "authorization": f"Bearer {token}"}
        assert (await http.get("/", headers=bearer)).status_code == 303
        with users.begin() as session:
            session.execute(
                update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert (await http.get("/", headers=bearer)).status_code == 401
