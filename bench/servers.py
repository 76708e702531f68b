"""The bare FastAPI app the newsmt server is compared with: same route, same uvicorn flags, no work at all.

It answers every POST with the bytes of a real newsmt response (written by the HTTP case), so both servers send
payloads of the same size and the difference between them is exactly what newsmt does per request.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request, Response

from .config import HEALTH_ROUTE, TRANSLATE_ROUTE

PAYLOAD_ENV = "BENCH_BARE_PAYLOAD"


def bare_app() -> FastAPI:
    """uvicorn factory (`bench.servers:bare_app --factory`); the payload file is named by BENCH_BARE_PAYLOAD."""
    payload = Path(os.environ[PAYLOAD_ENV]).read_bytes()
    app = FastAPI()

    @app.post(TRANSLATE_ROUTE)
    async def translate(request: Request) -> Response:
        await request.body()
        return Response(payload, media_type="application/json")

    @app.get(HEALTH_ROUTE)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
