"""Logs never carry a full phone or ID number, whoever wrote the line (our code, a library,
a traceback): the formatter masks them in the finished text."""

from __future__ import annotations

import logging
import re

from domain.privacy import mask_id_number, mask_phone

# Mainland mobiles, with or without +86 / 86, with spaces or dashes as people type them.
PHONE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?!\d)")
# Resident ID numbers: 17 digits and a check digit or X (and the old 15-digit form).
ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(?:\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")


def mask_text(text: str) -> str:
    text = ID_NUMBER.sub(lambda m: mask_id_number(m.group()), text)
    return PHONE.sub(lambda m: mask_phone(re.sub(r"[ -]", "", m.group())), text)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure(level: int, fmt: str) -> None:
    """logging.basicConfig, with every handler of the root logger masking."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(MaskingFormatter(fmt))
