"""POST /v1/members: bad input is a problem naming the field, and nothing is enrolled."""

import httpx
import pytest

from points.testing import mid


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"timezone": "Mars/Olympus_Mons"}, "body.timezone", id="unknown-zone"),
        pytest.param({"email": "not-an-email"}, "body.email", id="bad-email"),
        pytest.param({"birthday": "2999-01-01"}, "body.birthday", id="future-birthday"),
        pytest.param({"phone": "call me"}, "body.phone", id="bad-phone"),
        pytest.param({"nickname": "x"}, "body.nickname", id="unknown-field"),
        pytest.param({"referral_code": "NO-SUCH-CODE"}, "body.referral_code", id="unknown-code"),
    ],
)
async def test_bad_enrolment_is_a_problem_and_enrols_nothing(
    points_client: httpx.AsyncClient, extra: dict[str, str], field: str
) -> None:
    member = mid()
    response = await points_client.post("/v1/members", json={"member_id": member, **extra})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await points_client.get(f"/v1/members/{member}")).status_code == 404


@pytest.mark.parametrize(
    "member_id", [pytest.param("", id="empty"), pytest.param("x" * 200, id="too-long")]
)
async def test_bad_member_id_is_422(points_client: httpx.AsyncClient, member_id: str) -> None:
    response = await points_client.post("/v1/members", json={"member_id": member_id})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["body.member_id"]
