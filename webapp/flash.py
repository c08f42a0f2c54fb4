"""The one-time message a case page shows after one of its forms ("visit 1 recorded: MET").

It travels in a short-lived cookie signed with the session's CSRF token (HMAC-SHA256), never
in the URL: a crafted link cannot put words on our page, and a message set for one session,
or for another case, is not shown. The page that shows it deletes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from fastapi import Request
from fastapi.responses import Response

from service.users import Principal

FLASH = "collection_flash"
MAX_TEXT = 300  # characters: the cookie stays well under browsers' 4 KB


def _sign(who: Principal, payload: str) -> str:
    return hmac.new(who.csrf_token.encode(), payload.encode(), hashlib.sha256).hexdigest()


def set_flash(
    response: Response, who: Principal, loan_no: str, ok: bool, text: str, secure: bool
) -> None:
    body = json.dumps({"loan": loan_no, "ok": ok, "text": text[:MAX_TEXT]}, ensure_ascii=False)
    payload = base64.urlsafe_b64encode(body.encode()).decode()
    response.set_cookie(
        FLASH, f"{payload}.{_sign(who, payload)}", max_age=120, httponly=True, samesite="lax",
        secure=secure, path="/",
    )  # fmt: skip


def take_flash(request: Request, who: Principal, loan_no: str) -> tuple[str, bool] | None:
    """(text, ok) if this session left a message for this case; `clear_flash` then."""
    raw = request.cookies.get(FLASH, "")
    payload, _, signature = raw.partition(".")
    if not payload or not who.csrf_token:
        return None
    if not hmac.compare_digest(signature.encode(), _sign(who, payload).encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("loan") != loan_no:
        return None
    return str(data.get("text", "")), data.get("ok") is True


def clear_flash(response: Response, secure: bool) -> None:
    response.delete_cookie(FLASH, path="/", secure=secure, httponly=True, samesite="lax")
