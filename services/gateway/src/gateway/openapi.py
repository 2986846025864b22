"""One OpenAPI document over every service, and the Swagger UI / ReDoc pages served offline."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from gateway import policy
from gateway.guard import IDENTITY_HEADERS
from gateway.routing import owner_of
from gateway.settings import GatewaySettings

router = APIRouter(include_in_schema=False)


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix = "#/components/schemas/"
                name = value.removeprefix(prefix)
                out[key] = prefix + renames.get(name, name) if value.startswith(prefix) else value
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def merge_openapi(
    gateway_doc: dict[str, Any], service_docs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Union of the services' /v1 paths and schemas; clashing schema names get a service prefix."""
    merged = copy.deepcopy(gateway_doc)
    merged.setdefault("paths", {})
    schemas: dict[str, Any] = merged.setdefault("components", {}).setdefault("schemas", {})
    tags: list[dict[str, Any]] = list(merged.get("tags", []))
    seen_tags = {t["name"] for t in tags}
    for service, doc in service_docs.items():
        renames: dict[str, str] = {}
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service.capitalize()}{name}"
        doc = _rewrite_refs(doc, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for path, item in doc.get("paths", {}).items():
            # The gateway's own routes (e.g. the composite member status) win.
            if path.startswith("/v1/") and path not in merged["paths"]:
                merged["paths"][path] = item
        for tag in doc.get("tags", []):
            if tag["name"] not in seen_tags:
                tags.append(tag)
                seen_tags.add(tag["name"])
    if tags:
        merged["tags"] = tags
    annotate_security(merged)
    return merged


SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key with a scope (storefront, ops or admin): "
        "`Authorization: Bearer <key>`. The dev stack prints its keys at start.",
    },
    "memberToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A member token from POST /v1/auth/member-tokens: reaches only its "
        "own member's routes.",
    },
}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def annotate_security(doc: dict[str, Any]) -> None:
    """Each /v1 operation says which credentials it takes and who may call it."""
    components = doc.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    components.setdefault("schemas", {}).update(PROBLEM_SCHEMAS)
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            if method not in _HTTP_METHODS or not isinstance(operation, dict):
                continue
            found = policy.match(method.upper(), path)
            if found is None:
                operation["x-allowed-scopes"] = []
                operation["security"] = [{"apiKey": []}]
                note = "**Who may call:** nobody yet: the gateway's route policy does not list it."
            else:
                rule = found.rule
                scopes = sorted(rule.scopes | {"admin"})
                if rule.member_self:
                    scopes.append("member:self")
                if rule.member_any:
                    scopes.append("member")
                if rule.member_owned:
                    scopes.append("member:own")
                operation["x-allowed-scopes"] = scopes
                operation["security"] = [{"apiKey": []}]
                if rule.member_self or rule.member_any or rule.member_owned:
                    operation["security"].append({"memberToken": []})
                note = f"**Who may call:** {rule.needs}."
            description = operation.get("description") or ""
            operation["description"] = f"{note}\n\n{description}".strip()
            _document_problems(path, operation)


PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "title": "Problem",
        "description": "RFC 9457 problem details (`application/problem+json`).",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "description": "A URI naming the kind of problem"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "The invalid fields, for validation problems",
                "items": {"$ref": "#/components/schemas/ProblemFieldError"},
            },
        },
        "additionalProperties": True,
    },
    "ProblemFieldError": {
        "type": "object",
        "title": "ProblemFieldError",
        "required": ["field"],
        "properties": {
            "field": {"type": "string", "description": "e.g. `body.member_id`"},
            "message": {"type": "string"},
            "type": {"type": "string"},
        },
        "additionalProperties": True,
    },
}
_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}

# Answers the gateway itself may give on any forwarded operation, before or instead of the service.
_GATEWAY_ANSWERS = {
    "400": "Bad request: malformed JSON, or a NUL character in the path, query or body",
    "401": "No or invalid credentials",
    "403": "These credentials may not call this",
    "429": "Rate limit reached (see Retry-After)",
}
_UPSTREAM_ANSWERS = {
    "503": "The service is unavailable or its circuit is open (see Retry-After)",
    "504": "The service did not answer in time",
}


def _document_problems(path: str, operation: dict[str, Any]) -> None:
    """Every error answer is a problem document; the gateway's own answers are listed too."""
    # Identity headers are set by the gateway (a client's are dropped): not the client's to send.
    parameters = [
        p
        for p in operation.get("parameters", [])
        if not (p.get("in") == "header" and p.get("name", "").lower() in IDENTITY_HEADERS)
    ]
    if "parameters" in operation:
        operation["parameters"] = parameters
    responses: dict[str, Any] = operation.setdefault("responses", {})
    answers = dict(_GATEWAY_ANSWERS)
    keys = [
        p
        for p in parameters
        if p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
    ]
    if "428" in responses:
        # The service answers 428 Precondition Required without the key (a route where a
        # retry must not spend twice): the key is not optional there, whatever the
        # service's own document says (FastAPI declares the header optional so that its
        # absence is the service's 428 rather than a 422).
        for parameter in keys:
            parameter["required"] = True
    if keys:
        # API.md: the same key with a different body is a 409, on every write that takes one.
        answers["409"] = "Conflict (e.g. the Idempotency-Key was used with a different request)"
    if "{" in path:
        # A path parameter that names nothing, or that the gateway cannot route ("..", "a/b").
        answers["404"] = "Not found"
    if "requestBody" in operation:
        answers["413"] = "Request body too large"
    if owner_of(path) is not None:
        answers.update(_UPSTREAM_ANSWERS)
    for status, text in answers.items():
        responses.setdefault(status, {"description": text})
    for status, response in responses.items():
        if status[:1] in ("4", "5") and isinstance(response, dict):
            response["content"] = copy.deepcopy(_PROBLEM_CONTENT)


class OpenAPICache:
    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.fetched_at = 0.0
        self.lock = asyncio.Lock()


async def _fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await client.get(url + "/openapi.json", timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    doc: dict[str, Any] = response.json()
    return doc


async def merged_document(app: FastAPI) -> dict[str, Any]:
    settings: GatewaySettings = app.state.settings
    cache: OpenAPICache = app.state.openapi_cache
    async with cache.lock:
        fresh = time.monotonic() - cache.fetched_at < settings.openapi_cache_seconds
        if cache.doc is not None and fresh:
            return cache.doc
        # a replica of each service in the rotation
        upstreams = {name: app.state.upstreams.base_url(name) for name in settings.upstreams()}
        results = await asyncio.gather(*(_fetch(app.state.http, u) for u in upstreams.values()))
        docs = {name: doc for name, doc in zip(upstreams, results, strict=True) if doc}
        merged = merge_openapi(app.openapi(), docs)
        merged["info"] = {
            "title": "Loyalty platform API",
            "version": "1.0.0",
            "description": (
                "One API over the points, segmentation, feedback and webhooks services. "
                "Errors are RFC 9457 problem details; every response carries X-Request-ID. "
                "The events the services publish on Kafka: [AsyncAPI](/asyncapi) "
                "([asyncapi.json](/asyncapi.json))."
            ),
        }
        missing = sorted(set(upstreams) - set(docs))
        if missing:
            merged["info"]["x-unavailable-services"] = missing
        else:
            cache.doc = merged
            cache.fetched_at = time.monotonic()
        return merged


@router.get("/openapi.json")
async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(await merged_document(request.app))
