"""Domain failures. The API layer maps each to its HTTP status; none carries user data."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected failure of a business action."""

    title = "Request failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    title = "Not found"


class Conflict(DomainError):
    """The request clashes with the current state (duplicate, already used, ...)."""

    title = "Conflict"


class Forbidden(DomainError):
    """The caller is known but this action is not theirs to take."""

    title = "Forbidden"


class InvalidCredentials(DomainError):
    """Authentication failed; the detail never says which part was wrong."""

    title = "Unauthorized"


class TooManyAttempts(DomainError):
    """The account is cooling down after repeated failures."""

    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class RuleViolation(DomainError):
    """A well-formed value broke a business rule; reported per field like validation."""

    title = "Validation failed"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("One or more fields are invalid.")
        self.errors = errors


class PreconditionFailed(DomainError):
    """The If-Match version is stale."""

    title = "Precondition failed"
