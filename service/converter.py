"""The data converter every client, worker and replayer uses.

Pydantic v2's converter encodes the dataclasses of `domain.models` with their dates,
datetimes and enums (the default JSON converter cannot encode a `date`).

The worker makes a new payload converter for every workflow run it caches, and Pydantic's
converter keeps its type adapters (one per type it decodes: the case's input with its
policy, the activities' results ...) in that converter: about 0.5 MB and 5 ms of CPU for the
case's input alone, again in every run. Ours keeps them once per process, for every run and
client (a type adapter only validates and builds values: it holds nothing of the runs).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import DataConverter

# Least recently used beyond that many types, as in Pydantic's converter; domain.models types
# are the same objects in every run's sandbox (passed through), so each has one entry.
TYPE_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)


class SharedAdaptersJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic's JSON converter with the process's type adapters (TYPE_ADAPTERS)."""

    def __init__(self) -> None:
        super().__init__()
        self._type_adapter = TYPE_ADAPTERS

    def __setstate__(self, state: dict[str, Any]) -> None:  # unpickled: shared again
        super().__setstate__(state)
        self._type_adapter = TYPE_ADAPTERS


class SharedAdaptersPayloadConverter(PydanticPayloadConverter):
    """Pydantic's payload converter, its JSON encoding by SharedAdaptersJSONConverter."""

    def __init__(self) -> None:
        super().__init__()
        for encoding, converter in self.converters.items():
            if isinstance(converter, PydanticJSONPlainPayloadConverter):
                self.converters[encoding] = SharedAdaptersJSONConverter()


DATA_CONVERTER = DataConverter(payload_converter_class=SharedAdaptersPayloadConverter)
