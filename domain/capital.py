"""Amounts in Chinese capital numerals (大写金额), as contracts and receipts write them.

12,345.67 yuan → 人民币壹万贰仟叁佰肆拾伍元陆角柒分; whole yuan end in 整.
"""

from __future__ import annotations

DIGITS = "零壹贰叁肆伍陆柒捌玖"
SMALL_UNITS = ("", "拾", "佰", "仟")
GROUP_UNITS = ("", "万", "亿", "万亿")
# The largest amount the schema allows (CHECK constraints on every money column): just under
# ten thousand 万亿 yuan, the most four groups of four digits can write.
MAX_AMOUNT_FEN = 10**18 - 1


def _group(n: int) -> str:
    """0 < n < 10000, with 零 for the zeros inside it."""
    out, zero = "", False
    for pos in range(3, -1, -1):
        d = n // 10**pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += DIGITS[d] + SMALL_UNITS[pos]
    return out


def _yuan_words(n: int) -> str:
    groups = []
    while n:
        n, g = divmod(n, 10_000)
        groups.append(g)
    out, gap = "", False
    for index in range(len(groups) - 1, -1, -1):
        g = groups[index]
        if g == 0:
            gap = bool(out)
            continue
        if out and (gap or g < 1000):
            out += "零"  # a skipped group, or a group that starts with zeros
        out += _group(g) + GROUP_UNITS[index]
        gap = False
    return out


def capital_amount(fen: int) -> str:
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError("amount must be whole fen")
    if not 0 <= fen <= MAX_AMOUNT_FEN:
        raise ValueError(f"amount out of range: {fen} fen")
    yuan, rest = divmod(fen, 100)
    jiao, cents = divmod(rest, 10)
    words = _yuan_words(yuan)
    if yuan:
        words += "元"
    if jiao == 0 and cents == 0:
        words = (words or "零元") + "整"
    elif jiao == 0:
        words += ("零" if yuan else "") + DIGITS[cents] + "分"
    else:
        words += DIGITS[jiao] + "角" + (DIGITS[cents] + "分" if cents else "")
    return "人民币" + words
