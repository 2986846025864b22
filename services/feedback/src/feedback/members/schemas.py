from pydantic import BaseModel, Field


class MemberServiceView(BaseModel):
    member_id: str
    tier: str | None = Field(description="as feedback last heard it from tier.changed")
    value_tier: str | None = Field(description="as feedback last heard it from segmentation")
    open_complaints: int
    pending_follow_ups: int
