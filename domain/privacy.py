"""Masking of personal numbers for logs and documents."""


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
