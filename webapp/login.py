"""Signing in and out: `GET /login` (the form), `POST /login` (form or JSON), `POST /logout`.

The form carries a CSRF token of its own before there is any session: a random token in a
cookie (HttpOnly, SameSite=Lax; `__Host-` with secure cookies) and the same in the form's
hidden field, compared in constant time (double submit). Another site cannot read the cookie
to fill the field, and its cross-site post does not carry the cookie. JSON bodies need no
token: a page of another site cannot post JSON here (no CORS outside /codec).

Password guessing is throttled (service/sign_in_throttle.py): a locked user name or client
address is answered 429 with Retry-After, before any hashing. Each password check costs a
16 MiB scrypt run, so at most `hash_slots` run at once in a process and `hash_waiting` more
may wait their turn; beyond that the answer is 503 with Retry-After, at once.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service import audit
from service.sign_in_throttle import (
    USER,
    address_key,
    locked_until,
    record_failure,
    record_success,
)
from service.users import Principal, Role, sign_in, sign_out
from webapp import forms
from webapp.auth import COOKIE, same_token, token_of, wants_json
from webapp.rendering import as_json, page

if TYPE_CHECKING:
    from webapp.pages import WebConfig

LOGIN_CSRF = "collection_login_csrf"
OUT_OF_DATE = "the form is out of date: reload the page and try again"
BUSY = "too many sign-ins at this moment: try again in a few seconds"


def home_of(who: Principal) -> str:
    return {
        Role.SUPERVISOR: "/dashboard",
        Role.BRANCH_HEAD: "/dashboard",
        Role.COLLECTOR: "/my",
        Role.BACK_OFFICE: "/feeds",
    }[who.role]


def safe_next(target: str | None) -> str | None:
    # Only paths on this site: no open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return None


class Busy(Exception):
    """Every hashing slot is taken and the waiting room is full."""


class HashGate:
    """At most `slots` password hashes at once; `waiting` more may queue; the rest are refused."""

    def __init__(self, slots: int, waiting: int) -> None:
        self._slots = asyncio.Semaphore(max(1, slots))
        self._room = max(1, slots) + max(0, waiting)
        self._inside = 0  # running or waiting (one event loop: no lock needed)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._inside >= self._room:
            raise Busy()
        self._inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self._inside -= 1


def login_router(sessions: sessionmaker[Session], config: WebConfig) -> APIRouter:
    router = APIRouter()
    secure = config.secure_cookies
    csrf_cookie = ("__Host-" if secure else "") + LOGIN_CSRF
    gate = HashGate(config.hash_slots, config.hash_waiting)

    def form_page(
        request: Request, status: int, next: str, error: str, headers: dict[str, str] | None = None
    ) -> Response:
        """The sign-in form with its token: the browser's own if it has one, else a new one."""
        token = request.cookies.get(csrf_cookie) or ""
        if not 32 <= len(token) <= 64:
            token = secrets.token_urlsafe(32)
        response = page(request, "login.html.j2", status, next=next, error=error, csrf=token)
        response.set_cookie(csrf_cookie, token, httponly=True, samesite="lax", secure=secure)
        response.headers.update(headers or {})
        return response

    def refused(request: Request, status: int, nxt: str, error: str, retry: int) -> Response:
        headers = {"Retry-After": str(retry)}
        if wants_json(request):
            response = as_json({"error": error}, status)
            response.headers.update(headers)
            return response
        return form_page(request, status, nxt, error, headers)

    @router.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        return form_page(request, 200, safe_next(next) or "", "")

    @router.post("/login")
    async def login(request: Request) -> Response:
        is_json = request.headers.get("content-type", "").startswith("application/json")
        try:
            data = await forms.read_input(request)
            nxt = safe_next(str(data.get("next", ""))) or ""
            if not is_json and not same_token(data.get("csrf"), request.cookies.get(csrf_cookie)):
                return form_page(request, 403, nxt, OUT_OF_DATE)
            username = forms.text(data, "username")
            password = forms.text(data, "password")
        except forms.InputError as e:
            if wants_json(request):
                return as_json({"error": str(e)}, 400)
            return form_page(request, 400, "", str(e))
        address = address_key(request.client.host if request.client else None)
        now = datetime.now(UTC)
        until = await run_in_threadpool(locked_until, sessions, username, address, now)
        if until is not None:  # no hashing at all while locked
            minutes = math.ceil((until - now).total_seconds() / 60)
            error = f"too many failed sign-ins: try again in {minutes} minutes"
            return refused(request, 429, nxt, error, math.ceil((until - now).total_seconds()))
        try:
            async with gate.turn():
                signed = await run_in_threadpool(sign_in, sessions, username, password)
        except Busy:
            return refused(request, 503, nxt, BUSY, 2)
        audit.record(
            sessions, username, signed[1].role.value if signed else "-", "login",
            "DONE" if signed else "REFUSED",
        )  # fmt: skip
        if signed is None:
            limits = config.sign_in
            locks = await run_in_threadpool(
                record_failure, sessions, username, address, datetime.now(UTC), limits
            )
            for lock in locks:
                what = "user name" if lock.kind == USER else "address"
                audit.record(
                    sessions, username, "-", "login_lock", "LOCKED",
                    f"{what} {lock.subject}: {lock.failures} failed sign-ins within "
                    f"{limits.window}; locked until {lock.until.isoformat()}",
                )  # fmt: skip
            if wants_json(request):
                return as_json({"error": "wrong username or password"}, 401)
            return form_page(request, 401, nxt, "wrong username or password")
        await run_in_threadpool(record_success, sessions, username)
        token, who = signed
        if wants_json(request):
            return as_json({"token": token, "role": who.role, "username": who.username})
        response = RedirectResponse(nxt or home_of(who), 303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="lax", secure=secure, max_age=12 * 3600,
        )  # fmt: skip
        response.delete_cookie(csrf_cookie, secure=secure, httponly=True)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        token = token_of(request)
        if token:
            sign_out(sessions, token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        # The phone's kept pages and queued data go with the session (templates/pages/sw.js).
        response.headers["Clear-Site-Data"] = '"cache", "storage"'
        return response

    return router
