"""A dead end's legal review before escalation (issue 15, item 2; collection-v4): approve,
return to negotiation with advice, recommend write-off, or no decision by the deadline (the
branch head is asked; the case is never closed by it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from domain.models import LegalDecisionRequest
from service.users import Role, UserError, create_user
from tests.harness import Harness, eventually, running_worker
from tests.test_visit_safety import _rows
from tests.test_workflow_paths import stages, to_field_visit, visit
from workflows.collection import LoanCollectionWorkflow as WF

DEBT = 1_000_000


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    fast = request.config.getoption("--workflow-env") == "local"
    async with running_worker(env, sqlite_sessions, tmp_path / "data", fast=fast) as harness:
        yield harness


def task_rows(h: Harness, loan_no: str, kind: str):  # type: ignore[no-untyped-def]
    from db.models import Task

    return _rows(h, loan_no, Task, Task.kind == kind)


async def to_legal_review(h: Harness) -> tuple[str, WorkflowHandle]:
    """A case whose first failed negotiation is a dead end."""
    spec, handle = await h.start(h.policy.with_overrides({"max_failed_negotiations": 0}))
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await h.advance(7.2)  # no plan by the negotiation's deadline
    await h.at_stage(handle, "LEGAL_REVIEW")
    tasks = await eventually(lambda: task_rows(h, spec.loan_no, "LEGAL_REVIEW"), "review task")
    assert tasks[0].assignees == "legal:QX01"
    return spec.loan_no, handle


async def decide(handle: WorkflowHandle, decision: str, advice: str = ""):  # type: ignore[no-untyped-def]
    return await handle.execute_update(
        WF.legal_decision, LegalDecisionRequest(decision, "legal-wang", "审查意见", advice, "LEGAL")
    )


async def test_approved_escalation_goes_to_legal(h: Harness) -> None:
    loan_no, handle = await to_legal_review(h)
    await decide(handle, "APPROVE_ESCALATION")
    result = await handle.result()
    assert result.outcome == "LEGAL_ESCALATION"
    assert "no plan agreed" in result.reason and "legal review approved" in result.reason
    assert stages(h, loan_no)[-3:] == ["NEGOTIATION", "LEGAL_REVIEW", "LEGAL_ESCALATION"]


async def test_returned_to_negotiation_with_advice(h: Harness) -> None:
    loan_no, handle = await to_legal_review(h)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, "RETURN_TO_NEGOTIATION")  # no advice
    assert refused.value.cause.message.startswith("advice:")
    await decide(handle, "RETURN_TO_NEGOTIATION", "受灾户：可延长分期至36个月")
    status = await h.at_stage(handle, "NEGOTIATION")
    assert status.legal_advice == "受灾户：可延长分期至36个月"
    assert status.counters.failed_negotiations == 0  # a fresh round
    await h.pay(handle, DEBT)
    assert (await handle.result()).outcome == "PAID_IN_FULL"


async def test_recommended_write_off_writes_it_off(h: Harness) -> None:
    loan_no, handle = await to_legal_review(h)
    await decide(handle, "RECOMMEND_WRITE_OFF")
    result = await handle.result()
    assert result.outcome == "WRITTEN_OFF" and "write-off recommended" in result.reason


async def test_no_decision_by_the_deadline_asks_the_branch_head_and_never_closes(
    h: Harness,
) -> None:
    loan_no, handle = await to_legal_review(h)
    await h.advance(10.5)  # the policy's 10 days
    overdue = await eventually(
        lambda: task_rows(h, loan_no, "LEGAL_REVIEW_OVERDUE"), "the branch head's task"
    )
    assert "head:QX01" in overdue[0].assignees.split(",")
    await h.advance(10.5)
    await eventually(lambda: len(task_rows(h, loan_no, "LEGAL_REVIEW_OVERDUE")) == 2, "again")
    assert (await h.status(handle)).stage == "LEGAL_REVIEW"  # still open, waiting
    await decide(handle, "APPROVE_ESCALATION")
    assert (await handle.result()).outcome == "LEGAL_ESCALATION"


async def test_a_decision_outside_a_legal_review_is_refused(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, "APPROVE_ESCALATION")
    assert refused.value.cause.message.startswith("stage:")
    await h.pay(handle, DEBT)
    await handle.result()


def test_legal_reviewers_and_branch_heads_are_users_of_their_branches(sqlite_sessions) -> None:
    with sqlite_sessions.begin() as session:
        legal = create_user(session, "legal-wang", "a-long-pass-phrase-1", Role.LEGAL, ["QX01"])
        head = create_user(
            session, "head-li", "a-long-pass-phrase-2", "BRANCH_HEAD", ["QX01"],
            mobile="138 0000 0002",
        )  # fmt: skip
        assert legal.role == "LEGAL" and head.mobile == "+8613800000002"
        with pytest.raises(UserError, match="^branches:"):
            create_user(session, "legal-x", "a-long-pass-phrase-3", Role.LEGAL)
        with pytest.raises(UserError, match="^mobile:"):
            create_user(session, "head-x", "a-long-pass-phrase-4", "BRANCH_HEAD", ["QX01"],
                        mobile="12345")  # fmt: skip


async def test_a_legal_reviewer_of_the_branch_decides_on_the_case_page(h: Harness) -> None:
    """The route, the role and the branch: only LEGAL of the case's branch decides (a
    supervisor is refused by the service, one without the role by the case itself)."""
    import httpx

    from tests.web_support import PASSWORD, add_user, app_for

    loan_no, handle = await to_legal_review(h)
    add_user(h, "legal-qx", Role.LEGAL, branches=["QX01"])
    add_user(h, "legal-far", Role.LEGAL, branches=["LS01"])
    add_user(h, "sup", Role.SUPERVISOR, branches=["QX01"])
    transport = httpx.ASGITransport(app=app_for(h))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        auth = {}
        for user in ("legal-qx", "legal-far", "sup"):
            r = await http.post("/login", json={"username": user, "password": PASSWORD})
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            auth[user] = {"accept": "application/json", "authorization": f"Bearer {token}"}
        url = f"/cases/{loan_no}"
        body = {"decision": "APPROVE_ESCALATION", "reason": "证据充分 evidence complete"}
        far = await http.post(f"{url}/legal-decision", json=body, headers=auth["legal-far"])
        assert far.status_code == 404
        sup = await http.post(f"{url}/legal-decision", json=body, headers=auth["sup"])
        assert sup.status_code == 409 and sup.json()["message"].startswith("role:")
        html = {"authorization": auth["legal-qx"]["authorization"]}
        page = await http.get(url, headers=html)
        assert page.status_code == 200 and 'id="legal-form"' in page.text
        other = await http.post(
            f"{url}/hold", json={"until": "2030-01-01T00:00:00+08:00", "reason": "x"},
            headers=auth["legal-qx"],
        )  # fmt: skip
        assert other.status_code == 404  # nothing else for a legal reviewer
        ok = await http.post(f"{url}/legal-decision", json=body, headers=auth["legal-qx"])
        assert ok.status_code == 200 and ok.json()["accepted"], ok.text
    assert (await handle.result()).outcome == "LEGAL_ESCALATION"


async def test_the_case_refuses_a_legal_decision_without_the_legal_role(h: Harness) -> None:
    loan_no, handle = await to_legal_review(h)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.legal_decision,
            LegalDecisionRequest("APPROVE_ESCALATION", "sup-qx01", "审查", "", "SUPERVISOR"),
        )
    assert refused.value.cause.message.startswith("role:")
    await decide(handle, "APPROVE_ESCALATION")
    assert (await handle.result()).outcome == "LEGAL_ESCALATION"


async def test_a_manual_close_cannot_bypass_the_legal_review(h: Harness) -> None:
    """Issue 15 review, item 12 (collection-v4): a supervisor's close to LEGAL_ESCALATION is
    refused (the legal review decides it), also during the review; write-off still works."""
    from domain.models import CloseRequest

    loan_no, handle = await to_legal_review(h)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            WF.close_case, CloseRequest("LEGAL_ESCALATION", "直接起诉", "sup-qx01")
        )
    assert refused.value.cause.message.startswith("outcome: LEGAL_ESCALATION only")
    await handle.execute_update(WF.close_case, CloseRequest("WRITTEN_OFF", "无力偿还", "sup-qx01"))
    assert (await handle.result()).outcome == "WRITTEN_OFF"
