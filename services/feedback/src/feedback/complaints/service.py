"""Complaints: opening with SLA deadlines, reading the queue."""

import base64
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.complaints.models import Complaint
from feedback.complaints.schemas import ComplaintIn, ComplaintOut, ComplaintPage
from feedback.settings import FeedbackSettings
from loyalty_shared.problems import NotFound, Unprocessable


class ComplaintNotFound(NotFound):
    slug = "complaint-not-found"
    title = "Complaint not found"


class BadCursor(Unprocessable):
    slug = "invalid-cursor"
    title = "Invalid cursor"


def _out(c: Complaint) -> ComplaintOut:
    return ComplaintOut.model_validate(c, from_attributes=True)


async def open_complaint(
    session: AsyncSession, settings: FeedbackSettings, data: ComplaintIn
) -> ComplaintOut:
    now = datetime.now(UTC)
    complaint = Complaint(
        id=str(uuid.uuid4()),
        member_id=data.member_id,
        channel=data.channel.value,
        category=data.category,
        description=data.description,
        order_id=data.order_id,
        severity=data.severity.value,
        status="open",
        created_at=now,
        first_response_due_at=now + timedelta(hours=settings.first_response_hours),
        resolution_due_at=now + timedelta(hours=settings.resolution_hours),
    )
    session.add(complaint)
    await session.flush()
    await events.publish(
        session,
        events.COMPLAINT_OPENED,
        data.member_id,
        {
            "complaint_id": complaint.id,
            "member_id": data.member_id,
            "channel": complaint.channel,
            "category": complaint.category,
            "severity": complaint.severity,
            "order_id": complaint.order_id,
            "opened_at": now.isoformat(),
            "first_response_due_at": complaint.first_response_due_at.isoformat(),
        },
    )
    return _out(complaint)


async def get_complaint(session: AsyncSession, complaint_id: str) -> ComplaintOut:
    complaint = await session.get(Complaint, complaint_id)
    if complaint is None:
        raise ComplaintNotFound(f"No complaint with id {complaint_id!r}")
    return _out(complaint)


def _encode_cursor(c: Complaint) -> str:
    raw = f"{c.created_at.isoformat()}|{c.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, _, cid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), cid
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(
            "cursor is not one this API returned",
            errors=[{"field": "query.cursor", "message": "malformed cursor"}],
        ) from exc


async def list_complaints(
    session: AsyncSession,
    *,
    status: str | None,
    member_id: str | None,
    limit: int,
    cursor: str | None,
) -> ComplaintPage:
    query = select(Complaint).order_by(Complaint.created_at.desc(), Complaint.id.desc())
    if status:
        query = query.where(Complaint.status == status)
    if member_id:
        query = query.where(Complaint.member_id == member_id)
    if cursor:
        created, cid = _decode_cursor(cursor)
        query = query.where(tuple_(Complaint.created_at, Complaint.id) < tuple_(created, cid))
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return ComplaintPage(items=[_out(c) for c in rows[:limit]], next_cursor=next_cursor)
