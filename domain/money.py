"""Money is integer fen (分). Formatting and exact splitting live here."""

from __future__ import annotations


def yuan(fen: int) -> str:
    """12345 -> '123.45' (two decimals, thousands separated)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{part:02d}"


def split_evenly(total_fen: int, parts: int) -> list[int]:
    """`parts` amounts summing exactly to `total_fen`; the remainder fen go on the last one."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    if total_fen < 0:
        raise ValueError("total must not be negative")
    base = total_fen // parts
    amounts = [base] * parts
    amounts[-1] += total_fen - base * parts
    return amounts
