"""The rules half of the points API: tiers, campaigns, earning rules and the rewards catalogue."""

from fastapi import APIRouter

from points.campaigns.endpoints import router as campaigns_router
from points.rewards.endpoints import router as rewards_router
from points.rules.endpoints import router as earning_rules_router
from points.tiers.endpoints import router as tiers_router

routers: list[APIRouter] = [tiers_router, campaigns_router, earning_rules_router, rewards_router]
