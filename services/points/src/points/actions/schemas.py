from datetime import date
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from points.identifiers import ClientId

# how deep ``attributes`` may nest (objects and arrays); their size is a setting
MAX_DEPTH = 32


def _storable(value: Any) -> str | None:
    """Why ``value`` cannot be kept as JSON and hashed for replays, or None.

    Iterative, so that no nesting can exhaust the stack: at most ``MAX_DEPTH`` levels of
    objects and arrays, and integers that fit in 64 bits.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"attributes nest more than {MAX_DEPTH} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            return "integers in attributes must fit in 64 bits"
    return None


class CheckInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="When the member checked in (default: now); bounded like every "
        "client-given time, and refused from a member token (the service's clock decides)",
    )


class CheckInOut(BaseModel):
    member_id: str
    local_day: date = Field(description="The member's calendar day (in their time zone)")
    points: int
    reason: str = Field(description="granted / capped_daily / capped_monthly / disabled ...")
    balance_available: int


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: ClientId = Field(description="The caller's id for this interaction: sent once")
    member_id: ClientId
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    occurred_at: AwareDatetime = Field(
        description="Not before the member's enrolment, not older than the real-time window, "
        "not ahead of the service's clock (docs/security.md)"
    )
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form details (sku, page...): at most 16 KB as JSON by default "
        "(POINTS_INTERACTION_ATTRIBUTES_MAX_BYTES), nested at most 32 deep",
    )

    @field_validator("attributes")
    @classmethod
    def _keepable(cls, attributes: dict[str, Any]) -> dict[str, Any]:
        # kept as JSON and hashed for replays
        problem = _storable(attributes)
        if problem is not None:
            raise ValueError(problem)
        return attributes


class InteractionOut(BaseModel):
    event_id: str
    member_id: str
    type: str
    points: int
    reason: str = Field(
        description="granted / capped_daily / capped_monthly / disabled / no_points / no_rule "
        "/ capped_interactions_daily (the member's interactions of that day are at the limit)"
    )
    recorded: bool = Field(
        default=True,
        description="false: over the member's daily limit, not stored and not published",
    )
