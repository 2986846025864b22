"""Points for actions (check-ins, interactions, birthdays, referrals): the pure rules.

Not wired to HTTP yet: POST /v1/members/{id}/check-ins and POST /v1/interactions need the
ledger's credit function; see docs/points-rules.md ("Actions") for how to wire them.
"""
