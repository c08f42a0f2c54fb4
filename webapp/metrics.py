"""The web app's metrics for operators: request latencies by route template (never the raw
path, which holds loan numbers), cases by stage and branch, the Temporal client's SDK metrics.

`/metrics` answers a scraper that presents `Authorization: Bearer <METRICS_TOKEN>` (set it in
Prometheus' scrape config); without METRICS_TOKEN there is no /metrics. A token and not a
back-office sign-in: Prometheus cannot sign in, and people read the figures in Grafana.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import CONTENT_TYPE, Collector, exposition, with_process

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "collection_web_request_seconds",
    "Web requests (pages, JSON API, webhooks) by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

# The method label's values: a client may send any token as a method, and each new label
# value is a new time series in Prometheus.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a request no route matched (a 404)


class RequestTiming:
    """ASGI middleware: each HTTP request's time into collection_web_request_seconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router put the matched route in the scope: its template ("/cases/{loan_no}");
            # none for a path no route has (never the path itself: it is the client's).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUEST_SECONDS.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )


@dataclass
class MetricsAccess:
    token: str  # METRICS_TOKEN, at least 16 characters
    cases: Collector | None = None  # service.metrics.CasesByStage
    sdk: Collector | None = None  # the Temporal client's runtime (service.metrics.sdk_runtime)


def metrics_router(access: MetricsAccess) -> APIRouter:
    if len(access.token) < 16:
        raise ValueError("METRICS_TOKEN: at least 16 characters (a random secret)")
    router = APIRouter()
    parts = [p for p in (REGISTRY, access.cases, access.sdk) if p is not None]
    metrics = with_process(*parts)
    expected = f"Bearer {access.token}".encode()

    @router.get("/metrics")
    async def scrape(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not secrets.compare_digest(given, expected):
            return Response(
                "metrics: Authorization: Bearer <METRICS_TOKEN> required\n",
                401,
                headers={"WWW-Authenticate": "Bearer"},
                media_type="text/plain",
            )
        # The case count and the SDK's exporter are read with blocking I/O.
        return Response(await run_in_threadpool(exposition, metrics), media_type=CONTENT_TYPE)

    return router
