"""Subscriptions: where to send which event types, and the secrets that sign them."""
