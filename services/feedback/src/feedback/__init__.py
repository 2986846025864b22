"""Feedback service: complaints with SLA clocks, follow-up visits, surveys and satisfaction indices."""
