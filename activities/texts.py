"""Jinja2 environments for the project's templates (SMS texts, agreements)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from domain.capital import capital_amount
from domain.money import yuan

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def environment(autoescape: bool = True) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]) if autoescape else False,
        undefined=StrictUndefined,  # a missing value is an error, never an empty gap
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["yuan"] = lambda fen: yuan(int(fen))
    env.filters["capital"] = lambda fen: capital_amount(int(fen))
    return env


def render_sms(env: Environment, language: str, purpose: str, **context: object) -> str:
    """One line of text. `two_way` (default True): replies reach us, so the text says how to
    reply and opt out by SMS; False names `branch_phone` (the branch's number) instead."""
    context.setdefault("two_way", True)
    context.setdefault("branch_phone", "")
    template = env.get_template(f"sms/{language}/{purpose}.txt.j2")
    return " ".join(template.render(**context).split())  # one line, single spaces
