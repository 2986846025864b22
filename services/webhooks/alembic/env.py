from loyalty_shared.migrations import run_env
from webhooks.db import metadata
from webhooks.settings import WebhooksSettings

run_env(metadata, WebhooksSettings().database_url)
