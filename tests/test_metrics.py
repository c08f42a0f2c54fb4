"""Operators can see it run (issue 17): the worker and the web app export Prometheus metrics,
the SDK's and ours, with no personal data in them. The real worker (worker.run_worker) on the
time-skipping server, then the web app on the same database."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from activities.metrics import REGISTRY as WORKER
from domain.stages import CLOSED_STAGES
from service.converter import DATA_CONVERTER
from service.metrics import CasesByStage, sdk_runtime
from service.settings import Settings
from service.users import Role
from tests.harness import Harness
from tests.web_support import PASSWORD, add_user, app_for
from webapp.app import create_app
from webapp.metrics import METHODS, UNMATCHED, MetricsAccess, metrics_router
from webapp.metrics import REGISTRY as WEB
from webapp.twilio_webhooks import WebhookConfig
from worker import run_worker

TOKEN = "metrics-" + "x" * 24
JSON = "application/json"
ROOT = Path(__file__).parent.parent


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and wanted <= ls)


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        return answer.read().decode()


@pytest.fixture
def h(env, sqlite_sessions, tmp_path: Path, request) -> Harness:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("time-skipping server only")
    return Harness(env, env.client, f"tq-{uuid.uuid4()}", sqlite_sessions, tmp_path / "data")


def no_personal_data(text: str, *values: str) -> None:
    for v in values:
        assert v not in text, f"{v!r} is in the metrics"


async def worker_metrics_address(
    worker: asyncio.Task[None], caplog: pytest.LogCaptureFixture
) -> str:
    """Where the worker serves its metrics (it bound port 0: the system's choice, so no
    other process, nor the SDK's own exporter, can have taken it first): from its log."""
    for _ in range(100):
        for record in caplog.records:
            found = re.fullmatch(r"metrics at http://(\S+)/metrics", record.getMessage())
            if record.name == "worker" and found:
                return found.group(1)
        assert not worker.done(), worker.result()
        await asyncio.sleep(0.1)
    raise AssertionError("the worker did not say where its metrics are")


async def test_the_worker_and_the_web_app_export_metrics(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    settings = Settings(
        temporal_address=h.client.service_client.config.target_host,
        task_queue=h.task_queue,
        db_url=str(h.sessions.kw["bind"].url),
        data_dir=h.data_dir,
        pdf_processes=0,
        metrics_address="127.0.0.1:0",
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        address = await worker_metrics_address(worker, caplog)
        # The registries are the process's: earlier tests' activities are in them too.
        before = scrape(address)
        spec, handle = await h.start()
        silent, silent_handle = await h.start(phone=None)
        await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
        await h.until(silent_handle, lambda s: s.counters.sms_blocked >= 1, "no number")
        text = scrape(address)
        web_before = web_text()
        page = await web_metrics(h, spec.loan_no)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)

    def rose(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    # Ours: SMS decisions by outcome and rule, activity latencies by activity type.
    # (No provider configured: the worker records texts in the outbox, "recorded".)
    assert rose("collection_sms_total", purpose="first_notice", outcome="recorded") >= 1
    assert rose("collection_sms_total", outcome="refused", rule="no_number") >= 1
    assert rose("collection_activity_seconds_count", activity="send_sms", outcome="ok") >= 2
    assert rose("collection_activity_seconds_count", activity="load_case", outcome="ok") >= 2
    # The SDK's (a Runtime of this worker's own): its workflow tasks and activities, its
    # requests to the server.
    assert value(text, "temporal_workflow_task_execution_latency_count") >= 2
    assert value(text, "temporal_activity_execution_latency_count", activity_type="send_sms") >= 2
    assert value(text, "temporal_request_total") > 0
    assert value(text, "process_resident_memory_bytes") > 10_000_000
    no_personal_data(text, spec.loan_no, silent.loan_no, "13912345678", spec.id_number)

    # The web app's: request latencies by route template, cases by stage and branch, the
    # SDK's requests of its Temporal client (the case page's status Query).
    def web_rose(name: str, **labels: str) -> float:
        return value(page, name, **labels) - value(web_before, name, **labels)

    count = "collection_web_request_seconds_count"
    assert web_rose(count, method="GET", route="/cases/{loan_no}", status="200") == 1
    assert web_rose(count, method="POST", route="/login", status="200") == 1  # signing in
    assert web_rose(count, method="GET", route="/login", status="200") == 1  # the page
    assert value(page, "collection_cases", stage="INITIAL_CONTACT", branch="QX01") == 2
    assert value(page, "temporal_request_total", operation="QueryWorkflow") >= 1
    assert value(page, "process_cpu_seconds_total") > 0
    no_personal_data(page, spec.loan_no, silent.loan_no, "13912345678", spec.id_number)

    assert_dashboard_queries_match(text, page)


async def web_metrics(h: Harness, loan_no: str) -> str:
    """A supervisor opens a case page; then Prometheus scrapes the web app's /metrics."""
    runtime, sdk = sdk_runtime()
    target = h.client.service_client.config.target_host
    client = await Client.connect(target, runtime=runtime, data_converter=DATA_CONVERTER)

    async def temporal() -> Client:
        return client

    access = MetricsAccess(TOKEN, CasesByStage(h.sessions), sdk)
    app = create_app(h.sessions, temporal, WebhookConfig("0" * 32), metrics=access)
    add_user(h, "sup1", Role.SUPERVISOR, branches=["QX01"])
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web")
    async with web:
        signed_in = await web.post("/login", json={"username": "sup1", "password": PASSWORD})
        bearer = {"authorization": f"Bearer {signed_in.json()['token']}"}
        case = await web.get(f"/cases/{loan_no}", headers={**bearer, "accept": JSON})
        assert case.status_code == 200, case.text
        assert (await web.get("/login")).status_code == 200
        assert (await web.get("/metrics")).status_code == 401  # no token: nothing
        assert (await web.get("/metrics", headers=bearer)).status_code == 401  # a user's
        answer = await web.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_without_a_token_there_is_no_metrics_page(h: Harness) -> None:
    with pytest.raises(ValueError, match="METRICS_TOKEN: at least 16 characters"):
        metrics_router(MetricsAccess("short"))
    app = app_for(h)  # as app_from_env makes it without METRICS_TOKEN
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web")
    async with web:
        answer = await web.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404


def web_text() -> str:
    return generate_latest(WEB).decode()


async def test_web_request_labels_come_from_a_fixed_set(h: Harness) -> None:
    """A made-up HTTP method or a path no route has adds no time series of its own: each
    label value is a series Prometheus keeps, and a client chooses both."""
    count = "collection_web_request_seconds_count"
    before = web_text()
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(h)), base_url="http://web")
    async with web:
        for i in range(20):
            await web.request(f"PROBE{i}", "/cases/X0001")
            assert (await web.get(f"/no-such-page/{i}")).status_code == 404
    after = web_text()
    labels = [s.labels for f in text_string_to_metric_families(after) for s in f.samples]
    assert {ls["method"] for ls in labels if "method" in ls} <= METHODS | {"other"}
    assert not [ls for ls in labels if "no-such-page" in ls.get("route", "")]
    assert "PROBE" not in after and "no-such-page" not in after
    other = value(after, count, method="other", route="/cases/{loan_no}")
    assert other - value(before, count, method="other", route="/cases/{loan_no}") == 20
    unmatched = value(after, count, method="GET", route=UNMATCHED, status="404")
    assert unmatched - value(before, count, method="GET", route=UNMATCHED, status="404") == 20


def dashboard_queries() -> list[str]:
    """The PromQL of every panel of ops/grafana/collection.json (in rows too)."""
    dashboard = json.loads((ROOT / "ops" / "grafana" / "collection.json").read_text())

    def panels(within: list[dict]) -> list[dict]:
        return [q for p in within for q in [p, *panels(p.get("panels", []))]]

    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")  # metric{matchers}
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SCRAPER_LABELS = {"job", "instance"}  # Prometheus puts them on every series it scrapes


def labels_by_metric(text: str) -> dict[str, set[str]]:
    """Each sample name of a scrape (with _bucket, _count, ...) and the labels it has."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, set()).update(s.labels)
    return found


def assert_dashboard_queries_match(worker: str, web: str) -> None:
    """Every panel query's metric names, and the labels it filters and groups them by, are
    in a real scrape of each job it queries ($worker_job, $web_job): a query on a metric or
    a label nobody exports shows an empty panel, not an error."""
    scrapes = {"$worker_job": labels_by_metric(worker), "$web_job": labels_by_metric(web)}
    for expr in dashboard_queries():
        jobs = [job for job in scrapes if job in expr]
        selectors = SELECTOR.findall(expr)
        assert jobs and selectors, f"a query of neither job's metrics: {expr}"
        grouped = {g.strip() for gs in GROUPING.findall(expr) for g in gs.split(",")}
        for name, matchers in selectors:
            filtered = set(MATCHER.findall(re.sub(r'"[^"]*"', '""', matchers)))
            used = (filtered | grouped) - SCRAPER_LABELS - {""}
            for job in jobs:
                exported = scrapes[job].get(name)
                assert exported is not None, f"{name} is not in a {job} scrape: {expr}"
                assert used <= exported, f"{name} has no {sorted(used - exported)}: {expr}"


def test_the_dashboard_shows_the_metrics_we_export() -> None:
    """ops/grafana/collection.json: every panel queries a metric the worker or the web app
    exports, and "open cases" leaves out exactly the closed stages. (The names and labels of
    every query against real scrapes: test_the_worker_and_the_web_app_export_metrics.)"""
    exprs = dashboard_queries()
    assert len(exprs) >= 10
    ours = {m.name for registry in (WORKER, WEB) for m in registry.collect()} | {"collection_cases"}
    used = {name for e in exprs for name in re.findall(r"\b(collection_[a-z_]+)", e)}
    known = {f"{m}{end}" for m in ours for end in ("", "_total", "_bucket", "_count", "_sum")}
    assert used <= known, f"not exported: {used - known}"
    assert {"collection_sms_total", "collection_cases"} <= used
    assert any("collection_activity_seconds_bucket" in e for e in exprs)
    assert any("collection_web_request_seconds_bucket" in e for e in exprs)
    assert any("temporal_" in e for e in exprs)  # the SDK's beside ours
    [closed] = re.findall(r'stage!~"([A-Z_|]+)"', " ".join(exprs))
    assert set(closed.split("|")) == {s.value for s in CLOSED_STAGES}
    # collection_cases is a database count: every web instance reports the same, so a sum
    # over instances would count each case once per instance; the largest is the count.
    counts = [e for e in exprs if "collection_cases" in e]
    assert len(counts) >= 2
    for e in counts:
        assert re.search(r"max by \(stage, branch\) \(collection_cases\{", e), e
