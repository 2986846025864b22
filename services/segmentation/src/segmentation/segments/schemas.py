from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

TagName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TagName
    kind: Literal["manual", "rule"]
    condition: str | None = Field(default=None, max_length=4000)
    description: str | None = Field(default=None, max_length=500)


Condition = Annotated[str, Field(min_length=1, max_length=4000)]
Description = Annotated[str | None, Field(max_length=500)]


class _NoNulls(BaseModel):
    """A PATCH: the fields sent are changed; ``name`` and ``condition`` cannot be null."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _required_not_null(self) -> Self:
        for name in ("name", "condition"):
            if name in self.model_fields_set and getattr(self, name, None) is None:
                raise ValueError(f"{name} cannot be null (leave it out to keep it)")
        return self

    def changes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set}


class TagPatch(_NoNulls):
    name: TagName | None = None
    condition: Condition | None = Field(default=None, description="rule tags only")
    description: Description = None


class TagPut(BaseModel):
    """The whole definition (the kind cannot change: archive the tag, create another)."""

    model_config = ConfigDict(extra="forbid")

    name: TagName
    condition: Condition | None = Field(default=None, description="rule tags only")
    description: Description = None


class TagOut(BaseModel):
    name: str
    kind: str
    condition: str | None
    description: str | None
    refresh_mode: str = Field(
        description="live: kept current by events; batch: by every recompute (the condition "
        "uses a field only the recompute changes)"
    )
    created_at: datetime
    updated_at: datetime
    last_computed_at: datetime | None = Field(description="rule tags: the last refresh of all")
    archived_at: datetime | None


class ProfileTagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[TagName] = Field(default_factory=list, max_length=100)
    remove: list[TagName] = Field(default_factory=list, max_length=100)


class ProfileTagsOut(BaseModel):
    member_id: str
    manual_tags: list[str]
    tags: list[str]


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    condition: str = Field(min_length=1, max_length=4000)
    description: str | None = Field(default=None, max_length=500)


class SegmentPatch(_NoNulls):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    condition: Condition | None = None
    description: Description = None


class SegmentOut(BaseModel):
    segment_id: str
    name: str
    condition: str
    description: str | None
    refresh_mode: str = Field(
        description="live: kept current by events; batch: by every recompute (the condition "
        "uses a field only the recompute changes), exact as of last_computed_at"
    )
    member_count: int
    created_at: datetime
    updated_at: datetime
    last_computed_at: datetime | None
    archived_at: datetime | None = Field(
        description="set when archived: no more refreshes, no members; history kept"
    )


class DefinitionOut(BaseModel):
    version: int
    change: str = Field(description="created, updated or archived")
    name: str
    condition: str | None
    description: str | None
    refresh_mode: str
    at: datetime


class DefinitionHistory(BaseModel):
    items: list[DefinitionOut] = Field(description="every version, oldest first")


class SegmentList(BaseModel):
    items: list[SegmentOut]


class SegmentMemberOut(BaseModel):
    member_id: str
    entered_at: datetime


class SegmentMembersPage(BaseModel):
    items: list[SegmentMemberOut]
    next_cursor: str | None
    count: int


class ClauseOut(BaseModel):
    clause: str
    field: str
    operator: str
    operand: Any
    member_value: Any
    result: bool


class HistoryOut(BaseModel):
    action: str
    at: datetime
    trigger: str
    reason: dict[str, Any] | None


class ExplainOut(BaseModel):
    segment_id: str
    member_id: str
    condition: str
    in_segment: bool
    matches_now: bool
    refresh_mode: str
    last_computed_at: datetime | None
    clauses: list[ClauseOut]
    history: list[HistoryOut]
