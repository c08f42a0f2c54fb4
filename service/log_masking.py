"""Logs never carry a full phone or ID number, whoever wrote the line (our code, a library,
a traceback): the formatter masks them in the finished text. Nor the secret in Aliyun's and
Tencent's callback URLs (/aliyun/<token>/..., /tencent/<token>/...), shown by access lines.

Nor a full loan number where a line can be known to carry one (a loan number has no shape of
its own: letters, digits and dashes): a case's idempotency key ("<loan_no>:<generation>:
<kind>:<n>", every SMS, task and visit line), its workflow id ("collection-<loan_no>", in the
SDK's own lines about activities and workflow tasks) and the case pages' paths
("/cases/<loan_no>", in access lines)."""

from __future__ import annotations

import logging
import re

from domain.privacy import ID_NUMBER, LOAN_NO, PHONE, mask_key, mask_loan_no
from domain.privacy import mask_text as mask_numbers

CALLBACK_TOKEN = re.compile(r"(/(?:aliyun|tencent)/)[^/\s?\"']+")
# collection-<loan_no> (domain.names.workflow_id), not a patch name (collection-v5).
WORKFLOW_ID = re.compile(rf"(?<![\w-])(collection-)(?!v\d\b|v\d-overdue-since\b)({LOAN_NO})")
CASE_PATH = re.compile(rf"(/cases/)({LOAN_NO})(?![\w-])")


def mask_text(text: str) -> str:
    text = CALLBACK_TOKEN.sub(r"\1***", mask_numbers(text))
    text = mask_key(text)
    text = WORKFLOW_ID.sub(lambda m: m.group(1) + mask_loan_no(m.group(2)), text)
    return CASE_PATH.sub(lambda m: m.group(1) + mask_loan_no(m.group(2)), text)


__all__ = ["ID_NUMBER", "PHONE", "MaskingFormatter", "configure", "mask_text"]


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure(level: int, fmt: str) -> None:
    """logging.basicConfig, with every handler of the root logger masking."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(MaskingFormatter(fmt))
