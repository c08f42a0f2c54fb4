"""Evidence a regulator can read, from the pages: a case's collection record (催收记录) as PDF
and CSV, and the dashboard's monthly compliance report (its section, and its CSV).

- /cases/{loan_no}/record.pdf, .csv   supervisors (their branches) and the case's own
                                      collectors, as the case page; 404 for anyone else.
                                      Phone numbers as that page shows them to the same user.
- /dashboard/compliance.csv?month=    supervisors: their branches, a local month (YYYY-MM,
                                      default this month)

Every export is written to the audit trail.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from domain.policy import Policy
from service import audit
from service.case_record import case_header
from service.collection_record import collection_record
from service.collection_record import to_csv as record_csv
from service.collection_record import to_pdf as record_pdf
from service.compliance import (
    BranchMonth,
    MonthError,
    compliance_report,
    current_month,
    parse_month,
)
from service.compliance import to_csv as compliance_csv
from service.users import Principal, Role
from webapp.auth import require

CSV = "text/csv; charset=utf-8"


def _attachment(name: str) -> dict[str, str]:
    return {"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def compliance_section(
    sessions: sessionmaker[Session],
    month_text: str | None,
    branches: list[str] | tuple[str, ...],
    policy: Policy,
    now: datetime,
) -> tuple[str, list[BranchMonth], str]:
    """(month shown, the reports of `branches`, an error naming the field or '')."""
    error = ""
    month: date = current_month(now, policy)
    if month_text:
        try:
            month = parse_month(month_text)
        except MonthError as e:
            error = str(e)
    reports = compliance_report(sessions, month, list(branches), policy)
    return f"{month:%Y-%m}", reports, error


def evidence_router(sessions: sessionmaker[Session], policy: Policy) -> APIRouter:
    router = APIRouter()

    def visible(who: Principal, loan_no: str) -> None:
        header = case_header(sessions, loan_no)
        if header is None or not who.may_see(*header):
            raise HTTPException(404, f"no case {loan_no} that you can see")

    async def record_of(request: Request, loan_no: str, kind: str):  # type: ignore[no-untyped-def]
        who = require(request, sessions, Role.SUPERVISOR, Role.COLLECTOR)
        await run_in_threadpool(visible, who, loan_no)
        record = await run_in_threadpool(
            collection_record, sessions, loan_no, who, policy, datetime.now(UTC)
        )
        if record is None:
            raise HTTPException(404, f"no case {loan_no} that you can see")
        masked = "numbers in full" if record.full_numbers else "numbers masked"
        await run_in_threadpool(
            audit.record, sessions, who.username, who.role, "record_export", "DONE",
            f"collection record {kind}, {masked}", loan_no,
        )  # fmt: skip
        return who, record

    @router.get("/cases/{loan_no}/record.pdf")
    async def record_pdf_download(request: Request, loan_no: str) -> Response:
        who, record = await record_of(request, loan_no, "pdf")
        pdf = await run_in_threadpool(record_pdf, record, f"{who.username}（{who.role}）")
        return Response(
            pdf, media_type="application/pdf", headers=_attachment(f"{loan_no}-催收记录.pdf")
        )

    @router.get("/cases/{loan_no}/record.csv")
    async def record_csv_download(request: Request, loan_no: str) -> Response:
        _, record = await record_of(request, loan_no, "csv")
        return Response(
            record_csv(record), media_type=CSV, headers=_attachment(f"{loan_no}-催收记录.csv")
        )

    @router.get("/dashboard/compliance.csv")
    async def compliance_download(request: Request) -> Response:
        who = require(request, sessions, Role.SUPERVISOR)
        month, reports, error = await run_in_threadpool(
            compliance_section, sessions, request.query_params.get("month"), who.branches,
            policy, datetime.now(UTC),
        )  # fmt: skip
        if error:
            raise HTTPException(400, error)
        await run_in_threadpool(
            audit.record, sessions, who.username, who.role, "compliance_export", "DONE",
            f"compliance report {month}: {', '.join(who.branches)}",
        )  # fmt: skip
        return Response(
            compliance_csv(reports), media_type=CSV, headers=_attachment(f"合规月报-{month}.csv")
        )

    return router
