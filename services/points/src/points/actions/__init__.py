"""Points for actions (check-ins, interactions, birthdays, referrals).

``service.py`` holds the pure rules, ``credit.py`` credits the ledger, ``flows.py`` and
``endpoints.py`` wire POST /v1/members/{id}/check-ins and POST /v1/interactions
(docs/points-rules.md, "Actions").
"""
