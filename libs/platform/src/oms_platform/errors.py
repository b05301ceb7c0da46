"""Domain errors, raised by the rules and mapped to gRPC status codes in one interceptor."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """An error the caller can act on. ``reason`` is a stable UPPER_SNAKE_CASE code."""

    reason: str = "DOMAIN_ERROR"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = metadata or {}


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    """A system outside the service (a carrier's API) cannot answer now; the same request
    later may pass. Answered ``UNAVAILABLE`` with a ``RetryInfo`` of ``retry_after``."""

    reason = "UNAVAILABLE"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: dict[str, str] | None = None,
                 retry_after: timedelta = timedelta(seconds=5)) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Aborted(DomainError):
    """Another request is doing the same thing right now (a twin of a retried purchase that
    is still at the carrier); the same request shortly after will find its result. Answered
    ``ABORTED`` with a ``RetryInfo`` of ``retry_after``."""

    reason = "ABORTED"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: dict[str, str] | None = None,
                 retry_after: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


@dataclass
class Violations:
    """Collects every field violation of a request, so the caller sees them all at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        self.items.append(FieldViolation(path, description))

    def require(self, condition: bool, path: str, description: str) -> bool:
        if not condition:
            self.add(path, description)
        return condition

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
