"""API gateway: routing, request ids, one OpenAPI and Swagger UI over every service."""
