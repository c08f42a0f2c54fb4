"""GET /dashboard/cases.xlsx: the dashboard's case list with the same filters, for supervisors
and branch heads (their branches), audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from domain.policy import Policy
from service import audit
from service.case_export import cases_workbook
from service.portfolio import FilterError, filters_from_query, find_cases
from service.users import Role
from webapp.auth import require

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ROWS = 10_000


def case_export_router(
    sessions: sessionmaker[Session], temporal: Callable[[], Awaitable[Client]], policy: Policy
) -> APIRouter:
    router = APIRouter()

    @router.get("/dashboard/cases.xlsx")
    async def cases_xlsx(request: Request) -> Response:
        who = require(request, sessions, Role.SUPERVISOR, Role.BRANCH_HEAD)
        try:
            filters = filters_from_query(request.query_params)
        except FilterError as e:
            raise HTTPException(400, str(e)) from None
        now = datetime.now(UTC)
        client = await temporal()
        rows = await find_cases(client, filters, now, who.branches, policy, MAX_ROWS + 1, sessions)
        truncated = len(rows) > MAX_ROWS
        data = await run_in_threadpool(cases_workbook, rows[:MAX_ROWS], policy, truncated)
        audit.record(
            sessions, who.username, who.role, "export_cases", "DONE",
            f"{min(len(rows), MAX_ROWS)} cases{' (truncated)' if truncated else ''}: {filters}",
        )  # fmt: skip
        name = f"催收案件-{now.astimezone(policy.timezone_info()):%Y%m%d-%H%M}.xlsx"
        return Response(
            data,
            media_type=XLSX,
            headers={"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )

    return router
