from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.db import HotTransaction, Session
from loyalty_shared.hotpath.fast_lane import fast_lane
from loyalty_shared.hotpath.pool import DriverAutocommit
from loyalty_shared.lean import json_response
from points.db import Idempotency
from points.identifiers import ClientId
from points.members import service
from points.members.schemas import MemberIn, MemberOut, MemberStatus

router = APIRouter(prefix="/v1/members", tags=["members"])
# the member status every app screen reads, matched ahead of every router
status_router = APIRouter(prefix="/v1/members", tags=["members"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    summary="Enrol a member (idempotent by member_id)",
    responses={200: {"description": "Already enrolled: the existing member", "model": MemberOut}},
)
async def enrol_member(
    body: MemberIn, session: Session, request: Request, idempotency: Idempotency
) -> Response:
    settings = request.app.state.settings

    async def produce() -> tuple[MemberOut, int]:
        member, created = await service.enrol(
            session, settings, body, cache=request.app.state.rules_cache
        )
        return member, status.HTTP_201_CREATED if created else status.HTTP_200_OK

    return await idempotency.run(session, body, produce)


@status_router.get(
    "/{member_id}", response_model=MemberStatus, summary="Membership status and balance"
)
@fast_lane(member_id=ClientId)
async def get_member(member_id: Annotated[ClientId, Path()], request: Request) -> Response:
    # read by every app screen and the gateway's composite status: see docs/performance.md
    state = request.app.state
    ladder = state.rules_cache.cached_ladder()
    if ladder is not None:  # one statement, one snapshot: no transaction block needed
        async with DriverAutocommit(state.engine) as conn:
            answer = await service.status_on(conn, state.settings, ladder, member_id)
    else:
        async with HotTransaction(state.engine) as session:
            answer = await service.status(
                session, state.settings, member_id, cache=state.rules_cache
            )
    return json_response(answer)  # already a MemberStatus: no second validation pass
