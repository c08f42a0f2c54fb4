"""Every SMS text, in both languages: lawful, complete, and short enough."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.texts import TEMPLATES, environment, render_sms
from domain.safety import STAFF_PURPOSES
from domain.sms_text import segments

PURPOSES = sorted(p.name.removesuffix(".txt.j2") for p in (TEMPLATES / "sms" / "zh").iterdir())
DUE = (datetime.now(UTC).date() + timedelta(days=11)).isoformat()  # a text param, never compared
PARAMS = {"amount_fen": "1234567", "days_past_due": "45", "due_date": DUE}
# Words a collection text must never use: threats, courts, family, employers, exposure.
FORBIDDEN = [
    "起诉",
    "法院",
    "拘留",
    "坐牢",
    "家人",
    "亲属",
    "亲友",
    "单位",
    "曝光",
    "通讯录",
    "court",
    "police",
    "family",
    "employer",
    "jail",
]
NEEDS_AMOUNT = {
    "first_notice",
    "visit_notice",
    "agreement_ready",
    "installment_reminder",
    "missed_installment",
    "paid_in_full",
}


def test_both_languages_have_the_same_texts() -> None:
    english = sorted(p.name.removesuffix(".txt.j2") for p in (TEMPLATES / "sms" / "en").iterdir())
    assert english == PURPOSES
    assert {
        "first_notice",
        "installment_reminder",
        "missed_installment",
        "visit_notice",
        "agreement_ready",
        "paid_in_full",
        "opt_out_confirmation",
    } <= set(PURPOSES)


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_text_names_the_cooperative_amount_and_opt_out(language: str, purpose: str) -> None:
    text = render_sms(
        environment(autoescape=False),
        language,
        purpose,
        cooperative="青溪信用社",
        loan_tail="5678",
        **PARAMS,
    )
    assert "青溪信用社" in text
    if purpose in NEEDS_AMOUNT:
        assert "12,345.67" in text
    if purpose == "installment_reminder":
        assert DUE in text
    if purpose not in ("opt_out_confirmation", "reply_without_case", *STAFF_PURPOSES):
        assert ("TD" if language == "zh" else "STOP") in text  # a staff alert is no borrower's
    assert not [w for w in FORBIDDEN if w in text.lower()]
    assert 1 <= segments(text) <= 3, text  # a Chinese name makes English texts UCS-2 too


def test_templates_are_files_a_translator_can_edit() -> None:
    assert all(p.suffix == ".j2" for p in Path(TEMPLATES / "sms").rglob("*.*"))
