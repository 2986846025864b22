"""AHP against textbook numbers."""

import pytest

from loyalty_shared import ahp


def test_saaty_consistent_example() -> None:
    # A perfectly consistent matrix: weights proportional to (4, 2, 1)
    matrix = [[1, 2, 4], [1 / 2, 1, 2], [1 / 4, 1 / 2, 1]]
    result = ahp.weights(matrix)
    assert result.weights == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-9)
    assert result.lambda_max == pytest.approx(3.0, abs=1e-9)
    assert result.cr == pytest.approx(0.0, abs=1e-9)


def test_textbook_three_criteria() -> None:
    # Classic example: [[1,3,5],[1/3,1,3],[1/5,1/3,1]] -> w ~ (0.637, 0.258, 0.105),
    # lambda_max ~ 3.0385, CI ~ 0.0193, CR ~ 0.033
    result = ahp.weights([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    assert result.weights == pytest.approx([0.637, 0.258, 0.105], abs=1e-3)
    assert result.lambda_max == pytest.approx(3.0385, abs=1e-3)
    assert result.ci == pytest.approx(0.0193, abs=1e-3)
    assert result.cr == pytest.approx(0.033, abs=1e-3)


def test_inconsistent_matrix_is_rejected_with_its_cr() -> None:
    matrix = [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]]
    with pytest.raises(ahp.InconsistentMatrix) as caught:
        ahp.weights(matrix)
    assert caught.value.result.cr >= 0.1


@pytest.mark.parametrize(
    "matrix",
    [
        [[1, 2], [2, 1]],  # not reciprocal
        [[1, -2], [-0.5, 1]],  # not positive
        [[1, 2, 3], [0.5, 1, 2]],  # not square
        [],
    ],
)
def test_invalid_matrices(matrix: list[list[float]]) -> None:
    with pytest.raises(ahp.InvalidMatrix):
        ahp.compute(matrix)


def test_two_level_total_ranking_sums_to_one() -> None:
    criteria = ahp.weights([[1, 2], [1 / 2, 1]])
    f1 = ahp.weights([[1, 3], [1 / 3, 1]])
    f2 = ahp.weights([[1, 1, 2], [1, 1, 2], [1 / 2, 1 / 2, 1]])
    total = ahp.combine(criteria, [f1, f2])
    assert len(total) == 5
    assert sum(total) == pytest.approx(1.0)
