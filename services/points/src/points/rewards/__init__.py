"""The rewards catalogue (products, services, coupons with stock); redemptions spend from it."""
