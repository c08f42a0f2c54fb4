"""The dashboard's case list as an Excel workbook (what a supervisor takes to a meeting):
Chinese headers first, stages by their Chinese names, amounts as yuan numbers to the fen.
No personal data: the list holds what visibility holds (loan, stage, branch, collector)."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal

from domain.labels import zh
from domain.policy import Policy
from service.portfolio import CaseRow

HEADERS = (
    "贷款编号 Loan", "阶段 Stage", "网点 Branch", "催收员 Collector", "风险 Risk",
    "逾期天数 Days past due", "未还金额（元）Outstanding (yuan)", "下一步时间 Next action",
)  # fmt: skip
YUAN = "#,##0.00"


def cases_workbook(rows: list[CaseRow], policy: Policy, truncated: bool = False) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "案件 Cases"
    sheet.append(HEADERS)
    zone = policy.timezone_info()
    for r in rows:
        sheet.append(
            [
                r.loan_no,
                f"{zh(r.stage)} {r.stage}",
                r.branch,
                r.collector,
                r.risk_tier,
                r.days_past_due,
                None if r.outstanding_fen is None else Decimal(r.outstanding_fen) / 100,
                _local(r.next_action_at, zone),
            ]
        )
        sheet.cell(sheet.max_row, 7).number_format = YUAN
    if truncated:
        sheet.append(
            [f"只列出前 {len(rows)} 件 only the first {len(rows)} cases: narrow the filter"]
        )
    for column, width in zip("ABCDEFGH", (18, 22, 8, 12, 8, 12, 16, 18), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _local(moment: datetime | None, zone) -> str:  # type: ignore[no-untyped-def]
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""
