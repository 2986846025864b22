"""AHP weights over HTTP: the shared computation, with its errors as problem details."""

from typing import Any

from feedback.ahp.schemas import MatrixIn, WeightsOut
from loyalty_shared import ahp
from loyalty_shared.problems import Unprocessable


class InvalidMatrixProblem(Unprocessable):
    slug = "invalid-matrix"
    title = "Invalid pairwise comparison matrix"


class InconsistentMatrixProblem(Unprocessable):
    slug = "inconsistent-matrix"
    title = "The pairwise judgments are inconsistent (CR >= 0.1)"


def result_out(result: ahp.AHPResult, labels: list[str] | None = None) -> WeightsOut:
    n = len(result.weights)
    return WeightsOut(
        n=n,
        weights=result.weights,
        labelled=dict(zip(labels, result.weights, strict=True)) if labels else None,
        lambda_max=result.lambda_max,
        ci=result.ci,
        cr=result.cr,
        ri=ahp.RANDOM_INDEX[n],
        consistent=result.consistent,
    )


def checked(matrix: list[list[float]], field: str) -> ahp.AHPResult:
    """ahp.weights with its errors turned into 422 problems naming ``field``."""
    try:
        return ahp.weights(matrix)
    except ahp.InconsistentMatrix as exc:
        r = exc.result
        raise InconsistentMatrixProblem(
            str(exc),
            cr=r.cr,
            ci=r.ci,
            lambda_max=r.lambda_max,
            weights=r.weights,
            errors=[{"field": field, "message": str(exc), "type": "inconsistent"}],
        ) from exc
    except ahp.InvalidMatrix as exc:
        raise InvalidMatrixProblem(
            str(exc), errors=[{"field": field, "message": str(exc), "type": "invalid_matrix"}]
        ) from exc


def weigh(data: MatrixIn) -> WeightsOut:
    if data.labels is not None and len(data.labels) != len(data.matrix):
        errors: list[dict[str, Any]] = [
            {"field": "body.labels", "message": "one label per row", "type": "length"}
        ]
        raise InvalidMatrixProblem("labels and matrix rows differ in number", errors=errors)
    return result_out(checked(data.matrix, "body.matrix"), data.labels)
