"""Which failures are the infrastructure's (retry, without end) and which are a message's own.

A consumer or a job that meets a deadlock, a serialization failure, a lock or pool
timeout, or a lost connection has done nothing wrong: the same work succeeds a moment
later. Only a failure that comes from the work itself (a handler that cannot make sense
of an event, a constraint the event's content breaks) may end in a dead letter.

Postgres says which kind an error is by its SQLSTATE; SQLAlchemy wraps asyncpg's error
(``DBAPIError.orig``, whose cause is asyncpg's own exception), so the whole chain is read.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiokafka import errors as kafka_errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATEs that say "try again" (https://www.postgresql.org/docs/current/errcodes-appendix.html)
TRANSIENT_SQLSTATES = frozenset(
    {
        "40000",  # transaction_rollback
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout, NOWAIT)
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57P05",  # idle_session_timeout
    }
)
# whole classes: connection exceptions, insufficient resources, system errors
TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "58")

_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        # asyncpg: a connection left mid-operation when its server went away
        "InternalClientError",
    }
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and SQLAlchemy's wrapped driver errors."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend((current.__cause__, current.__context__, getattr(current, "orig", None)))


def sqlstate(exc: BaseException) -> str | None:
    """The first SQLSTATE found in the exception's chain, if any."""
    for link in chain(exc):
        code = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures that say nothing about the work: retry it, however often."""
    code = sqlstate(exc)
    if code is not None and (
        code in TRANSIENT_SQLSTATES or code.startswith(TRANSIENT_SQLSTATE_CLASSES)
    ):
        return True
    for link in chain(exc):
        if isinstance(link, OSError | ConnectionError | TimeoutError | PoolTimeout):
            return True
        if isinstance(link, InterfaceError | OperationalError):
            return True
        if isinstance(link, DBAPIError) and link.connection_invalidated:
            return True
        if type(link).__name__ in _TRANSIENT_NAMES:
            return True
    return False


# What a broker answers about one record that no retry will change: the relay parks the row.
_REFUSED_FOR_GOOD: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.PolicyViolationError,
)


def refused_for_good(exc: BaseException) -> bool:
    """The broker (or the producer, before sending) refuses this record whatever happens."""
    return isinstance(exc, _REFUSED_FOR_GOOD)


def describe(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message``, bounded (for headers, logs and tables)."""
    return f"{type(exc).__name__}: {exc}"[:limit]
