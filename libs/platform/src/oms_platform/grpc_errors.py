"""Maps errors to gRPC status codes with ``google.rpc`` details, in one place.

Domain errors carry their own code. Everything else a method raises is classified here, so
that no caller ever sees ``UNKNOWN`` or a server's internals:

- contention in the database (deadlock 40P01, serialization failure 40001, a lock not
  available 55P03 under ``NOWAIT`` or ``lock_timeout``) is ``ABORTED``: the transaction was
  rolled back whole, and the same request again will most likely pass;
- a database that cannot serve (a connection lost or refused, no connection free in the pool
  in time, the server shutting down, starting or out of resources, a statement timeout) is
  ``UNAVAILABLE``;
- a value the database refuses (SQLSTATE class 22: out of range, too long, malformed) is
  ``INVALID_ARGUMENT``: input the service's own validation should have caught, and still the
  caller's to fix, not a failure of the service;
- anything else is ``INTERNAL`` with a message that says nothing of the cause; the cause is
  logged once, as one structured line with the method, the error type and its traceback.

``ABORTED`` and ``UNAVAILABLE`` carry a ``google.rpc.RetryInfo`` with the delay to wait before
retrying (the gateway turns it into ``Retry-After``), and an ``ErrorInfo`` whose reason names
the cause (``CONTENTION``, ``DATABASE_UNAVAILABLE``). SQLSTATEs are read from the driver's
error, which SQLAlchemy wraps (``DBAPIError.orig``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import psycopg
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace
from sqlalchemy import exc as sa_exc

from oms_platform import pagination
from oms_platform.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

log = structlog.get_logger(__name__)

ERROR_DOMAIN = "oms.example.com"

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (Unavailable, code_pb2.UNAVAILABLE),
    (Aborted, code_pb2.ABORTED),
]

# A lock lost to another transaction clears within milliseconds; a database that is gone
# takes a restart or a failover, seconds at least.
CONTENTION_RETRY_DELAY = timedelta(milliseconds=100)
UNAVAILABLE_RETRY_DELAY = timedelta(seconds=1)

CONTENTION = frozenset({"40001", "40P01", "55P03"})
# Classes 08 (connection), 53 (insufficient resources); shutdown, crash, starting up; timeout.
UNAVAILABLE_CLASSES = frozenset({"08", "53"})
UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57014"})
# Failures that come with no SQLSTATE: the driver lost or never got its connection, the pool
# had none free in time, an awaited dependency timed out.
_LOST = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
    ConnectionError,
)


def _pack(code: int, message: str, details: list[Message]) -> status_pb2.Status:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code, message=message, details=packed)


def to_status(error: DomainError) -> status_pb2.Status:
    code = next((c for kind, c in _CODES if isinstance(error, kind)), code_pb2.FAILED_PRECONDITION)
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN,
                                    metadata=error.metadata)
    ]
    if isinstance(error, InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, Unavailable | Aborted):
        delay = duration_pb2.Duration()
        delay.FromTimedelta(error.retry_after)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _pack(code, error.message, details)


@dataclass(frozen=True)
class Failure:
    """How a failure that is no domain error is answered."""

    code: int
    reason: str
    message: str
    retry_after: timedelta | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def status(self) -> status_pb2.Status:
        details: list[Message] = [error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)]
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromTimedelta(self.retry_after)
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return _pack(self.code, self.message, details)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, whether raised by psycopg or wrapped by SQLAlchemy."""
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    state = getattr(driver_error, "sqlstate", None)
    return state if isinstance(state, str) else None


def classify(error: Exception) -> Failure:
    state = sqlstate(error)
    if state in CONTENTION:
        return Failure(code_pb2.ABORTED, "CONTENTION",
                       "the request conflicted with a concurrent one and changed nothing; "
                       "retry it", CONTENTION_RETRY_DELAY, {"sqlstate": state})
    if state is not None and (state[:2] in UNAVAILABLE_CLASSES or state in UNAVAILABLE_STATES):
        return Failure(code_pb2.UNAVAILABLE, "DATABASE_UNAVAILABLE",
                       "the service's database is not available; retry later",
                       UNAVAILABLE_RETRY_DELAY, {"sqlstate": state})
    if state is None and isinstance(error, _LOST):
        return Failure(code_pb2.UNAVAILABLE, "DATABASE_UNAVAILABLE",
                       "the service's database is not available; retry later",
                       UNAVAILABLE_RETRY_DELAY)
    if state is not None and state.startswith("22"):
        driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else error
        diag = getattr(driver_error, "diag", None)
        what = getattr(diag, "message_primary", None) or "a value is not valid"
        return Failure(code_pb2.INVALID_ARGUMENT, "INVALID_VALUE",
                       f"a value in the request cannot be stored: {what}", None,
                       {"sqlstate": state})
    metadata = {}
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        metadata["trace_id"] = format(span.trace_id, "032x")  # to find the log line by
    return Failure(code_pb2.INTERNAL, "INTERNAL", "internal error", None, metadata)


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Answers every failure of a unary method with a status as above; a status the method
    set itself (``context.abort``) passes through. Page tokens made or read in a call are
    bound to its method (see pagination.py)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                with pagination.serving(method):
                    return await behaviour(request, context)
            except DomainError as error:
                log.info("request refused", method=method, reason=error.reason,
                         error=error.message)
                status = to_status(error)
            except grpc.aio.AbortError:
                raise  # the method set its status itself
            except Exception as error:
                failure = classify(error)
                cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
                if failure.code == code_pb2.INTERNAL:
                    log.error("request failed", method=method, error_type=type(cause).__name__,
                              exc_info=error)
                else:
                    log.warning("request failed", method=method, reason=failure.reason,
                                error_type=type(cause).__name__, sqlstate=sqlstate(error))
                status = failure.status()
            grpc_status = rpc_status.to_status(status)
            await context.abort(grpc_status.code, grpc_status.details,
                                grpc_status.trailing_metadata)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
