"""Errors that retrying cannot mend: the workflow names them non-retryable."""

import logging
from typing import Any

from temporalio.exceptions import ApplicationError

from domain.policy import PolicyError
from domain.policy_wire import PolicyFromNewerRelease

log = logging.getLogger(__name__)


def not_found(message: str) -> ApplicationError:
    return ApplicationError(message, type="NotFound", non_retryable=True)


def invalid_input(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidInput", non_retryable=True)


def with_case_policy(request: Any) -> Any:
    """The input with its case's exact, whole policy in `policy`: collection-v6 runs send it
    as `rules` (domain/policy_wire.py), released runs whole. The activity enforces its rules
    with that policy, as before. A base or field this release does not know comes from a
    newer release's case worker in a rolling deploy: retried (the newer workers take it), not
    failed; a value Policy's validation refuses is bad input."""
    try:
        request.policy = request.case_policy()  # Policy() validates what it is given
    except PolicyFromNewerRelease as e:
        log.warning("activity input from a newer release, retried for its workers: %s", e)
        raise ApplicationError(str(e), type="PolicyFromNewerRelease") from e
    except (PolicyError, TypeError, ValueError) as e:
        raise invalid_input(f"policy: {e}") from e
    request.rules = None
    return request
