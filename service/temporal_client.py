"""Connecting to Temporal: the local dev server by default, TLS or an API key for a cluster."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from service.codec import data_converter
from service.settings import Settings


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client; `runtime` one that exports the SDK's metrics (service/metrics.py)."""
    tls: TLSConfig | bool = False
    if settings.tls_cert or settings.tls_ca:
        tls = TLSConfig(
            client_cert=_read(settings.tls_cert),
            client_private_key=_read(settings.tls_key),
            server_root_ca_cert=_read(settings.tls_ca),
        )
    elif settings.api_key:
        tls = True  # Temporal Cloud with an API key always speaks TLS
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.api_key,
        tls=tls,
        data_converter=data_converter(settings.codec_keys),
        runtime=runtime,
    )
