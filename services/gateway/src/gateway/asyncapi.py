"""``GET /asyncapi.json`` (the AsyncAPI 3.0 document of every topic and event type, generated
from the contract models) and ``GET /asyncapi`` (the same, rendered as one HTML page).

Both answer anyone, without a key, like ``/docs`` and ``/openapi.json``: the contract is
public. The page is rendered here from the document, with no script at all (no bundle to
vendor, no CDN; the page works offline and under a CSP without scripts): a section per
channel, a message per event type with its payload fields and its example.
"""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from loyalty_shared.contracts.asyncapi import asyncapi_document

router = APIRouter(tags=["docs"])


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return asyncapi_document()


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi_json() -> JSONResponse:
    return JSONResponse(document())


@router.get("/asyncapi", include_in_schema=False)
async def asyncapi_page() -> HTMLResponse:
    return HTMLResponse(render(document()))


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;
color:#1d2430}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #4b6bfb;padding-bottom:.2rem;margin-top:2.5rem}
section.message{border:1px solid #d7dce5;border-radius:6px;padding:.2rem 1rem 1rem;margin:1rem 0}
code{background:#f2f4f8;padding:0 .25rem;border-radius:3px}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #e4e7ee;padding:.25rem .5rem;text-align:left;vertical-align:top}
pre{background:#f6f8fa;padding:.75rem;overflow:auto}
nav a{margin-right:1rem}
"""


def _type_of(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_of(s, schemas) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}), schemas)}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else kind


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(_type_of(prop, schemas))}</td>"
        f"<td>{'yes' if name in required else 'no'}</td>"
        f"<td>{escape(str(prop.get('description', '')))}</td></tr>"
        for name, prop in schema.get("properties", {}).items()
    )
    return (
        "<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>"
        f"{rows}</table>"
    )


def _message(name: str, message: dict[str, Any], schemas: dict[str, Any]) -> str:
    data = schemas[name]
    nested = sorted(
        {
            ref.rsplit("/", 1)[-1]
            for ref in _refs(data)
            if ref.rsplit("/", 1)[-1] in schemas and ref.rsplit("/", 1)[-1] != name
        }
    )
    parts = [
        f'<section class="message" id="{escape(message["name"])}">',
        f"<h3><code>{escape(message['name'])}</code> <small>{escape(name)}</small></h3>",
        f"<p>{escape(message.get('summary', ''))}</p>",
        "<h4>data</h4>",
        _fields(data, schemas),
    ]
    for inner in nested:
        parts += [f"<h4>{escape(inner)}</h4>", _fields(schemas[inner], schemas)]
    example = message["examples"][0]["payload"]
    parts += ["<h4>example</h4>", f"<pre>{escape(json.dumps(example, indent=2))}</pre>"]
    return "".join(parts) + "</section>"


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if "$ref" in schema else []
        return own + [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


def render(doc: dict[str, Any]) -> str:
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    body = [
        f"<h1>{escape(doc['info']['title'])}</h1>",
        f'<p>AsyncAPI {escape(doc["asyncapi"])} &middot; <a href="/asyncapi.json">'
        'asyncapi.json</a> &middot; <a href="/docs">HTTP API (/docs)</a></p>',
        f"<p>{escape(doc['info']['description'])}</p>",
        "<nav>",
        *(
            f'<a href="#{escape(c["address"])}">{escape(c["address"])}</a>'
            for c in doc["channels"].values()
        ),
        '<a href="#webhooks">webhooks</a>',
        "</nav>",
    ]
    hooks = doc.get("x-webhooks")
    if hooks:
        body += [
            '<h2 id="webhooks">Webhooks</h2>',
            f"<p>{escape(hooks['description'])}</p>",
            "<table><tr><th>header</th><th>meaning</th></tr>",
            *(
                f"<tr><td><code>{escape(h)}</code></td><td>{escape(m)}</td></tr>"
                for h, m in hooks["headers"].items()
            ),
            "</table><p>Subscribable event types:</p><ul>",
            *(
                f'<li><a href="#{escape(t)}"><code>{escape(t)}</code></a></li>'
                for t in hooks["eventTypes"]
            ),
            "</ul>",
        ]
    for channel in doc["channels"].values():
        body += [
            f'<h2 id="{escape(channel["address"])}">{escape(channel["address"])}</h2>',
            f"<p>{escape(channel['description'])}</p>",
            "<ul>",
            *(
                f'<li><a href="#{escape(messages[n]["name"])}"><code>'
                f"{escape(messages[n]['name'])}</code></a></li>"
                for n in channel["messages"]
            ),
            "</ul>",
            *(_message(n, messages[n], schemas) for n in channel["messages"]),
        ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(doc['info']['title'])}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )
