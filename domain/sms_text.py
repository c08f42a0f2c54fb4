"""SMS length in segments: what the operator bills and what the borrower's phone joins."""

from __future__ import annotations

# The provider's error code for a recipient who opted out (Twilio: they replied STOP).
OPTED_OUT_CODE = 21610

# The GSM 03.38 basic character set; anything else forces UCS-2 (all Chinese text does).
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    return all(c in _GSM7 or c in _GSM7_EXT for c in text)


def segments(text: str) -> int:
    """1 for a single-part message; multi-part messages lose room to the joining header."""
    if not text:
        return 0
    if is_gsm7(text):
        units = sum(2 if c in _GSM7_EXT else 1 for c in text)
        single, part = 160, 153
    else:
        # UCS-2 counts UTF-16 code units: a character outside the BMP takes two.
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)
