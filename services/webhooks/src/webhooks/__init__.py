"""The webhooks service: the platform's events POSTed to shops' HTTP endpoints, signed."""
