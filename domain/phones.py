"""Phone numbers in E.164, as Twilio wants them and as the outbox stores them."""

from __future__ import annotations

import re

_FULLWIDTH = str.maketrans("０１２３４５６７８９＋（）－　", "0123456789+()- ")
_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_E164 = re.compile(r"\+[1-9]\d{7,14}")


class PhoneError(ValueError):
    """The number cannot be used; the message says why."""


def normalize_phone(raw: str) -> str:
    """'139 1234 5678', '139-1234-5678', '１３９１２３４５６７８', '+86 139…' → '+8613912345678'.

    Mainland mobile numbers may come without a country code; other countries need '+'.
    """
    text = _SEPARATORS.sub("", raw.translate(_FULLWIDTH).strip())
    if not text:
        raise PhoneError("phone: empty")
    for prefix in ("+86", "0086"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    else:
        if text.startswith("86") and len(text) == 13:
            text = text[2:]
        elif text.startswith("+") or text.startswith("00"):
            foreign = "+" + text.removeprefix("+").removeprefix("00")
            if _E164.fullmatch(foreign):
                return foreign
            raise PhoneError(f"phone: {raw!r} is not a valid international number")
    if not _CN_MOBILE.fullmatch(text):
        raise PhoneError(
            f"phone: {raw!r} is not an 11-digit mainland mobile number (1xx xxxx xxxx)"
        )
    return "+86" + text
