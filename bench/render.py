"""Section 6, render: ms per agreement PDF as the worker renders it (font configuration
kept) against WeasyPrint's default (a new font configuration each render), in this process,
on the HTML the agreement activity renders from its own template.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.harness import add_loans, database


def bench_render(renders: int = 10) -> dict[str, float]:
    """CPU ms per agreement PDF: as the worker renders (font configuration kept) and as
    WeasyPrint does by default (a new one each time); the same HTML, the same bytes. The two
    alternate render by render and are timed by this process's CPU time, so that other work on
    the machine moves neither against the other."""
    import weasyprint

    from activities.documents import _render_in_process, check_fonts

    check_fonts()
    html = sample_agreement_html()
    kept = _render_in_process(html)  # the first render in a process loads the fonts
    assert weasyprint.HTML(string=html).write_pdf() == kept
    ours = default = 0.0
    for _ in range(renders):
        t0 = time.process_time()
        assert _render_in_process(html) == kept
        t1 = time.process_time()
        assert weasyprint.HTML(string=html).write_pdf() == kept
        t2 = time.process_time()
        ours += t1 - t0
        default += t2 - t1
    return {
        "ours_ms": ours / renders * 1000,
        "default_ms": default / renders * 1000,
        "kb": len(kept) / 1024,
    }


def sample_agreement_html() -> str:
    """The HTML of a 6-installment agreement, from the activity's own template."""
    from sqlalchemy import select

    from activities.agreements import AgreementActivities
    from activities.documents import PdfRenderer
    from db.models import Loan
    from domain.models import AgreementRequest, Installment, Plan
    from domain.policy import Policy

    with database("sqlite") as (_url, sessions, tmp):
        add_loans(sessions, tmp / "one.csv", 1)
        now = datetime.now(UTC)
        installments = [
            Installment(k, now + timedelta(days=30 * k), 100_000 + k) for k in range(1, 7)
        ]
        plan = Plan(1, installments, "QX01-C01", now, 0)
        activities = AgreementActivities(sessions, tmp, PdfRenderer())
        with sessions() as session:
            loan = session.scalars(select(Loan)).one()
            request = AgreementRequest(loan.loan_no, plan, ["QX01-C01"], 700_021, 0, Policy())
            return activities.render_html(request, loan, None, 1)
