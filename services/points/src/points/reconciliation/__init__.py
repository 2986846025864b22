"""Ledger reconciliation: every cached balance recomputed from the entries and lots
(``loyalty-points verify-ledger``, ``GET /v1/ops/ledger/verify``; docs/points-ledger.md)."""
