"""Feedback service: complaints with SLA clocks, follow-ups, surveys, satisfaction indices."""
