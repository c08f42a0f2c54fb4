"""What a borrower's SMS reply means. Pure: the webhook and the tests share it."""

from __future__ import annotations

import re
import unicodedata

from domain.stages import ReplyIntent

# 退订/TD are the Chinese conventions; the rest are Twilio's own opt-out keywords.
OPT_OUT = {
    "退订",
    "TD",
    "T",
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
}
ACKNOWLEDGED = {"1", "确认", "好", "好的", "收到", "OK"}
CLAIMS_PAID = ("已还", "已经还了", "还了", "已还款", "已经还款", "已付")
PAID_EN = re.compile(r"(?<!NOT )(?<!N'T )(?<!NEVER )\bPAID\b")  # "paid today", not "not paid"
# A complaint anywhere in the reply (我要投诉, 投訴, 举报你们, TS): it is heard before anything
# else it says, so 我已还款但要投诉 opens a complaint (and the payment is checked besides).
# Not a complaint: the word negated just before it (没有投诉, 我不投诉了, 不用申诉, "no
# complaints"), or a question for the number to complain to (举报电话是多少: read and answered).
COMPLAINT_WORDS = ("投诉", "投訴", "举报", "舉報", "申诉", "COMPLAIN")
COMPLAINT_CODES = {"TS", "TOUSU"}
NEGATIONS = ("不", "没", "沒", "无", "無", "别", "別", "未", "不用", "不必", "不要", "不想",
             "不会", "不再", "没有", "沒有", "不想再", "不会再", "不用再")  # fmt: skip
NEGATIONS_EN = re.compile(r"(\bNO|\bNOT|N'T|\bNEVER|\bNOT TO)\s*$")
ASKS_NUMBER = ("电话", "電話", "热线", "熱線", "号码", "號碼")


def _normal(body: str) -> str:
    # NFKC folds full-width letters and digits (ＴＤ, １) into their ASCII forms.
    text = unicodedata.normalize("NFKC", body).strip().strip("。.!！ ").upper()
    return text.replace("’", "'")


def complains(text: str) -> bool:
    """A complaint word not negated and not a question for the complaints number."""
    if text in COMPLAINT_CODES:
        return True
    for word in COMPLAINT_WORDS:
        start = 0
        while (i := text.find(word, start)) >= 0:
            start = i + 1
            before = text[max(0, i - 3) : i]
            if any(before.endswith(n) for n in NEGATIONS) or NEGATIONS_EN.search(text[:i]):
                continue
            if text[i + len(word) :].startswith(ASKS_NUMBER):
                continue
            return True
    return False


def claims_payment(body: str) -> bool:
    """Whether the reply says the borrower paid (also when it complains besides)."""
    text = _normal(body)
    return any(word in text for word in CLAIMS_PAID) or bool(PAID_EN.search(text))


def interpret(body: str) -> ReplyIntent:
    text = _normal(body)
    if text in OPT_OUT:
        return ReplyIntent.OPT_OUT
    if complains(text):
        return ReplyIntent.COMPLAINT
    if text in ACKNOWLEDGED:
        return ReplyIntent.ACKNOWLEDGED
    if claims_payment(body):
        return ReplyIntent.CLAIMS_PAID
    return ReplyIntent.OTHER
