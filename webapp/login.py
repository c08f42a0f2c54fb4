"""Signing in and out: `GET /login` (the form), `POST /login` (form or JSON), `POST /logout`.

The form carries a CSRF token of its own before there is any session: a random token in a
cookie (HttpOnly, SameSite=Lax; `__Host-` with secure cookies) and the same in the form's
hidden field, compared in constant time (double submit). Another site cannot read the cookie
to fill the field, and its cross-site post does not carry the cookie. JSON bodies need no
token: a page of another site cannot post JSON here (no CORS outside /codec).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service import audit
from service.users import Principal, Role, sign_in, sign_out
from webapp import forms
from webapp.auth import COOKIE, same_token, token_of, wants_json
from webapp.rendering import as_json, page

LOGIN_CSRF = "collection_login_csrf"
OUT_OF_DATE = "the form is out of date: reload the page and try again"


def home_of(who: Principal) -> str:
    return {Role.SUPERVISOR: "/dashboard", Role.COLLECTOR: "/my", Role.BACK_OFFICE: "/feeds"}[
        who.role
    ]


def safe_next(target: str | None) -> str | None:
    # Only paths on this site: no open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return None


def login_router(sessions: sessionmaker[Session], secure_cookies: bool) -> APIRouter:
    router = APIRouter()
    csrf_cookie = ("__Host-" if secure_cookies else "") + LOGIN_CSRF

    def form_page(request: Request, status: int, next: str, error: str) -> Response:
        """The sign-in form with its token: the browser's own if it has one, else a new one."""
        token = request.cookies.get(csrf_cookie) or ""
        if not 32 <= len(token) <= 64:
            token = secrets.token_urlsafe(32)
        response = page(request, "login.html.j2", status, next=next, error=error, csrf=token)
        response.set_cookie(
            csrf_cookie, token, httponly=True, samesite="lax", secure=secure_cookies, path="/"
        )
        return response

    @router.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        return form_page(request, 200, safe_next(next) or "", "")

    @router.post("/login")
    async def login(request: Request) -> Response:
        is_json = request.headers.get("content-type", "").startswith("application/json")
        try:
            data = await forms.read_input(request)
            if not is_json and not same_token(data.get("csrf"), request.cookies.get(csrf_cookie)):
                return form_page(
                    request, 403, safe_next(str(data.get("next", ""))) or "", OUT_OF_DATE
                )
            username = forms.text(data, "username")
            password = forms.text(data, "password")
        except forms.InputError as e:
            if wants_json(request):
                return as_json({"error": str(e)}, 400)
            return form_page(request, 400, "", str(e))
        nxt = safe_next(str(data.get("next", ""))) or ""
        signed = await run_in_threadpool(sign_in, sessions, username, password)
        audit.record(
            sessions, username, signed[1].role.value if signed else "-", "login",
            "DONE" if signed else "REFUSED",
        )  # fmt: skip
        if signed is None:
            if wants_json(request):
                return as_json({"error": "wrong username or password"}, 401)
            return form_page(request, 401, nxt, "wrong username or password")
        token, who = signed
        if wants_json(request):
            return as_json({"token": token, "role": who.role, "username": who.username})
        response = RedirectResponse(nxt or home_of(who), 303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="lax", secure=secure_cookies,
            max_age=12 * 3600,
        )  # fmt: skip
        response.delete_cookie(csrf_cookie, path="/", secure=secure_cookies, httponly=True)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        token = token_of(request)
        if token:
            sign_out(sessions, token)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    return router
