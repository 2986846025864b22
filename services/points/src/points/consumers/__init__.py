"""Events the points worker consumes (from the feedback service)."""
