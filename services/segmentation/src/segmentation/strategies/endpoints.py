from fastapi import APIRouter

from loyalty_shared.db import Session
from segmentation.strategies import service
from segmentation.strategies.schemas import StrategyMatrixIn, StrategyMatrixOut, StrategyRuleOut

router = APIRouter(prefix="/v1/strategy-matrix", tags=["strategies"])


def _out(rules: list) -> StrategyMatrixOut:  # type: ignore[type-arg]
    return StrategyMatrixOut(
        rules=[StrategyRuleOut.model_validate(r, from_attributes=True) for r in rules]
    )


@router.get("", response_model=StrategyMatrixOut, summary="The maintenance strategy matrix")
async def get_matrix(session: Session) -> StrategyMatrixOut:
    return _out(await service.list_rules(session))


@router.put(
    "",
    response_model=StrategyMatrixOut,
    summary="Replace the matrix; every profile's strategies are updated at once",
)
async def put_matrix(body: StrategyMatrixIn, session: Session) -> StrategyMatrixOut:
    rules = await service.replace_rules(session, [r.model_dump() for r in body.rules])
    return _out(rules)
