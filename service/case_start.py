"""Starting a case, or attaching to the one that runs: the workflow id is the loan's."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from domain import search_attributes as sa
from domain.models import CaseInput, CaseResult
from domain.names import WORKFLOW_TYPE, workflow_id
from domain.policy import Policy


async def start_case(
    client: Client,
    task_queue: str,
    loan_no: str,
    branch: str,
    policy: Policy,
    started_by: str = "system",
) -> WorkflowHandle[object, CaseResult]:
    """Start the loan's case; if it runs already, return that one (nothing new starts).

    A case that ended (paid, cancelled, ...) is not started again for the same loan, unless
    it failed; reopening is a deliberate back-office act, not a side effect of a feed.
    Stage and branch are set at the start, so supervisors see a new case in their lists even
    before a worker has picked it up.
    """
    return await client.start_workflow(
        WORKFLOW_TYPE,
        CaseInput(
            loan_no=loan_no,
            branch=branch,
            policy=policy,
            started_by=started_by,
            generation=uuid.uuid4().hex[:8],
        ),
        id=workflow_id(loan_no),
        task_queue=task_queue,
        result_type=CaseResult,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(sa.STAGE, "INVESTIGATION"), SearchAttributePair(sa.BRANCH, branch)]
        ),
    )
