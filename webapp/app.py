"""The ASGI app: `python -m webapp.app` serves it with uvicorn."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.engine import make_engine, session_factory
from service.settings import Settings
from service.temporal_client import connect
from webapp.twilio_webhooks import WebhookConfig, twilio_router


def create_app(
    sessions: sessionmaker[Session],
    temporal: Callable[[], Awaitable[Client]],
    webhook: WebhookConfig,
) -> FastAPI:
    app = FastAPI(title="Loan collection", docs_url=None, redoc_url=None)
    app.include_router(twilio_router(sessions, temporal, webhook))
    return app


def app_from_env() -> FastAPI:
    settings = Settings.from_env()
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise RuntimeError("TWILIO_AUTH_TOKEN is needed to verify Twilio's webhooks")
    client: Client | None = None

    async def temporal() -> Client:
        nonlocal client
        client = client or await connect(settings)
        return client

    return create_app(
        session_factory(make_engine(settings.db_url)),
        temporal,
        WebhookConfig(token, os.environ.get("WEBHOOK_PUBLIC_BASE_URL"), settings.sms_language),
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app_from_env(),
        host=os.environ.get("WEB_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEB_PORT", "8000")),
    )
