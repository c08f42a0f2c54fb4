"""The collection worker: runs LoanCollectionWorkflow and its activities.

Configuration comes from the environment (see README.md): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE, TLS or API key settings, COLLECTION_DB_URL.
WORKER_ROLES (cases, render, sms; all by default) says which of the case work this process
does, one Temporal Worker per role on the role's own task queue; WORKER_CASES_PART
(workflows or activities; both by default) splits the cases role's work between processes;
WORKER_NICE lowers the CPU priority of a process without the cases role.
SIGINT/SIGTERM stop polling and let running activities finish before exiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.documents import PdfRenderer
from activities.metrics import REGISTRY
from activities.sms_gateway import RecordingGateway, RoutedGateway
from db.engine import make_engine, session_factory
from domain.names import ACTIVITIES, CASES, RENDER, SMS, WORKFLOWS
from service.log_masking import configure
from service.metrics import SdkMetrics, sdk_runtime, serve, with_process
from service.search_attribute_check import check_search_attributes
from service.settings import Settings
from service.sms_setup import worker_gateway
from service.temporal_client import connect
from service.training import warn_without_training
from service.worker_factory import build_worker

log = logging.getLogger("worker")


# Beyond the activity threads: the daily run's intake and payments, async activities on
# the event loop, and a spare (SQLAlchemy's overflow adds 10 more on a burst).
DB_HEADROOM = 4


def db_connections(settings: Settings) -> int:
    """The database pool for every thread that can hold a session at once in this process:
    each role's activity threads (cases: WORKER_ACTIVITY_THREADS, none for its workflows
    only, sms: WORKER_SMS_THREADS, render: WORKER_PDF_PROCESSES + 1), plus DB_HEADROOM."""
    roles = settings.worker_roles
    threads = {
        CASES: 0 if settings.cases_part == WORKFLOWS else settings.activity_threads,
        SMS: settings.sms_threads,
        RENDER: settings.pdf_processes + 1,
    }
    return sum(threads[role] for role in roles) + DB_HEADROOM


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, pdf: PdfRenderer | None = None
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = (
        make_engine(settings.db_url, pool_size=db_connections(settings))
        if not (settings.db_url.startswith("sqlite"))
        else make_engine(settings.db_url)
    )
    metrics = None
    try:
        if settings.metrics_address:  # the SDK's metrics and ours, for Prometheus
            # Ours bound first: the SDK's exporter then gets another free loopback port.
            sdk = SdkMetrics()
            metrics = serve(settings.metrics_address, with_process(REGISTRY, sdk))
            runtime, _ = sdk_runtime(sdk)
            log.info("metrics at http://%s/metrics", metrics.address)
            client = await connect(settings, runtime)
        else:
            client = await connect(settings)
        await _run_roles(settings, client, session_factory(engine), stop, pdf)
    finally:
        if metrics is not None:
            metrics.stop()
        engine.dispose()


async def _run_roles(
    settings: Settings,
    client: Client,
    sessions: sessionmaker[Session],
    stop: asyncio.Event,
    pdf: PdfRenderer | None,
) -> None:
    roles, part = settings.worker_roles, settings.cases_part
    case_flows = CASES in roles and part != ACTIVITIES
    case_acts = CASES in roles and part != WORKFLOWS
    if case_flows:
        await check_search_attributes(client)  # a case upserting an unknown one would stall
    if case_acts:
        warn_without_training(sessions, log)  # "no date = untrained": say how many, per branch
    # SMS_PROVIDER_CN / SMS_PROVIDER_INTL; refuses to start on a template not registered.
    # The cases role's activities need it too: a safety alert texts staff from its own.
    gateway = worker_gateway(settings.sms_language) if case_acts or SMS in roles else None
    if RENDER in roles:
        pdf = pdf or PdfRenderer(processes=settings.pdf_processes)
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        workers = build_worker(
            client,
            settings.task_queue,
            sessions,
            settings.data_dir,
            gateway=gateway,
            executor=executor,
            sms_language=settings.sms_language,
            max_cached_workflows=settings.max_cached_workflows,
            pdf=pdf,
            roles=roles,
            sms_threads=settings.sms_threads,
            workflow_tasks=settings.workflow_tasks,
            workflow_polls=settings.workflow_polls,
            sms_rate=settings.sms_rate_per_second,
            sandbox=settings.sandbox,
            cases_part=part,
        )
        log.info(
            "worker on %s namespace %s: %s (WORKER_SANDBOX=%s)",
            settings.temporal_address,
            settings.temporal_namespace,
            ", ".join(
                f"{role}{f' ({part} only)' if role == CASES and part else ''} on task queue {q}"
                for role, q in workers.task_queues.items()
            ),
            settings.sandbox,
        )
        if gateway is not None:
            routes = [gateway.cn, gateway.intl] if isinstance(gateway, RoutedGateway) else [gateway]
            if any(isinstance(g, RecordingGateway) for g in routes):
                log.warning("no TWILIO_ACCOUNT_SID: SMS are recorded in the outbox, not sent")
            log.info("SMS go out through %s", gateway.name)
        if SMS in roles and settings.sms_rate_per_second is not None:
            log.info("SMS at most %g a second (SMS_RATE_PER_SECOND)", settings.sms_rate_per_second)
        try:
            async with workers:
                await stop.wait()
                log.info("stopping: finishing running activities")
        finally:
            if pdf is not None:
                pdf.close()


def lower_priority(settings: Settings) -> int:
    """WORKER_NICE for a process without the cases role (render and/or sms only): its
    niceness raised by that much, before it starts its PDF processes (which inherit it); the
    niceness added (0 for a process with the cases role, which must not wait behind them)."""
    if settings.nice <= 0:
        return 0
    if CASES in settings.worker_roles:
        log.warning("WORKER_NICE=%d ignored: this process has the cases role", settings.nice)
        return 0
    os.nice(settings.nice)
    log.info("CPU priority lowered: niceness +%d (WORKER_NICE)", settings.nice)
    return settings.nice


def main() -> None:
    configure(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("weasyprint").setLevel(logging.WARNING)  # a line per render step
    settings = Settings.from_env()
    lower_priority(settings)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
