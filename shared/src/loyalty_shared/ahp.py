"""Analytic Hierarchy Process: weights from a pairwise matrix, with Saaty's consistency check.

One implementation for the whole platform: the feedback service's satisfaction
index (CSI) and the segmentation service's loyalty index both use it.

- weights  = the normalised principal eigenvector of the matrix
- lambda_max = its principal eigenvalue
- CI = (lambda_max - n) / (n - 1);  CR = CI / RI(n) with Saaty's random index
- a matrix must be square, positive and reciprocal (a_ji = 1 / a_ij, a_ii = 1);
  CR >= 0.1 is rejected as inconsistent. n = 1 or 2 is always consistent (CR = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Saaty's random consistency index by matrix order (as DOMAIN.md lists it).
RANDOM_INDEX: dict[int, float] = {
    1: 0.0,
    2: 0.0,
    3: 0.58,
    4: 0.90,
    5: 1.12,
    6: 1.24,
    7: 1.32,
    8: 1.41,
    9: 1.45,
    10: 1.49,
}
CONSISTENCY_LIMIT = 0.1
RECIPROCAL_TOLERANCE = 0.01


class InvalidMatrix(ValueError):
    """Not square, not positive, not reciprocal, or larger than Saaty's table."""


class InconsistentMatrix(ValueError):
    """CR >= 0.1: the judgments contradict each other too much to be used."""

    def __init__(self, result: AHPResult) -> None:
        super().__init__(
            f"consistency ratio {result.cr:.4f} is not below {CONSISTENCY_LIMIT}; "
            "revise the pairwise judgments"
        )
        self.result = result


@dataclass(frozen=True)
class AHPResult:
    weights: list[float]
    lambda_max: float
    ci: float
    cr: float

    @property
    def consistent(self) -> bool:
        return self.cr < CONSISTENCY_LIMIT


def validate_matrix(matrix: Sequence[Sequence[float]]) -> np.ndarray:
    n = len(matrix)
    if n == 0:
        raise InvalidMatrix("the matrix is empty")
    if n > max(RANDOM_INDEX):
        raise InvalidMatrix(f"at most {max(RANDOM_INDEX)} criteria are supported, got {n}")
    if any(len(row) != n for row in matrix):
        raise InvalidMatrix(f"the matrix must be square ({n} x {n})")
    a = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InvalidMatrix("every entry must be a positive number")
    for i in range(n):
        if abs(a[i, i] - 1.0) > RECIPROCAL_TOLERANCE:
            raise InvalidMatrix(f"diagonal entry [{i}][{i}] must be 1")
        for j in range(i + 1, n):
            if abs(a[i, j] * a[j, i] - 1.0) > RECIPROCAL_TOLERANCE:
                raise InvalidMatrix(
                    f"entries [{i}][{j}]={a[i, j]:g} and [{j}][{i}]={a[j, i]:g} are not reciprocal"
                )
    return a


def compute(matrix: Sequence[Sequence[float]]) -> AHPResult:
    """Weights, lambda_max, CI and CR, without rejecting an inconsistent matrix."""
    a = validate_matrix(matrix)
    n = a.shape[0]
    if n == 1:
        return AHPResult(weights=[1.0], lambda_max=1.0, ci=0.0, cr=0.0)
    eigenvalues, eigenvectors = np.linalg.eig(a)
    k = int(np.argmax(eigenvalues.real))
    lambda_max = float(eigenvalues[k].real)
    vector = np.abs(eigenvectors[:, k].real)
    weights = vector / vector.sum()
    ci = (lambda_max - n) / (n - 1)
    ci = max(ci, 0.0) if abs(ci) < 1e-12 else ci
    ri = RANDOM_INDEX[n]
    cr = ci / ri if ri > 0 else 0.0
    return AHPResult(
        weights=[float(w) for w in weights], lambda_max=lambda_max, ci=float(ci), cr=float(cr)
    )


def weights(matrix: Sequence[Sequence[float]]) -> AHPResult:
    """Like ``compute`` but raises InconsistentMatrix when CR >= 0.1."""
    result = compute(matrix)
    if not result.consistent:
        raise InconsistentMatrix(result)
    return result


def combine(criteria: AHPResult, factors: Sequence[AHPResult]) -> list[float]:
    """Total ranking of a two-level hierarchy: factor weight x its criterion's weight."""
    if len(factors) != len(criteria.weights):
        raise InvalidMatrix("one factor matrix per criterion is needed")
    total: list[float] = []
    for cw, local in zip(criteria.weights, factors, strict=True):
        total.extend(cw * w for w in local.weights)
    return total
