"""Masking of personal numbers for logs, documents and stored texts."""

import re

# Mainland mobiles, with or without +86 / 86, with spaces or dashes as people type them.
PHONE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?!\d)")
# Resident ID numbers: 17 digits and a check digit or X (and the old 15-digit form).
ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(?:\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")
# Loan numbers have no shape of their own (feeds/loans.py: letters, digits and dashes, 4 to
# 40), so they are found where a text's form says one is: a case's idempotency key,
# <loan_no>:[<generation>:]<kind>:<n> (domain.names.case_key), its loan number the group.
LOAN_NO = r"[A-Za-z0-9][A-Za-z0-9-]{3,39}"
# In a key or after "loan"/"case", only a number with a digit in it (not "INFO:root:3").
LOAN_NO_WITH_DIGIT = rf"(?=[A-Za-z0-9-]*\d){LOAN_NO}"
CASE_KEY = re.compile(
    rf"(?:(?<=\bsms:)|(?<![\w:/.*-]))({LOAN_NO_WITH_DIGIT})"
    rf"(?=(?::[A-Za-z0-9-]+)?:[A-Za-z][A-Za-z_-]*:\d)"
)
# "loan QX-0001 is not in the database", "case QX-0001": an activity's error, a log line.
NAMED_LOAN = re.compile(rf"(\b(?:[Ll]oan|[Cc]ase) )({LOAN_NO_WITH_DIGIT})(?![\w-])")


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


def mask_loan_no(loan_no: str | None) -> str:
    """A loan number for a log line: the last four characters (at most half of it) kept,
    enough to tell cases apart in one incident, not to look the loan up."""
    if not loan_no:
        return ""
    kept = min(4, len(loan_no) // 2)
    return "*" * (len(loan_no) - kept) + loan_no[len(loan_no) - kept :]


def mask_key(text: str | None) -> str:
    """A case's idempotency keys (domain.names.case_key, "<loan_no>:<generation>:<kind>:<n>")
    and loan numbers named as such ("loan <loan_no>", "case <loan_no>") in `text` with the
    loan numbers masked; the rest (which message, task or visit) kept.
    Other keys (a training reminder's) are left as they are."""
    if not text:
        return ""
    text = CASE_KEY.sub(lambda m: mask_loan_no(m.group(1)), text)
    return NAMED_LOAN.sub(lambda m: m.group(1) + mask_loan_no(m.group(2)), text)
