"""What a borrower's SMS reply means. Pure: the webhook and the tests share it."""

from __future__ import annotations

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
# A complaint anywhere in the reply (我要投诉, 投訴, 举报你们, TS): it is heard before anything
# else it says, so 我已还款但要投诉 opens a complaint.
COMPLAINT_WORDS = ("投诉", "投訴", "举报", "舉報", "申诉", "COMPLAIN")
COMPLAINT_CODES = {"TS", "TOUSU"}


def interpret(body: str) -> ReplyIntent:
    # NFKC folds full-width letters and digits (ＴＤ, １) into their ASCII forms.
    text = unicodedata.normalize("NFKC", body).strip().strip("。.!！ ").upper()
    if text in OPT_OUT:
        return ReplyIntent.OPT_OUT
    if text in COMPLAINT_CODES or any(word in text for word in COMPLAINT_WORDS):
        return ReplyIntent.COMPLAINT
    if text in ACKNOWLEDGED:
        return ReplyIntent.ACKNOWLEDGED
    if any(word in text for word in CLAIMS_PAID):
        return ReplyIntent.CLAIMS_PAID
    return ReplyIntent.OTHER
