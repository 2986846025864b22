"""The ``Idempotency-Key`` request header, as a dependency alias for write endpoints."""

from loyalty_shared.idempotency import IdempotencyKeyHeader

__all__ = ["IdempotencyKeyHeader"]
