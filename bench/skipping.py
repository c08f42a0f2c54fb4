"""Section 5, time-skipping: wall time of a 12-installment case on the time-skipping test
server (a worker's first case and a later one), and the history length per run of a
24-installment case.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bench.harness import BIN, database
from domain import search_attributes as sa
from domain.models import PlannedInstallment, PlanProposal
from domain.money import split_evenly
from service.converter import DATA_CONVERTER
from workflows.collection import LoanCollectionWorkflow as WF

if TYPE_CHECKING:
    from tests.harness import Harness


async def installment_case(
    h: Harness, installments: int, after_reminder: bool = False
) -> WorkflowHandle:
    """A case from its first notice to paid in full: a visit, a plan of `installments`
    installments twenty days apart, the signature, every installment paid on time: twelve
    days after the last (before its reminder), or with `after_reminder` two days before
    its due date (the reminder, three days before, sent first)."""
    from tests.test_workflow_paths import DEBT, sign, to_field_visit, visit

    _spec, handle = await h.start()
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    now = await h.now()
    amounts = split_evenly(DEBT, installments)
    items = [PlannedInstallment(now + h.day * 20 * (k + 1), a) for k, a in enumerate(amounts)]
    await handle.execute_update(WF.propose_plan, PlanProposal(items, "QX01-C01"))
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    for k, amount in enumerate(amounts, start=1):
        # The server skips no time while the payment's workflow task is pending, so each
        # installment is paid before its due date.
        if after_reminder:
            await h.advance((items[k - 1].due_at - await h.now()) / h.day - 2)
        else:
            await h.advance(12)
        await h.pay(handle, amount, reference=f"I-{k}")
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    return handle


async def skipping_env() -> WorkflowEnvironment:
    """A time-skipping test server from the installed binary, with our search attributes."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=DATA_CONVERTER
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: int(k.indexed_value_type) for k in sa.ALL},
        )
    )
    return env


def warm_renderer() -> None:
    """Load the PDF fonts in this process (the worker's activities run here) before timing."""
    from activities.documents import _render_in_process, check_fonts
    from bench.render import sample_agreement_html

    check_fonts()
    _render_in_process(sample_agreement_html())


async def bench_time_skipping() -> dict[str, float]:
    from tests.harness import run_histories, running_worker

    out: dict[str, float] = {}
    # The first case of a fresh worker pays for its first PDF render (fonts are loaded then,
    # ~0.3 s more); a warm worker is what every later case costs. Each case gets its own
    # server and database: a second case on one time-skipping server times out (its clock
    # jumps years ahead once the first case has ended).
    for label, installments in (("12_cold", 12), ("12", 12), ("24", 24)):
        with database("sqlite") as (_url, sessions, tmp):
            env = await skipping_env()
            try:
                async with running_worker(env, sessions, tmp / "data") as h:
                    if label != "12_cold":
                        warm_renderer()
                    t0 = time.perf_counter()
                    handle = await installment_case(h, installments)
                    wall = time.perf_counter() - t0
                    lengths = [len(x.events) for x in await run_histories(handle)]
            finally:
                await env.shutdown()
            out[f"wall_{label}"] = wall
            out[f"runs_{label}"] = len(lengths)
            out[f"first_run_{label}"] = lengths[-1]
            out[f"most_events_{label}"] = max(lengths)
    return out
