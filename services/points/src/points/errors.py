"""Domain errors of the points service; the shared handler turns them into problem details."""

from loyalty_shared.problems import Conflict, NotFound, Unprocessable


class MemberNotFound(NotFound):
    slug = "member-not-found"
    title = "Member not found"


class UnknownMember(Unprocessable):
    slug = "unknown-member"
    title = "Unknown member"


class IdempotencyConflict(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"
