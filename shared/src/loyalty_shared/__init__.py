"""Mechanisms shared by every loyalty service (no domain rules live here)."""
