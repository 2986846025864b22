from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# a pairwise comparison matrix: at most 10 x 10 (Saaty's random index stops at n = 10)
Row = Annotated[list[float], Field(min_length=1, max_length=10)]
Matrix = Annotated[list[Row], Field(min_length=1, max_length=10)]


class MatrixIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matrix: Matrix = Field(
        description="pairwise comparisons on Saaty's 1-9 scale: a[i][j] = how much more "
        "important i is than j; positive and reciprocal (a[j][i] = 1/a[i][j], a[i][i] = 1)",
        examples=[[[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]]],
    )
    labels: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(
        default=None, max_length=10, description="names of the rows, in order"
    )


class WeightsOut(BaseModel):
    n: int
    weights: list[float] = Field(description="normalised principal eigenvector (sums to 1)")
    labelled: dict[str, float] | None
    lambda_max: float
    ci: float = Field(description="(lambda_max - n) / (n - 1)")
    cr: float = Field(description="CI / RI(n), Saaty's random index; must be < 0.1")
    ri: float
    consistent: bool
