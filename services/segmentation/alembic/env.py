from loyalty_shared.migrations import run_env
from segmentation.db import metadata
from segmentation.settings import SegmentationSettings

run_env(metadata, SegmentationSettings().database_url)
