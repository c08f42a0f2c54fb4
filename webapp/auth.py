"""Signing in: a session cookie for browsers, the same token as a Bearer header for tools.

Pages need a signed-in user; without one a browser is sent to /login and a tool gets 401.
Form posts carry the session's CSRF token; Bearer requests do not need it (no cookie).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from service.users import Principal, Role, principal_for

COOKIE = "collection_session"


class LoginRequired(Exception):
    """Raised by `require`; the app turns it into a redirect (pages) or 401 (JSON)."""


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return ("application/json" in accept and "text/html" not in accept) or request.headers.get(
        "content-type", ""
    ).startswith("application/json")


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def current(request: Request, sessions: sessionmaker[Session]) -> Principal | None:
    token = token_of(request)
    return principal_for(sessions, token) if token else None


def require(request: Request, sessions: sessionmaker[Session], *roles: Role) -> Principal:
    who = current(request, sessions)
    if who is None:
        raise LoginRequired()
    if roles and who.role not in roles:
        # Not "forbidden": a page a role cannot use does not exist for it.
        raise HTTPException(404, "not found")
    return who


def same_token(given: object, expected: object) -> bool:
    """Two tokens compared in constant time; anything missing or not text never matches."""
    if not isinstance(given, str) or not isinstance(expected, str) or not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def check_csrf(request: Request, who: Principal, form_token: object) -> None:
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if not same_token(form_token, who.csrf_token):
        raise HTTPException(403, "the form is out of date: reload the page and try again")
