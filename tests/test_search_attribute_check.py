"""A worker refuses to start on a namespace that lacks one of the case's search attributes
(a case upserting it would fail its workflow tasks over and over)."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from domain import search_attributes as sa
from service.search_attribute_check import (
    MissingSearchAttributes,
    check_search_attributes,
    missing_search_attributes,
)
from tests.conftest import binary


async def test_the_demo_namespace_has_them_all(dev_env) -> None:  # type: ignore[no-untyped-def]
    assert await missing_search_attributes(dev_env.client) == []
    await check_search_attributes(dev_env.client)


async def test_a_namespace_without_overdue_since_is_refused_by_name() -> None:
    older = [k for k in sa.ALL if k is not sa.OVERDUE_SINCE]  # registered before v4
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=older,
        dev_server_log_level="error",
    )
    try:
        assert await missing_search_attributes(env.client) == ["OverdueSince (Datetime)"]
        with pytest.raises(MissingSearchAttributes, match="OverdueSince.*--type <Type>"):
            await check_search_attributes(env.client)
    finally:
        await env.shutdown()
