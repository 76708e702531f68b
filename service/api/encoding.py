"""Response bodies encoded once, straight to bytes.

A route that returns a dict or a model has FastAPI validate it against the response model again, turn it into
plain data, and `json.dumps` that: three passes over a body the route has just built from checked parts, on every
cache hit, where they are most of what the server does per request. The routes still declare their response model
(the OpenAPI schema and the contract tests rest on it); they hand back the encoded bytes themselves.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel


def json_response(body: BaseModel | dict[str, Any] | list[Any]) -> Response:
    """The body as compact UTF-8 JSON, as FastAPI would send it (a model with its None fields, as declared)."""
    content = body.model_dump_json().encode() if isinstance(body, BaseModel) else orjson.dumps(body)
    return Response(content, media_type="application/json")
