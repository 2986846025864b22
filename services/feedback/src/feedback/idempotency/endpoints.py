"""The ``Idempotency-Key`` request header with its caller, as a dependency for write endpoints."""

from loyalty_shared.idempotency import IdempotencyKey

__all__ = ["IdempotencyKey"]
