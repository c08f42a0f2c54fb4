"""The namespace must know every search attribute the case upserts: a case that upserts one
the server does not know fails its workflow tasks over and over. The worker checks at start
and refuses to run, naming what to register (README: "Running on a Temporal cluster")."""

from __future__ import annotations

import logging

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain import search_attributes as sa

log = logging.getLogger(__name__)

_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}


class MissingSearchAttributes(RuntimeError):
    """Search attributes the namespace lacks; the message says how to register them."""


async def missing_search_attributes(client: Client) -> list[str]:
    """`Name (Type)` of each of ours the namespace does not have; [] when the server does
    not let us look (Temporal Cloud without the operator API: checked in its settings)."""
    try:
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError as e:
        if e.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            log.warning("cannot list the namespace's search attributes (%s): not checked", e)
            return []
        raise
    names = set(known.custom_attributes) | set(known.system_attributes)
    missing = []
    for key in sa.ALL:
        if key.name not in names:
            kind = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
            missing.append(f"{key.name} ({_TYPES[kind]})")
    return missing


async def check_search_attributes(client: Client) -> None:
    missing = await missing_search_attributes(client)
    if missing:
        raise MissingSearchAttributes(
            f"namespace {client.namespace} lacks the search attributes {', '.join(missing)}: "
            "register each with `temporal operator search-attribute create --namespace "
            f"{client.namespace} --name <Name> --type <Type>` before the workers start"
        )
