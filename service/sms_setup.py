"""The SMS gateway the configuration asks for: one provider for mainland numbers (+86,
`SMS_PROVIDER_CN`) and one for the rest (`SMS_PROVIDER_INTL`), both `twilio` by default."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from activities.sms_gateway import RecordingGateway, RoutedGateway, SmsGateway
from activities.sms_templates import check_registry, load_registry
from activities.twilio_gateway import TwilioGateway, TwilioSettings

log = logging.getLogger(__name__)
PROVIDERS = ("twilio", "aliyun", "tencent")


def provider_names(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(mainland, international) provider names, checked: a typo stops the worker."""
    env = os.environ if env is None else env
    names = []
    for var in ("SMS_PROVIDER_CN", "SMS_PROVIDER_INTL"):
        name = (env.get(var) or "twilio").strip().lower()
        if name not in PROVIDERS:
            raise ValueError(f"{var}={name!r}: not a provider we send through {PROVIDERS}")
        names.append(name)
    return names[0], names[1]


def gateway_from_env(env: Mapping[str, str] | None = None) -> SmsGateway:
    """Twilio where chosen and configured (TWILIO_ACCOUNT_SID), else the recording gateway
    as before; Aliyun or Tencent must be configured when chosen."""
    env = os.environ if env is None else env
    cn_name, intl_name = provider_names(env)
    built: dict[str, SmsGateway] = {}

    def build(name: str) -> SmsGateway:
        if name not in built:
            if name == "twilio":
                twilio = TwilioSettings.from_env()
                built[name] = TwilioGateway(twilio) if twilio else RecordingGateway()
            elif name == "aliyun":
                from activities.aliyun_gateway import AliyunGateway, AliyunSettings

                built[name] = AliyunGateway(AliyunSettings.from_env(env))
            else:
                from activities.tencent_gateway import TencentGateway, TencentSettings

                built[name] = TencentGateway(TencentSettings.from_env(env))
        return built[name]

    cn, intl = build(cn_name), build(intl_name)
    return cn if cn is intl else RoutedGateway(cn, intl)


def worker_gateway(language: str, env: Mapping[str, str] | None = None) -> SmsGateway:
    """The gateway, once every purpose the worker may send has a registered template for
    each templated provider chosen; else a ValueError naming purpose and provider."""
    providers = list(provider_names(env))
    check_registry(load_registry(), providers, language)
    variables = os.environ if env is None else env
    for provider in {"aliyun", "tencent"} & set(providers):
        # Their texts tell the borrower to reply (回复TD退订): the replies must reach us.
        name = f"{provider.upper()}_CALLBACK_TOKEN"
        if len(variables.get(name, "")) < 16:
            raise ValueError(
                f"{name}: {provider}'s texts ask borrowers to reply (退订 by 回复TD): set the "
                "callback token (16+ characters) here and in the web app, and configure the "
                f"provider's reply callback to /{provider}/<token>/..., before sending"
            )
    return gateway_from_env(env)
