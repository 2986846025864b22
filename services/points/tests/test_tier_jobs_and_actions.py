"""Tier evaluation (downgrades), birthday bonus, check-ins, interactions and referrals,
through the points app on the earning database (default ladder and earning rules)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from points.actions.jobs import birthday_bonuses
from points.settings import PointsSettings
from points.testing import backdate_enrolment, enrol, order, outbox_events, sql
from points.tiers.jobs import evaluate_tiers


@pytest.fixture
async def sessionmaker(
    earning_settings: PointsSettings,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(earning_settings.sqlalchemy_url())
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def tier_of(client: httpx.AsyncClient, member: str) -> str:
    return str((await client.get(f"/v1/members/{member}")).json()["tier"])


# ---------------------------------------------------------------------------- evaluation


async def test_evaluation_downgrades_one_level_after_the_grace_period(
    earning_client: httpx.AsyncClient,
    earning_db: str,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await enrol(earning_client)
    response = await earning_client.post("/v1/orders", json=order(member, "10500"))
    assert response.json()["tier"] == "gold", response.text
    enrolled = datetime.fromisoformat(
        (await earning_client.get(f"/v1/members/{member}")).json()["enrolled_at"]
    )
    first = enrolled.replace(year=enrolled.year + 1)
    only = [member]

    # the anniversary has come, the grace period (30 days) has not passed: nothing
    inside_grace = await evaluate_tiers(
        sessionmaker, earning_settings, first + timedelta(days=10), member_ids=only
    )
    assert inside_grace.evaluated == 0
    assert await tier_of(earning_client, member) == "gold"

    # after it: the order left the 365-day window, growth 0 -> one level down, not two
    after = first + timedelta(days=31)
    result = await evaluate_tiers(sessionmaker, earning_settings, after, member_ids=only)
    assert (result.evaluated, result.downgraded) == (1, 1)
    assert await tier_of(earning_client, member) == "silver"
    again = await evaluate_tiers(sessionmaker, earning_settings, after, member_ids=only)
    assert again.evaluated == 0  # that evaluation date is done

    second = enrolled.replace(year=enrolled.year + 2) + timedelta(days=31)
    await evaluate_tiers(sessionmaker, earning_settings, second, member_ids=only)
    assert await tier_of(earning_client, member) == "regular"

    changes = [p["data"] for t, p in await outbox_events(earning_db, member) if "tier" in t]
    assert [(c["from_tier"], c["to_tier"], c["direction"], c["reason"]) for c in changes] == [
        ("regular", "gold", "up", "order"),
        ("gold", "silver", "down", "evaluation"),
        ("silver", "regular", "down", "evaluation"),
    ]


async def test_evaluation_keeps_a_tier_still_qualified(
    earning_client: httpx.AsyncClient,
    earning_db: str,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await enrol(earning_client)
    await earning_client.post("/v1/orders", json=order(member, "2500"))
    back = datetime.now(UTC) - timedelta(days=400)
    # enrolled 400 days ago (a changed enrolment date is rescheduled: next_evaluation_at NULL)
    await sql(
        earning_db,
        "UPDATE members SET enrolled_at = :t, next_evaluation_at = NULL WHERE member_id = :m",
        t=back,
        m=member,
    )
    result = await evaluate_tiers(
        sessionmaker, earning_settings, datetime.now(UTC), member_ids=[member]
    )
    assert (result.evaluated, result.downgraded) == (1, 0)
    assert await tier_of(earning_client, member) == "silver"


async def _member_row(db: str, member: str) -> tuple[object, ...]:
    rows = await sql(
        db,
        "SELECT m.xmin::text, b.xmin::text, m.tier, m.last_evaluated_at, m.next_evaluation_at"
        " FROM members m JOIN balances b USING (member_id) WHERE m.member_id = :m",
        m=member,
    )
    return tuple(rows[0])


async def test_evaluation_reads_only_due_members_and_leaves_the_others_untouched(
    earning_client: httpx.AsyncClient,
    earning_db: str,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    # due: gold, enrolled 400 days ago, its order left the window long ago
    due = await enrol(earning_client)
    await earning_client.post("/v1/orders", json=order(due, "10500", now - timedelta(days=390)))
    await sql(
        earning_db,
        "UPDATE members SET enrolled_at = :t, tier = 'gold', next_evaluation_at = NULL"
        " WHERE member_id = :m",
        t=now - timedelta(days=400),
        m=due,
    )
    # not due: gold since today, first anniversary a year away (scheduled at enrolment)
    fresh = await enrol(earning_client)
    assert (await earning_client.post("/v1/orders", json=order(fresh, "10500"))).json()[
        "tier"
    ] == "gold"
    only = [due, fresh]

    first = await evaluate_tiers(sessionmaker, earning_settings, now, member_ids=only)
    assert first.scheduled == 1  # the back-dated member had no date yet: computed once
    assert (first.evaluated, first.downgraded) == (1, 1)
    assert await tier_of(earning_client, due) == "silver"
    fresh_row = await _member_row(earning_db, fresh)
    assert fresh_row[2:4] == ("gold", None)
    enrolled = datetime.fromisoformat(
        (await earning_client.get(f"/v1/members/{fresh}")).json()["enrolled_at"]
    )
    assert fresh_row[4] == enrolled.replace(year=enrolled.year + 1)  # its anniversary
    due_row = await _member_row(earning_db, due)

    # later runs before anyone's date: nothing read, no row written, no lock taken. Another
    # transaction holds both members' rows meanwhile; the job's connections give up on a
    # lock at once (lock_timeout), so touching either member would fail the run.
    impatient = create_async_engine(
        earning_settings.sqlalchemy_url(),
        connect_args={"server_settings": {"lock_timeout": "1"}},
    )
    holder = create_async_engine(earning_settings.sqlalchemy_url())
    try:
        async with holder.connect() as conn:
            locked = await conn.execute(
                text(
                    "SELECT member_id FROM balances b JOIN members m USING (member_id)"
                    " WHERE member_id = ANY(:ids) FOR UPDATE"
                ),
                {"ids": only},
            )
            assert len(locked.all()) == 2
            for at in (now, now + timedelta(days=300)):
                again = await evaluate_tiers(
                    async_sessionmaker(impatient, expire_on_commit=False),
                    earning_settings,
                    at,
                    member_ids=only,
                )
                assert (again.scheduled, again.evaluated, again.downgraded) == (0, 0, 0)
            await conn.rollback()
    finally:
        await impatient.dispose()
        await holder.dispose()
    assert await _member_row(earning_db, fresh) == fresh_row  # same row versions (xmin)
    assert await _member_row(earning_db, due) == due_row
    downs = [p for t, p in await outbox_events(earning_db, fresh) if "tier" in t]
    assert [d["data"]["direction"] for d in downs] == ["up"]


# ---------------------------------------------------------------------------- birthday


async def test_birthday_bonus_once_a_year_on_the_local_day(
    earning_client: httpx.AsyncClient,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await enrol(earning_client, birthday="1990-07-14", timezone="Asia/Shanghai")
    only = [member]
    # 23:00 on 13 July in Shanghai: not yet
    eve = datetime(2026, 7, 13, 15, 0, tzinfo=UTC)
    assert await birthday_bonuses(sessionmaker, earning_settings, eve, member_ids=only) == 0
    # 00:30 on 14 July in Shanghai (still 13 July in UTC)
    day = datetime(2026, 7, 13, 16, 30, tzinfo=UTC)
    assert await birthday_bonuses(sessionmaker, earning_settings, day, member_ids=only) == 1
    later = day + timedelta(hours=5)
    assert await birthday_bonuses(sessionmaker, earning_settings, later, member_ids=only) == 0
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 200  # the seeded birthday rule


# ---------------------------------------------------------------------------- check-ins


def last_midnight(zone: str, at_least_ago: timedelta) -> datetime:
    """The latest local midnight in ``zone`` at least ``at_least_ago`` before now (UTC)."""
    now = datetime.now(ZoneInfo(zone))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now - midnight < at_least_ago:
        midnight = (midnight - timedelta(hours=12)).replace(hour=0)
    return midnight.astimezone(UTC)


async def test_check_in_once_per_local_day(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client, timezone="America/New_York")
    await backdate_enrolment(earning_db, member, 3)
    url = f"/v1/members/{member}/check-ins"
    # 23:30 in New York, then 00:30 the next day (both within the 48 h real-time window)
    late = last_midnight("America/New_York", timedelta(hours=1)) - timedelta(minutes=30)
    first = await earning_client.post(url, json={"occurred_at": late.isoformat()})
    assert first.status_code == 201, first.text
    day_before = late.astimezone(ZoneInfo("America/New_York")).date()
    assert first.json()["points"] == 5 and first.json()["local_day"] == day_before.isoformat()
    twice = await earning_client.post(
        url, json={"occurred_at": (late + timedelta(minutes=10)).isoformat()}
    )
    assert twice.status_code == 409
    assert twice.json()["type"].endswith("already-checked-in")
    next_day = await earning_client.post(
        url, json={"occurred_at": (late + timedelta(hours=1)).isoformat()}
    )
    assert next_day.status_code == 201, next_day.text
    assert next_day.json()["local_day"] == (day_before + timedelta(days=1)).isoformat()
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 10


async def test_check_in_unknown_member_is_404(earning_client: httpx.AsyncClient) -> None:
    response = await earning_client.post(f"/v1/members/m-{uuid.uuid4().hex}/check-ins")
    assert response.status_code == 404


# ---------------------------------------------------------------------------- interactions


def interaction(member: str, type_: str = "review", **extra: object) -> dict[str, object]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
        "attributes": {"sku": "a-1"},
        **extra,
    }


async def test_interactions_earn_until_capped_and_say_why(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    answers = []
    for _ in range(4):  # review: 10 points, daily cap 30
        response = await earning_client.post("/v1/interactions", json=interaction(member))
        assert response.status_code == 202, response.text
        answers.append((response.json()["points"], response.json()["reason"]))
    assert answers == [(10, "granted")] * 3 + [(0, "capped_daily")]

    unknown = await earning_client.post("/v1/interactions", json=interaction(member, "wave"))
    assert unknown.status_code == 202 and unknown.json() == {
        **{k: unknown.json()[k] for k in ("event_id", "member_id", "type")},
        "points": 0,
        "reason": "no_rule",
        "recorded": True,
    }
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 30
    assert "first_review" in [b["code"] for b in status["badges"]]
    recorded = [t for t, _ in await outbox_events(earning_db, member)]
    assert recorded.count("loyalty.interaction.recorded.v1") == 5


async def test_the_same_interaction_twice_credits_once(earning_client: httpx.AsyncClient) -> None:
    member = await enrol(earning_client)
    body = interaction(member, "share")
    first = await earning_client.post("/v1/interactions", json=body)
    again = await earning_client.post("/v1/interactions", json=body)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    other = await earning_client.post("/v1/interactions", json={**body, "type": "review"})
    assert other.status_code == 409
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == first.json()["points"] > 0


async def test_bad_interactions_are_problems(earning_client: httpx.AsyncClient) -> None:
    member = await enrol(earning_client)
    unknown = await earning_client.post("/v1/interactions", json=interaction(f"x-{member}"))
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.member_id"
    naive = await earning_client.post(
        "/v1/interactions", json=interaction(member, occurred_at="2026-01-01T00:00:00")
    )
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "body.occurred_at"
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 0


# ---------------------------------------------------------------------------- referrals


async def test_referral_credits_both_sides_on_the_first_order(
    earning_client: httpx.AsyncClient,
) -> None:
    referrer = await enrol(earning_client)
    code = (await earning_client.post("/v1/members", json={"member_id": referrer})).json()[
        "referral_code"
    ]
    newcomer = await enrol(earning_client, referral_code=code)
    assert (await earning_client.get(f"/v1/members/{referrer}")).json()["balance"]["available"] == 0
    await earning_client.post("/v1/orders", json=order(newcomer, "10"))
    await earning_client.post("/v1/orders", json=order(newcomer, "10"))
    new_status = (await earning_client.get(f"/v1/members/{newcomer}")).json()
    old_status = (await earning_client.get(f"/v1/members/{referrer}")).json()
    assert new_status["balance"]["available"] == 10 + 10 + 50
    assert old_status["balance"]["available"] == 100


async def test_unknown_referral_code_is_422(earning_client: httpx.AsyncClient) -> None:
    member = f"m-{uuid.uuid4().hex[:12]}"
    response = await earning_client.post(
        "/v1/members", json={"member_id": member, "referral_code": "NOPE"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.referral_code"
    assert (await earning_client.get(f"/v1/members/{member}")).status_code == 404


async def test_concurrent_check_ins_the_same_day_credit_once(
    earning_client: httpx.AsyncClient,
) -> None:
    member = await enrol(earning_client)
    url = f"/v1/members/{member}/check-ins"
    answers = await asyncio.gather(*(earning_client.post(url) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 9
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 5


async def test_bad_check_ins_are_problems_and_write_nothing(
    earning_client: httpx.AsyncClient,
) -> None:
    member = await enrol(earning_client)
    url = f"/v1/members/{member}/check-ins"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for body, field in (
        ({"occurred_at": "2026-01-01T08:00:00"}, "body.occurred_at"),
        ({"occurred_at": future}, "body.occurred_at"),
        ({"mood": "happy"}, "body.mood"),
    ):
        response = await earning_client.post(url, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 0 and status["badges"] == []


async def test_a_date_found_too_early_is_moved_on_without_evaluating(
    earning_client: httpx.AsyncClient,
    earning_db: str,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await enrol(earning_client)
    assert (await earning_client.post("/v1/orders", json=order(member, "10500"))).json()[
        "tier"
    ] == "gold"
    stale = datetime.now(UTC) - timedelta(days=90)
    await sql(
        earning_db,
        "UPDATE members SET next_evaluation_at = :t WHERE member_id = :m",
        t=stale,
        m=member,
    )
    result = await evaluate_tiers(
        sessionmaker, earning_settings, datetime.now(UTC), member_ids=[member]
    )
    assert (result.scheduled, result.evaluated, result.downgraded) == (0, 0, 0)
    enrolled = datetime.fromisoformat(
        (await earning_client.get(f"/v1/members/{member}")).json()["enrolled_at"]
    )
    row = await sql(
        earning_db,
        "SELECT tier, last_evaluated_at, next_evaluation_at FROM members WHERE member_id = :m",
        m=member,
    )
    assert tuple(row[0]) == ("gold", None, enrolled.replace(year=enrolled.year + 1))


async def test_an_entry_tier_member_is_evaluated_once_a_year_and_only_its_date_moves(
    earning_client: httpx.AsyncClient,
    earning_db: str,
    earning_settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    member = await enrol(earning_client)
    back = datetime(2024, 5, 17, 8, 0, tzinfo=UTC)
    await sql(
        earning_db,
        "UPDATE members SET enrolled_at = :t, next_evaluation_at = NULL WHERE member_id = :m",
        t=back,
        m=member,
    )
    at = datetime(2025, 7, 1, tzinfo=UTC)  # the 2025 anniversary + 30 days' grace is past
    result = await evaluate_tiers(sessionmaker, earning_settings, at, member_ids=[member])
    assert (result.scheduled, result.evaluated, result.downgraded) == (1, 1, 0)
    row = await sql(
        earning_db,
        "SELECT tier, last_evaluated_at, next_evaluation_at FROM members WHERE member_id = :m",
        m=member,
    )
    assert tuple(row[0]) == ("regular", back.replace(year=2025), back.replace(year=2026))
    again = await evaluate_tiers(sessionmaker, earning_settings, at, member_ids=[member])
    assert (again.scheduled, again.evaluated) == (0, 0)
    assert [t for t, _ in await outbox_events(earning_db, member) if "tier" in t] == []
