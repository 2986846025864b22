from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TagName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TagName
    kind: Literal["manual", "rule"]
    condition: str | None = Field(default=None, max_length=4000)
    description: str | None = Field(default=None, max_length=500)


class TagOut(BaseModel):
    name: str
    kind: str
    condition: str | None
    description: str | None
    created_at: datetime


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


class SegmentOut(BaseModel):
    segment_id: str
    name: str
    condition: str
    description: str | None
    refresh_mode: str = Field(description="live: kept current by events; batch: by the recompute")
    member_count: int
    created_at: datetime
    last_computed_at: datetime | None


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
