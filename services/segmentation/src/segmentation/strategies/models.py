"""The strategy matrix as data: a rule matches on value group, behaviour group and lifecycle."""

from sqlalchemy import Integer, String, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base


class StrategyRule(Base):
    __tablename__ = "strategy_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family: Mapped[str] = mapped_column(String(64), nullable=False)
    # NULL = any value of that dimension
    value_group: Mapped[str | None] = mapped_column(String(16))
    behaviour_group: Mapped[str | None] = mapped_column(String(32))
    lifecycle: Mapped[str | None] = mapped_column(String(16))
    strategies: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
