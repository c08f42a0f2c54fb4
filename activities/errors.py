"""Errors that retrying cannot mend: the workflow names them non-retryable."""

from typing import Any

from temporalio.exceptions import ApplicationError

from domain.policy import PolicyError


def not_found(message: str) -> ApplicationError:
    return ApplicationError(message, type="NotFound", non_retryable=True)


def invalid_input(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidInput", non_retryable=True)


def with_case_policy(request: Any) -> Any:
    """The input with its case's exact, whole policy in `policy`: collection-v6 runs send it
    as `rules` (domain/policy_wire.py), released runs whole. The activity enforces its rules
    with that policy, as before; a policy it cannot rebuild (an unknown base) is bad input."""
    try:
        request.policy = request.case_policy()
    except PolicyError as e:
        raise invalid_input(str(e)) from e
    request.rules = None
    return request
