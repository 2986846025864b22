from feedback.db import metadata
from feedback.settings import FeedbackSettings
from loyalty_shared.migrations import run_env

run_env(metadata, FeedbackSettings().database_url)
