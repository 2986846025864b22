from loyalty_shared.migrations import run_env
from points.db import metadata
from points.settings import PointsSettings

run_env(metadata, PointsSettings().database_url)
