"""The ASGI app: Twilio's webhooks, the pages and their JSON API. `python -m webapp.app`."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.client import Client

from db.engine import make_engine, session_factory
from service.codec import EncryptionCodec, Keys
from service.metrics import CasesByStage, sdk_runtime
from service.settings import Settings
from service.temporal_client import connect
from webapp.aliyun_webhooks import aliyun_router
from webapp.auth import LoginRequired, wants_json
from webapp.case_export import case_export_router
from webapp.codec_endpoint import codec_router
from webapp.evidence import evidence_router
from webapp.login import login_router
from webapp.metrics import MetricsAccess, RequestTiming, metrics_router
from webapp.pages import WebConfig, pages_router
from webapp.rendering import as_json, page
from webapp.tencent_webhooks import tencent_router
from webapp.twilio_webhooks import WebhookConfig, twilio_router

log = logging.getLogger(__name__)
DEFAULT_UI_ORIGINS = "http://localhost:8233,http://127.0.0.1:8233"


class OnlyUnder:
    """An ASGI middleware applied to the paths under `prefix` only; the rest go straight on."""

    def __init__(self, app: ASGIApp, prefix: str, middleware: type, **options: object) -> None:
        self.app, self.prefix = app, prefix.rstrip("/")
        self.wrapped: ASGIApp = middleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == self.prefix or path.startswith(self.prefix + "/"):
            await self.wrapped(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    webhook: WebhookConfig,
    web: WebConfig | None = None,
    codec: EncryptionCodec | None = None,
    metrics: MetricsAccess | None = None,
) -> FastAPI:
    web = web or WebConfig()
    app = FastAPI(title="Loan collection", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(twilio_router(sessions, temporal, webhook))
    if webhook.aliyun_token:
        app.include_router(aliyun_router(sessions, temporal, webhook.aliyun_token))
    if webhook.tencent_token:
        app.include_router(tencent_router(sessions, temporal, webhook.tencent_token))
    app.include_router(login_router(sessions, web))
    app.include_router(evidence_router(sessions, web.policy))
    app.include_router(case_export_router(sessions, temporal, web.policy))
    app.include_router(pages_router(sessions, temporal, web))
    app.include_router(codec_router(sessions, codec))
    if metrics is not None:  # METRICS_TOKEN: for Prometheus (webapp/metrics.py)
        app.include_router(metrics_router(metrics))
    # Temporal's web UI calls the codec endpoint from its own origin, with the session cookie;
    # no other route answers another origin (no CORS headers, no preflight).
    app.add_middleware(
        OnlyUnder,
        prefix="/codec",
        middleware=CORSMiddleware,
        allow_origins=list(web.ui_origins),
        allow_credentials=True,
        allow_methods=["POST"],
        allow_headers=["content-type", "x-namespace", "authorization"],
    )
    app.add_middleware(RequestTiming)  # outermost: every request's time, by route template

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        if wants_json(request):
            return as_json({"error": "sign in first"}, 401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", 303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        callback = request.url.path.startswith(("/twilio/", "/aliyun/", "/tencent/"))
        if wants_json(request) or callback:
            return as_json({"error": exc.detail}, exc.status_code)
        return page(request, "error.html.j2", exc.status_code, message=exc.detail)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in exc.errors()
        )
        if wants_json(request):
            return as_json({"error": fields}, 422)
        return page(request, "error.html.j2", 422, message=fields)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        # Logged for the operator; the user sees a plain page, never a stack trace.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "something went wrong on our side; the action was not applied, try again"
        if wants_json(request):
            return as_json({"error": message}, 500)
        return page(request, "error.html.j2", 500, message=message)

    return app


def app_from_env() -> FastAPI:
    settings = Settings.from_env()
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    aliyun_token = os.environ.get("ALIYUN_CALLBACK_TOKEN")
    tencent_token = os.environ.get("TENCENT_CALLBACK_TOKEN")
    if not (token or aliyun_token or tencent_token):
        raise RuntimeError(
            "TWILIO_AUTH_TOKEN (Twilio's webhooks), ALIYUN_CALLBACK_TOKEN or "
            "TENCENT_CALLBACK_TOKEN (their callbacks) is needed to verify SMS callbacks"
        )
    if not token:  # no Twilio: its webhooks refuse every request (no one knows this token)
        token = secrets.token_hex(32)
    client: Client | None = None
    sessions = session_factory(make_engine(settings.db_url))
    metrics, runtime = None, None
    if settings.metrics_token:  # /metrics, with the Temporal client's SDK metrics
        runtime, sdk = sdk_runtime()
        metrics = MetricsAccess(settings.metrics_token, CasesByStage(sessions), sdk)

    async def temporal() -> Client:
        nonlocal client
        client = client or await connect(settings, runtime)
        return client

    return create_app(
        sessions,
        temporal,
        WebhookConfig(
            token,
            os.environ.get("WEBHOOK_PUBLIC_BASE_URL"),
            settings.sms_language,
            aliyun_token,
            tencent_token,
        ),
        WebConfig(
            settings.task_queue,
            settings.policy(),
            os.environ.get("WEB_SECURE_COOKIES") == "1",
            tuple(os.environ.get("TEMPORAL_UI_ORIGINS", DEFAULT_UI_ORIGINS).split(",")),
        ),
        EncryptionCodec(Keys.parse(settings.codec_keys)) if settings.codec_keys else None,
        metrics,
    )


if __name__ == "__main__":
    import uvicorn

    from service.log_masking import configure
    from webapp.logs import masked_log_config

    configure(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s")
    from activities.documents import MissingFontError, check_fonts

    try:  # agreements are downloaded from here: one of empty boxes must never be signed
        check_fonts()
    except MissingFontError as missing:
        raise SystemExit(f"error: {missing}") from None
    uvicorn.run(
        app_from_env(),
        log_config=masked_log_config(),
        host=os.environ.get("WEB_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEB_PORT", "8000")),
    )
