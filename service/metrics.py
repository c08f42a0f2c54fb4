"""Prometheus metrics for operators: the Temporal SDK's own beside ours, in one scrape.

The SDK's metrics (workflow and activity task latencies, polls, cache, requests to the server)
come from a Temporal Runtime whose Prometheus exporter listens on a loopback port of its own;
each scrape of ours reads it and passes its families on, so a process has one metrics address.
Ours are prometheus_client metrics in a registry per process kind (activities/metrics.py for
the worker, webapp/metrics.py for the web app), with the process's CPU and memory.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from service.portfolio import stage_branch_counts

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class Joined:
    """Several registries and collectors served as one (each name appears in one only)."""

    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


class SdkMetrics:
    """The SDK Runtime's Prometheus exporter, read on each scrape (nothing until
    sdk_runtime has given it one)."""

    def __init__(self, address: str | None = None) -> None:
        self.url = f"http://{address}/metrics" if address else None

    def collect(self) -> Iterator[Metric]:
        if self.url is None:
            return
        try:
            with urllib.request.urlopen(self.url, timeout=2) as answer:
                text = answer.read().decode("utf-8")
        except OSError as e:  # not listening yet, or gone: the rest of the scrape stands
            log.warning("Temporal SDK metrics unavailable: %s", e)
            return
        yield from text_string_to_metric_families(text)


class CasesByStage:
    """collection_cases{stage, branch}: the database's case projection, counted at each
    scrape (one GROUP BY on indexed columns; closed stages included)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "collection_cases",
            "Cases by stage and branch (the case projection in the database, at the scrape)",
            labels=["stage", "branch"],
        )
        for (stage, branch), n in sorted(stage_branch_counts(self.sessions, None).items()):
            gauge.add_metric([stage, branch], n)
        yield gauge


def loopback_address() -> str:
    """A free port on 127.0.0.1 for the SDK's exporter (only this process reads it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def sdk_runtime(into: SdkMetrics | None = None) -> tuple[Runtime, SdkMetrics]:
    """A Temporal Runtime exporting the SDK's metrics, for Client.connect(runtime=...), and
    its reader (`into`, if given: one already served; see serve).

    Counters end in _total and durations are in seconds, as Prometheus names them."""
    address = loopback_address()
    metrics = PrometheusConfig(
        bind_address=address, counters_total_suffix=True, durations_as_seconds=True
    )
    runtime = Runtime(telemetry=TelemetryConfig(metrics=metrics))
    sdk = into or SdkMetrics()
    sdk.url = f"http://{address}/metrics"
    return runtime, sdk


def with_process(*parts: Collector) -> Joined:
    """`parts` and this process's CPU, memory, open files and garbage collection."""
    return Joined(*parts, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


@dataclass
class Serving:
    address: str  # host:port as bound (port 0 asked: the one the system gave)
    stop: Callable[[], None]


def serve(address: str, metrics: Collector) -> Serving:
    """`metrics` at http://ADDRESS/metrics (host:port; `:9464` for every interface), in a
    thread. Bind it before sdk_runtime picks the SDK's free loopback port, which then
    cannot be this one."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), host or "0.0.0.0", registry=metrics)  # type: ignore[arg-type]
    bound_host, bound_port = server.server_address[:2]

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return Serving(f"{bound_host}:{bound_port}", stop)


def exposition(metrics: Collector) -> bytes:
    """The text a scrape reads (the web app's /metrics)."""
    return generate_latest(metrics)  # type: ignore[arg-type]
