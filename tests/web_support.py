"""The web app in tests: real cases on the dev server, users of each role, a real HTTP port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import WorkflowHandle

from service.users import Role, create_user
from tests.harness import OPEN_POLICY, Harness
from webapp.app import create_app
from webapp.pages import WebConfig
from webapp.twilio_webhooks import WebhookConfig

PASSWORD = "correct horse battery"
# Quiet hours off; the first SMS gets one second to be answered, then a visit is due (7 days).
WAITS_FOR_VISIT = OPEN_POLICY.with_overrides({"contact_wait_seconds": 1})


def app_for(h: Harness) -> FastAPI:
    async def temporal():  # type: ignore[no-untyped-def]
        return h.client

    return create_app(
        h.sessions, temporal, WebhookConfig("0" * 32), WebConfig(h.task_queue, h.policy)
    )


def add_user(h: Harness, username: str, role: Role, **kw: object) -> str:
    with h.sessions.begin() as session:
        create_user(session, username, PASSWORD, role, **kw)  # type: ignore[arg-type]
    return username


@dataclass
class WaitingCase:
    loan_no: str
    handle: WorkflowHandle
    collector: str  # the collector it was assigned to (the first of its team)
    team: list[str] = field(default_factory=list)  # every collector: a visit names them all


async def case_waiting_for_visit(h: Harness, **overrides: object) -> WaitingCase:
    spec, handle = await h.start(WAITS_FOR_VISIT, **overrides)
    status = await h.at_stage(handle, "FIELD_VISIT", timeout=30)
    return WaitingCase(spec.loan_no, handle, status.collectors[0], list(status.collectors))


def free_port() -> int:
    """A port free a moment ago, for a server that cannot be handed a socket nor told port 0
    (the Temporal dev server): it may be taken before the server binds it, so a caller must
    try again on failure (tests/test_outages.py). Anything else gets a socket it keeps."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real port in this event loop (where the worker and client live too).

    The port is bound here (port 0) and the socket handed to uvicorn: no other process can
    take it between choosing and serving."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def login_csrf(http: httpx.AsyncClient) -> tuple[str, tuple[str, str]]:
    """The sign-in form's CSRF token and its cookie (name, value), as a browser gets them."""
    page = await http.get("/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    [(name, value)] = [(k, v) for k, v in page.cookies.items() if "login_csrf" in k]
    return token, (name, value)


async def form_login(
    http: httpx.AsyncClient, username: str, password: str = PASSWORD, next: str = ""
) -> httpx.Response:
    """Signing in through the form, as a browser does: the page first, for its CSRF token."""
    token, (name, value) = await login_csrf(http)
    http.cookies.set(name, value)
    data = {"username": username, "password": password, "next": next, "csrf": token}
    return await http.post("/login", data=data)
