"""The collection worker: runs LoanCollectionWorkflow and its activities.

Configuration comes from the environment (see README.md): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE, TLS or API key settings, COLLECTION_DB_URL.
SIGINT/SIGTERM stop polling and let running activities finish before exiting.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from activities.documents import PdfRenderer
from activities.sms_gateway import RecordingGateway, RoutedGateway
from db.engine import make_engine, session_factory
from service.log_masking import configure
from service.search_attribute_check import check_search_attributes
from service.settings import Settings
from service.sms_setup import worker_gateway
from service.temporal_client import connect
from service.training import warn_without_training
from service.worker_factory import build_worker

log = logging.getLogger("worker")


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, pdf: PdfRenderer | None = None
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine = (
        make_engine(settings.db_url, pool_size=settings.activity_threads)
        if not (settings.db_url.startswith("sqlite"))
        else make_engine(settings.db_url)
    )
    client = await connect(settings)
    await check_search_attributes(client)  # a case upserting an unknown one would stall
    # SMS_PROVIDER_CN / SMS_PROVIDER_INTL; refuses to start on a template not registered
    gateway = worker_gateway(settings.sms_language)
    pdf = pdf or PdfRenderer(processes=settings.pdf_processes)
    sessions = session_factory(engine)
    warn_without_training(sessions, log)  # "no date = untrained": say how many, per branch
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(
            client,
            settings.task_queue,
            sessions,
            settings.data_dir,
            gateway=gateway,
            executor=executor,
            sms_language=settings.sms_language,
            max_cached_workflows=settings.max_cached_workflows,
            pdf=pdf,
        )
        log.info(
            "worker on %s namespace %s task queue %s",
            settings.temporal_address,
            settings.temporal_namespace,
            settings.task_queue,
        )
        routes = [gateway.cn, gateway.intl] if isinstance(gateway, RoutedGateway) else [gateway]
        if any(isinstance(g, RecordingGateway) for g in routes):
            log.warning("no TWILIO_ACCOUNT_SID: SMS are recorded in the outbox, not sent")
        log.info("SMS go out through %s", gateway.name)
        async with worker:
            await stop.wait()
            log.info("stopping: finishing running activities")
    pdf.close()
    engine.dispose()


def main() -> None:
    configure(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("weasyprint").setLevel(logging.WARNING)  # a line per render step
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()
