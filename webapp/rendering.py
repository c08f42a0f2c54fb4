"""Pages from Jinja2 templates, or the same data as JSON when a tool asks for it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import pass_context
from jinja2.runtime import Context
from pydantic_core import to_jsonable_python

from activities.texts import environment
from domain.labels import label, zh
from webapp.auth import token_of

_env = environment(autoescape=True)


@pass_context
def _local(context: Context, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time on the page's clock: the `zone` each page that shows times is rendered with
    (the configured policy's, or a case's branch's)."""
    return moment.astimezone(context["zone"]).strftime(fmt) if moment else "-"


_env.filters["local"] = _local
_env.filters["fen"] = lambda fen: "-" if fen is None else _env.filters["yuan"](fen)
_env.filters["zh"] = zh  # 上门外访
_env.filters["label"] = label  # 上门外访 FIELD_VISIT


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(f"pages/{template}").render(request=request, **context)
    response = HTMLResponse(html, status_code=status_code)
    if context.get("who") is not None and (token := token_of(request)):
        # The service worker keeps pages per session under this key (templates/pages/sw.js).
        key = hashlib.sha256(b"offline:" + token.encode()).hexdigest()[:32]
        response.headers["X-Offline-Key"] = key
        response.headers["Cache-Control"] = "private, no-store"
    return response


def as_json(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(to_jsonable_python(data), status_code=status_code)
