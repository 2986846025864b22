"""Deliveries: one row per event and subscription, its attempts, and the sender."""
