"""The 还款协议 as a document: capital numerals, a PDF whose text is Chinese, signed scans."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError

from activities.agreements import AgreementActivities, store_signed_scan
from activities.documents import MissingFontError, PdfRenderer, check_fonts
from db.models import SignedScan
from domain.capital import MAX_AMOUNT_FEN, capital_amount
from tests.test_activities import agreement_request, new_loan


@pytest.mark.parametrize(
    ("fen", "words"),
    [
        (1, "人民币壹分"),
        (10, "人民币壹角"),
        (100, "人民币壹元整"),
        (1_000, "人民币壹拾元整"),
        (10_005, "人民币壹佰元零伍分"),
        (100_000_000, "人民币壹佰万元整"),
        (1_001_010, "人民币壹万零壹拾元壹角"),
        (1_234_567, "人民币壹万贰仟叁佰肆拾伍元陆角柒分"),
        (0, "人民币零元整"),
        (100_000_000_100, "人民币壹拾亿零壹元整"),
        (10_000_000_001, "人民币壹亿元零壹分"),
        (
            MAX_AMOUNT_FEN,
            "人民币玖仟玖佰玖拾玖万亿玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分",
        ),
    ],
)
def test_capital_numerals(fen: int, words: str) -> None:
    assert capital_amount(fen) == words


def test_capital_numerals_refuse_what_the_schema_refuses() -> None:
    with pytest.raises(ValueError, match="out of range"):
        capital_amount(MAX_AMOUNT_FEN + 1)
    with pytest.raises(ValueError):
        capital_amount(-1)
    with pytest.raises(TypeError):
        capital_amount(1.5)  # type: ignore[arg-type]


def pdf_text(path: str) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", path, "-"], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def pdf() -> PdfRenderer:
    return PdfRenderer()


def test_pdf_text_shows_the_borrower_the_total_in_capitals_and_every_date(
    sqlite_sessions, tmp_path: Path, pdf: PdfRenderer
) -> None:
    loan_no = new_loan(sqlite_sessions, name="李秀英")
    request = agreement_request(loan_no, amounts=(400_000, 300_000, 300_000))
    ref = AgreementActivities(sqlite_sessions, tmp_path, pdf).render_agreement(request)
    text = "".join(pdf_text(ref.path).split())  # the layout may break lines anywhere
    assert "还款协议" in text and "李秀英" in text
    assert "人民币壹万元整" in text  # the total
    assert "人民币肆仟元整" in text and "人民币叁仟元整" in text
    for inst in request.plan.installments:
        day = inst.due_at.astimezone(request.policy.timezone_info()).date().isoformat()
        assert day in text
    assert "**************" in text and "52240119800101" not in text  # ID number masked


def test_same_plan_rendered_twice_is_one_identical_pdf(
    sqlite_sessions, tmp_path: Path, pdf: PdfRenderer
) -> None:
    loan_no = new_loan(sqlite_sessions)
    first = AgreementActivities(sqlite_sessions, tmp_path / "a", pdf)
    html_and_pdf = [
        first.pdf.render(first.env.from_string("<p>还款协议 {{ n }}</p>").render(n=1))
        for _ in range(2)
    ]
    assert html_and_pdf[0] == html_and_pdf[1]  # deterministic bytes, hence a stable hash
    v1 = first.render_agreement(agreement_request(loan_no))
    assert first.render_agreement(agreement_request(loan_no)) == v1


def test_the_kept_font_configuration_and_the_render_process_change_no_byte(
    pdf: PdfRenderer,
) -> None:
    """A worker keeps WeasyPrint's font configuration between renders and may render in a
    separate process; an agreement's hash must not depend on either."""
    import weasyprint

    html = "<p style='font-weight:bold'>还款协议</p><p>乙方 李秀英 人民币壹万元整</p>"
    fresh = weasyprint.HTML(string=html).write_pdf()  # a new configuration, this process
    pool = PdfRenderer(processes=1)
    try:
        assert pdf.render(html) == pdf.render(html) == fresh == pool.render(html)
    finally:
        pool.close()


def test_signed_scan_is_kept_beside_its_version_once(
    sqlite_sessions, tmp_path: Path, pdf: PdfRenderer
) -> None:
    loan_no = new_loan(sqlite_sessions)
    AgreementActivities(sqlite_sessions, tmp_path, pdf).render_agreement(agreement_request(loan_no))
    photo = b"\xff\xd8\xff\xe0" + b"signed paper" * 100
    now = datetime.now(UTC)
    scan = store_signed_scan(sqlite_sessions, tmp_path, loan_no, 1, photo, "QX01-C01", now)
    again = store_signed_scan(sqlite_sessions, tmp_path, loan_no, 1, photo, "QX01-C01", now)
    assert scan.sha256 == again.sha256 and Path(scan.path).read_bytes() == photo
    assert scan.content_type == "image/jpeg" and Path(scan.path).parent == tmp_path / loan_no
    with sqlite_sessions() as session:
        assert session.scalar(select(func.count()).select_from(SignedScan)) == 1
    with pytest.raises(ApplicationError, match="JPEG, PNG or PDF"):
        store_signed_scan(sqlite_sessions, tmp_path, loan_no, 1, b"MZ\x90", "x", now)
    with pytest.raises(ApplicationError, match="no agreement version 2"):
        store_signed_scan(sqlite_sessions, tmp_path, loan_no, 2, photo, "x", now)


def test_a_missing_cjk_font_is_a_clear_start_up_error(tmp_path: Path) -> None:
    no_fonts = tmp_path / "fc-list"
    no_fonts.write_text("#!/bin/sh\nexit 0\n")
    no_fonts.chmod(0o755)
    with pytest.raises(MissingFontError, match="install Debian's fonts-noto-cjk"):
        check_fonts(str(no_fonts))
    with pytest.raises(MissingFontError):
        PdfRenderer(str(no_fonts))
    check_fonts()  # the machine itself has one (make setup installs it)
