"""`Annotated` dependency aliases that keep route signatures short, and API-key checks shared by both API styles."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Settings
from ..errors import AuthenticationRequired, InvalidApiKey
from .state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="One of NEWSMT_API_KEYS, when the server is configured with keys.")


def check_api_key(settings: Settings, given: str | None) -> None:
    """Nothing to check without configured keys. Every configured key is compared, each in constant time, so the
    response time says nothing about how close a guess was. The key is never put into a message or a log."""
    if not settings.api_keys:
        return
    if not given:
        raise AuthenticationRequired("an API key is required: send it as `Authorization: Bearer KEY` on /v1 routes "
                                     "or as the `api_key` field on LibreTranslate routes")
    offered = given.encode("utf-8")
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(offered, key.get_secret_value().encode("utf-8"))
    if not matched:
        raise InvalidApiKey("invalid API key")


def require_bearer_key(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    check_api_key(state.settings, credentials.credentials if credentials is not None else None)


BearerKey = Depends(require_bearer_key)
