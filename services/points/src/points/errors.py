"""Domain errors of the points service; the shared handler turns them into problem details."""

from loyalty_shared.erasure import MemberErased
from loyalty_shared.problems import Conflict, NotFound, Unprocessable

__all__ = ["MemberErased"]  # the platform's one "member-erased" problem, used here too


class MemberNotFound(NotFound):
    slug = "member-not-found"
    title = "Member not found"


class UnknownMember(Unprocessable):
    slug = "unknown-member"
    title = "Unknown member"


class IdempotencyConflict(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class OperatorRequired(Unprocessable):
    slug = "operator-required"
    title = "X-Operator-Id header required"


class InsufficientPoints(Conflict):
    slug = "insufficient-points"
    title = "Not enough points"


class PointsInDebt(Conflict):
    slug = "points-in-debt"
    title = "The member owes points"


class OutOfStock(Conflict):
    slug = "out-of-stock"
    title = "Reward out of stock"


class RewardNotFound(Unprocessable):
    slug = "unknown-reward"
    title = "Unknown or inactive reward"


class OrderNotFound(NotFound):
    slug = "order-not-found"
    title = "Order not found"


class RefundExceedsOrder(Unprocessable):
    slug = "refund-exceeds-order"
    title = "Refunds exceed the order amount"


class RedemptionNotFound(NotFound):
    slug = "redemption-not-found"
    title = "Redemption not found"
