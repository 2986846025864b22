"""Who is calling a service: the identity the gateway puts in headers it sets itself.

The gateway authenticates every request and forwards the caller's identity in
``x-caller-scope`` (storefront / ops / admin / member), ``x-operator-id`` (the ops or admin
key's name), ``x-caller-name`` (the storefront key's name) and ``x-member-id`` (a member
token's member); it drops those headers when a client sends them (``gateway/guard.py``).
A request without ``x-caller-scope`` did not come through the gateway: a process inside
the platform (tests, the CLI, a job) that is trusted as such.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

SCOPE_HEADER = "x-caller-scope"
OPERATOR_HEADER = "x-operator-id"
NAME_HEADER = "x-caller-name"
MEMBER_HEADER = "x-member-id"

MEMBER = "member"
STOREFRONT = "storefront"
OPS = "ops"
ADMIN = "admin"

# owners longer than this (a key name nobody would choose) are stored as their hash
_OWNER_MAX = 255


@dataclass(frozen=True, slots=True)
class Caller:
    scope: str | None  # None: not through the gateway (internal)
    name: str | None = None  # the API key's name (storefront, ops, admin)
    member_id: str | None = None  # a member token's member

    @property
    def is_member(self) -> bool:
        return self.scope == MEMBER

    @property
    def is_staff(self) -> bool:
        return self.scope in (OPS, ADMIN)

    @property
    def is_internal(self) -> bool:
        return self.scope is None

    @property
    def owner(self) -> str:
        """Who owns what this caller claims (an Idempotency-Key): ``member:<id>``,
        ``<scope>:<key name>``, or ``""`` for an internal caller."""
        if self.scope is None:
            return ""
        who = self.member_id if self.is_member else self.name
        owner = f"{self.scope}:{who or ''}"
        if len(owner) > _OWNER_MAX:
            return "sha256:" + hashlib.sha256(owner.encode()).hexdigest()
        return owner


INTERNAL = Caller(scope=None)


def caller_of(headers: Mapping[str, str]) -> Caller:
    scope = headers.get(SCOPE_HEADER) or None
    if scope is None:
        return INTERNAL
    if scope == MEMBER:
        return Caller(scope, member_id=headers.get(MEMBER_HEADER) or None)
    name = headers.get(OPERATOR_HEADER) if scope in (OPS, ADMIN) else headers.get(NAME_HEADER)
    return Caller(scope, name=name or None)


async def current_caller(request: Request) -> Caller:
    return caller_of(request.headers)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def member_owner(member_id: str) -> str:
    """The owner a member token's claims are stored under (``Caller.owner`` of the member)."""
    return Caller(MEMBER, member_id=member_id).owner
