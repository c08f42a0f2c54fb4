"""The registry of provider templates (templates/sms_registry.toml): for a templated provider
(Aliyun), each SMS purpose and language → the registered template code and its parameters.

`python -m activities.sms_templates aliyun zh` (or `tencent zh`) prints, per purpose, the
template text to register with the provider: our own text with the parameters as ${name}
(Aliyun) or {1} (Tencent).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from jinja2 import Environment

from activities.sms_gateway import TemplateMessage
from activities.texts import TEMPLATES, environment, render_sms

REGISTRY = TEMPLATES / "sms_registry.toml"
# What the send activity may be asked to send (the workflows' purposes); the replies in
# TwiML (opt_out_confirmation, reply_without_case) are not sent through a gateway.
SENT_PURPOSES = (
    "first_notice",
    "installment_reminder",
    "missed_installment",
    "visit_notice",
    "agreement_ready",
    "paid_in_full",
    "third_party_request",
    "complaint_outcome",
)
# Texts to staff (a safety alert to a supervisor's or branch head's mobile, the supervisors'
# daily training reminder): registered like the others, but they are no borrower's and name
# no branch phone.
STAFF_SENT_PURPOSES = ("staff_alert", "staff_training")
REGISTERED_PURPOSES = SENT_PURPOSES + STAFF_SENT_PURPOSES
TEMPLATED_PROVIDERS = ("aliyun", "tencent")  # those that send a template code, not a text
# How each provider writes a template's parameter in the text registered with it.
PLACEHOLDER = {"aliyun": "${{{}}}", "tencent": "{{{}}}"}

Registry = dict[str, Any]


def load_registry(path: str | Path | None = None) -> Registry:
    """SMS_TEMPLATE_REGISTRY, else the repository's templates/sms_registry.toml."""
    path = Path(path or os.environ.get("SMS_TEMPLATE_REGISTRY") or REGISTRY)
    with path.open("rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: {e}") from None


def check_registry(registry: Registry, providers: list[str], language: str) -> None:
    """Every purpose the worker may send registered for every templated provider it uses,
    each entry with a code and parameters; else a ValueError naming purpose and provider."""
    problems = []
    for provider in dict.fromkeys(providers):
        if provider not in TEMPLATED_PROVIDERS:
            continue
        for purpose in REGISTERED_PURPOSES:
            entry = registry.get(provider, {}).get(language, {}).get(purpose)
            where = f"[{provider}.{language}.{purpose}]"
            if entry is None:
                problems.append(f"{purpose}: no template registered for {provider} ({where})")
            elif not str(entry.get("code", "")).strip():
                problems.append(f"{purpose}: {where} has no template code")
            elif not isinstance(entry.get("params", {}), dict):
                problems.append(f"{purpose}: {where} params must be a table name = expression")
            elif provider == "tencent" and set(entry.get("params", {})) != {
                str(n) for n in range(1, len(entry.get("params", {})) + 1)
            }:
                problems.append(f"{purpose}: {where} params must be named 1, 2, 3, … (positional)")
            else:
                problems += _check_params(provider, language, purpose, entry, where)
    if problems:
        raise ValueError("SMS template registry: " + "; ".join(problems))


# Two sets of sample values, each value distinct from the others: our text with the
# parameters replaced by placeholders must read the same for both (a value our text carries
# but no parameter does would be frozen into the registered template, or missing from it).
SAMPLES: tuple[dict[str, object], ...] = (
    dict(cooperative="\x00SIGN\x00", loan_tail="8642", days_past_due="47",
         amount_fen="97531", due_date="2031-07-19", two_way=True,
         alert_no="5", detail="外访小组请求支援",  # staff_alert
         complaint_no="3", outcome="已核实并对催收员进行批评教育",  # complaint_outcome
         count="4", first="QX01-C01"),  # staff_training
    dict(cooperative="\x00SIGN\x00", loan_tail="5307", days_past_due="126",
         amount_fen="1234568", due_date="2032-03-28", two_way=True,
         alert_no="12", detail="签退超时未归", complaint_no="7", outcome="已退还多收款项",
         count="7", first="LS01-C02"),
)  # fmt: skip


def _check_params(
    provider: str, language: str, purpose: str, entry: dict[str, Any], where: str
) -> list[str]:
    """Each parameter renders (a typo such as `loan_tial` fails here, not at every send), and
    the parameters are exactly our text's variables: each one's placeholder is in the text to
    register, and no variable of the text is left out."""
    env = environment(autoescape=False)
    texts = []
    for context in SAMPLES:
        try:
            body = render_sms(env, language, purpose, **context)
        except Exception as e:  # noqa: BLE001 — named in the message
            return [f"{purpose}: our text does not render ({e})"]
        for name, expr in entry.get("params", {}).items():
            try:
                value = env.from_string("{{ " + str(expr) + " }}").render(**context)
            except Exception as e:  # noqa: BLE001 — named in the message
                return [f"{purpose}: {where} parameter {name} = {expr!r} does not render ({e})"]
            placeholder = PLACEHOLDER.get(provider, "${{{}}}").format(name)
            if not value.strip() or value not in body:
                return [f"{purpose}: {where} parameter {name} = {expr!r} is not in our text"]
            body = body.replace(value, placeholder)
        texts.append(body)
    if texts[0] != texts[1]:
        return [
            f"{purpose}: {where} params leave a value of our text out (the text to register "
            "would differ from message to message): add it as a parameter"
        ]
    return []


def template_message(
    registry: Registry,
    env: Environment,
    provider: str,
    language: str,
    purpose: str,
    context: dict[str, object],
    signature: str,
) -> TemplateMessage:
    """The registered template with its parameters rendered from the same values as our text."""
    entry = registry.get(provider, {}).get(language, {}).get(purpose)
    if entry is None:
        raise KeyError(f"{purpose}: no template registered for {provider} ({language})")
    params = {
        name: " ".join(env.from_string("{{ " + expr + " }}").render(**context).split())
        for name, expr in entry.get("params", {}).items()
    }
    return TemplateMessage(str(entry["code"]), params, signature)


def registration_texts(registry: Registry, provider: str, language: str) -> dict[str, str]:
    """Per purpose, the text to register: ours with each parameter as ${name} (the signature
    is registered apart, and the provider puts it in 【】 in front)."""
    env = environment(autoescape=False)
    texts = {}
    for purpose in REGISTERED_PURPOSES:
        entry = registry.get(provider, {}).get(language, {}).get(purpose)
        if entry is None:
            continue
        context = SAMPLES[0]
        body = render_sms(env, language, purpose, **context)
        for name, expr in entry.get("params", {}).items():
            value = env.from_string("{{ " + expr + " }}").render(**context)
            body = body.replace(value, PLACEHOLDER.get(provider, "${{{}}}").format(name))
        texts[purpose] = body.replace("【\x00SIGN\x00】", "").replace("[\x00SIGN\x00] ", "")
    return texts


if __name__ == "__main__":
    provider, language = (sys.argv[1:] + ["aliyun", "zh"])[:2]
    for purpose, text in registration_texts(load_registry(), provider, language).items():
        print(f"{purpose}\t{text}")
