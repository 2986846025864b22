"""A service's part of a member's data subject export over HTTP (``GET …/{member_id}/export``).

Feedback and segmentation answer it the same way: a 404 problem when the service holds
nothing about the member; for a member token, the member's own facts without the service's
internal view of them (each service's ``privacy/member_view.py``); for admin, everything.
The gateway puts the parts together (``gateway.member_export``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Path
from fastapi.encoders import jsonable_encoder

from loyalty_shared.caller import Caller
from loyalty_shared.problems import NotFound

ExportedMemberId = Annotated[str, Path(min_length=1, max_length=128)]

Document = dict[str, Any]


def export_answer(
    data: Document | None,
    member_id: str,
    caller: Caller,
    for_member: Callable[[Document], Document],
    not_held: type[NotFound],
    *,
    custom_encoder: dict[Any, Callable[[Any], Any]] | None = None,
) -> Document:
    """The export as JSON: ``not_held`` (the service's 404 problem, naming the member) if
    ``data`` is None; ``for_member(data)`` for a member token, else ``data``;
    ``custom_encoder`` as for ``jsonable_encoder`` (segmentation sends decimals as strings)."""
    if data is None:
        raise not_held(f"No data held for member {member_id!r}", member_id=member_id)
    if caller.is_member:
        data = for_member(data)
    encoded: Document = jsonable_encoder(data, custom_encoder=custom_encoder)
    return encoded
