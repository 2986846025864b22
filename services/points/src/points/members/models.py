from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        # the tier evaluation job reads only members whose evaluation is due, and once the
        # members not scheduled yet. Neither partial index can answer a look-up by member id
        # (``member_id = :id AND erased_at IS NULL`` implies neither predicate): with an
        # index on (next_evaluation_at, member_id) WHERE erased_at IS NULL, Postgres 18's
        # skip scan made it look as cheap as the primary key when members share one date
        # (an import enrols them all on one day), and every checkout walked it (migration 0007)
        Index(
            "ix_members_evaluation_due",
            "next_evaluation_at",
            "member_id",  # the job pages through due members by (date, id)
            postgresql_where=text("erased_at IS NULL AND next_evaluation_at IS NOT NULL"),
        ),
        Index(
            "ix_members_unscheduled",
            "member_id",
            postgresql_where=text("erased_at IS NULL AND next_evaluation_at IS NULL"),
        ),
        # the birthday job looks members up by the month and day of their birthday
        Index(
            "ix_members_birthday_md",
            text("EXTRACT(month FROM birthday)"),
            text("EXTRACT(day FROM birthday)"),
            postgresql_where=text("birthday IS NOT NULL AND erased_at IS NULL"),
        ),
    )

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    birthday: Mapped[date | None] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(Text, nullable=False)
    referral_code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    referred_by: Mapped[str | None] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(64), nullable=False, server_default="regular")
    enrolled_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the member's next evaluation date (anniversary / 1 January, before the grace period);
    # NULL = not scheduled yet (new member, or the ladder's evaluation policy changed): the
    # evaluation job computes it (points/tiers/jobs.py)
    next_evaluation_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
