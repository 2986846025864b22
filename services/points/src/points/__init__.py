"""Points service: members, the points ledger, lots, tiers, rules, campaigns and rewards."""
