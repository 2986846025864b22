"""Earning rules for actions (check-in, review, share, ...): amount, caps, growth flag."""
