from typing import Annotated

from fastapi import APIRouter, Path

from loyalty_shared.db import Session
from points.rules import service
from points.rules.schemas import (
    ActionType,
    EarningRuleFields,
    EarningRuleOut,
    EarningRulesIn,
    EarningRulesOut,
)

router = APIRouter(prefix="/v1/earning-rules", tags=["earning rules"])

Action = Annotated[ActionType, Path(description="Action type, e.g. check_in")]


@router.get("", response_model=EarningRulesOut, summary="Earning rules for actions (ops)")
async def list_rules(session: Session) -> EarningRulesOut:
    return await service.list_rules(session)


@router.put(
    "",
    response_model=EarningRulesOut,
    summary="Replace the listed actions' rules (ops); unlisted actions keep theirs",
    responses={422: {"description": "Unknown action, duplicate action, caps inconsistent"}},
)
async def put_rules(body: EarningRulesIn, session: Session) -> EarningRulesOut:
    return await service.replace_rules(session, body)


@router.get("/{action}", response_model=EarningRuleOut, summary="One action's rule (ops)")
async def get_rule(action: Action, session: Session) -> EarningRuleOut:
    return await service.get_rule(session, action)


@router.put(
    "/{action}",
    response_model=EarningRuleOut,
    summary="Replace one action's rule (ops)",
    responses={422: {"description": "Invalid amount or caps"}},
)
async def put_rule(action: Action, body: EarningRuleFields, session: Session) -> EarningRuleOut:
    return await service.replace_rule(session, action, body)
