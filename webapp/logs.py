"""uvicorn's own log lines (errors, access lines with their query strings), masked too."""

from __future__ import annotations

import copy
import logging
from typing import Any

import uvicorn.config
from uvicorn.logging import AccessFormatter, DefaultFormatter

from service.log_masking import mask_text


class MaskingDefaultFormatter(DefaultFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class MaskingAccessFormatter(AccessFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def masked_log_config() -> dict[str, Any]:
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = "webapp.logs.MaskingDefaultFormatter"
    config["formatters"]["access"]["()"] = "webapp.logs.MaskingAccessFormatter"
    return config
