"""ASGI middleware of the HTTP service: the request-body size limit, request metrics, and the access-log filter
that keeps API keys out of logs."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.errors import InputTooLarge
from service.serving.metrics import Metrics


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, by the declared Content-Length or, for chunked bodies, by
    counting while reading. Runs before routing, so it answers in the path's error shape itself."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, f"request body has {int(declared)} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send, "request body is larger than that")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        message = f"{what}; the limit is {self.max_bytes} bytes (NEWSMT_MAX_REQUEST_BYTES)"
        await error_response(scope["path"], 413, InputTooLarge.code, message)(scope, receive, send)


class RequestMetrics:
    """Counts every response by route template (not raw path, which would explode label cardinality) and status,
    and observes its latency. Outermost, so refusals by the other middleware are counted too."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)


#: `api_key=...` in a query string. newsmt reads keys only from the Authorization header and the body, but a client
#: may still put one there, and uvicorn's access log records every path with its query string.
_KEY_IN_QUERY = re.compile(r"(?i)([?&]api_key=)[^&#\s]*")


class RedactApiKeys(logging.Filter):
    """Blanks API keys out of access-log lines, so that no key ever reaches a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_KEY_IN_QUERY.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactApiKeys) for f in access.filters):
        access.addFilter(RedactApiKeys())
