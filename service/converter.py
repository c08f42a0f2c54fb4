"""The data converter every client, worker and replayer uses.

Pydantic v2's converter encodes the dataclasses of `domain.models` with their dates,
datetimes and enums (the default JSON converter cannot encode a `date`).
"""

from temporalio.contrib.pydantic import pydantic_data_converter

DATA_CONVERTER = pydantic_data_converter
