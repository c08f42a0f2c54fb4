"""Masking of personal numbers for logs, documents and stored texts."""

import re

# Mainland mobiles, with or without +86 / 86, with spaces or dashes as people type them.
PHONE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?!\d)")
# Resident ID numbers: 17 digits and a check digit or X (and the old 15-digit form).
ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(?:\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")


def mask_phone(phone: str | None) -> str:
    """+8613812345678 -> +86138****5678"""
    if not phone:
        return ""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****" + phone[-4:]


def mask_id_number(id_number: str | None) -> str:
    """Every character but the last four hidden."""
    if not id_number:
        return ""
    return "*" * max(0, len(id_number) - 4) + id_number[-4:]


def mask_text(text: str) -> str:
    """Every phone and ID number in a free text masked (a provider's error, a log line)."""
    text = ID_NUMBER.sub(lambda m: mask_id_number(m.group()), text)
    return PHONE.sub(lambda m: mask_phone(re.sub(r"[ -]", "", m.group())), text)
