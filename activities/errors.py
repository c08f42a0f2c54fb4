"""Errors that retrying cannot mend: the workflow names them non-retryable."""

from temporalio.exceptions import ApplicationError


def not_found(message: str) -> ApplicationError:
    return ApplicationError(message, type="NotFound", non_retryable=True)


def invalid_input(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidInput", non_retryable=True)
