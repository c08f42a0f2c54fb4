"""Logs never carry a full phone or ID number, whoever wrote the line (our code, a library,
a traceback): the formatter masks them in the finished text. Nor the secret in Aliyun's and
Tencent's callback URLs (/aliyun/<token>/..., /tencent/<token>/...), shown by access lines."""

from __future__ import annotations

import logging
import re

from domain.privacy import ID_NUMBER, PHONE
from domain.privacy import mask_text as mask_numbers

CALLBACK_TOKEN = re.compile(r"(/(?:aliyun|tencent)/)[^/\s?\"']+")


def mask_text(text: str) -> str:
    return CALLBACK_TOKEN.sub(r"\1***", mask_numbers(text))


__all__ = ["ID_NUMBER", "PHONE", "MaskingFormatter", "configure", "mask_text"]


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure(level: int, fmt: str) -> None:
    """logging.basicConfig, with every handler of the root logger masking."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(MaskingFormatter(fmt))
