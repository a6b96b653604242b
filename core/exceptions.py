"""Domain errors: what services, selectors and tasks raise when a request cannot be carried
out. They carry a code of the contract, a sentence and details, and no HTTP status: the API's
exception handler (core.api.exception_handler) is the one place that maps them to statuses
and the error shape; the admin shows their message; tasks log it."""

from __future__ import annotations


class ApplicationError(Exception):
    """An error with a code of the contract; raise subclasses or pass code/message."""

    default_code = "bad_request"
    default_message = "The request is invalid."

    def __init__(self, message: str | None = None, *, code: str | None = None, details=None):
        self.code = code or self.default_code
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    """Input that breaks a rule a service checks; `details` maps fields to messages."""

    default_code = "validation_error"
    default_message = "The request has invalid fields."


class ContentInvalid(ValidationFailed):
    """Content a template rendered beyond what a message may carry; `details` names the
    field, the message says which template and by how much."""

    default_message = "The rendered content is invalid."


class PayloadTooLarge(ApplicationError):
    default_code = "payload_too_large"
    default_message = "The request body is larger than the limit."


class AuthenticationFailed(ApplicationError):
    """A call that must prove who it acts for and does not (identity verification)."""

    default_code = "authentication_failed"
    default_message = "The request is not authenticated."


class NotFound(ApplicationError):
    default_code = "not_found"
    default_message = "Not found."


class InvalidTransition(ApplicationError):
    default_code = "invalid_transition"
    default_message = "The object's state does not allow this change."


class Conflict(ApplicationError):
    default_code = "conflict"
    default_message = "The request conflicts with the current state."


class RetryLater(ApplicationError):
    """An error that passes: `retry_after` says in how many seconds to try again."""

    def __init__(self, message=None, *, retry_after: int, details=None):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class QuotaExceeded(RetryLater):
    default_code = "quota_exceeded"
    default_message = "The application's message quota is used up."


class ServiceUnavailable(RetryLater):
    default_code = "service_unavailable"
    default_message = "The database cannot be reached at the moment; retry shortly."


class IdempotencyConflict(ApplicationError):
    default_code = "idempotency_conflict"
    default_message = "This Idempotency-Key was used with a different request body."
