from fastapi import APIRouter

from feedback.ahp import service
from feedback.ahp.schemas import MatrixIn, WeightsOut

router = APIRouter(prefix="/v1/ahp", tags=["metrics"])


@router.post(
    "/weights",
    response_model=WeightsOut,
    summary="AHP: pairwise matrix -> weights, lambda_max, CI, CR",
    responses={
        422: {
            "description": "Not positive/reciprocal/square (invalid-matrix), or CR >= 0.1 "
            "(inconsistent-matrix, the body carries cr, ci, lambda_max, weights)"
        }
    },
)
async def weights(body: MatrixIn) -> WeightsOut:
    return service.weigh(body)
