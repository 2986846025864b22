from pydantic import BaseModel, ConfigDict, Field


class MatrixIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matrix: list[list[float]] = Field(
        min_length=1,
        max_length=10,
        description="pairwise comparisons on Saaty's 1-9 scale: a[i][j] = how much more "
        "important i is than j; positive and reciprocal (a[j][i] = 1/a[i][j], a[i][i] = 1)",
        examples=[[[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]]],
    )
    labels: list[str] | None = Field(default=None, description="names of the rows, in order")


class WeightsOut(BaseModel):
    n: int
    weights: list[float] = Field(description="normalised principal eigenvector (sums to 1)")
    labelled: dict[str, float] | None
    lambda_max: float
    ci: float = Field(description="(lambda_max - n) / (n - 1)")
    cr: float = Field(description="CI / RI(n), Saaty's random index; must be < 0.1")
    ri: float
    consistent: bool
