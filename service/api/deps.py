"""`Annotated` dependency aliases that keep route signatures short, and the API-key and rate-limit checks shared by
both API styles."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from service.config import Settings
from service.errors import AdminKeyRequired, AuthenticationRequired, InvalidApiKey
from service.serving.jobs import JobManager
from service.serving.ratelimit import address_identity, key_identity
from service.serving.state import ServiceState


# Dependencies are `async def` although they never await: FastAPI runs a plain `def` dependency in its thread pool,
# and that round trip cost more than everything else a cache-hit request does.
async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="One of NEWSMT_API_KEYS, when the server is configured with keys.")


def check_api_key(settings: Settings, given: str | None) -> None:
    """Nothing to check without configured keys. Every configured key is compared, each in constant time, so the
    response time says nothing about how close a guess was. The key is never put into a message or a log."""
    if not settings.api_keys and not settings.admin_api_keys:
        return
    if not given:
        raise AuthenticationRequired("an API key is required: send it as `Authorization: Bearer KEY` on /v1 routes "
                                     "or as the `api_key` field on LibreTranslate routes")
    if not _matches(given, [*settings.api_keys, *settings.admin_api_keys]):
        raise InvalidApiKey("invalid API key")


def check_admin_key(settings: Settings, given: str | None) -> None:
    """After `check_api_key`: with keys configured, only an admin key may change shared state (glossaries), since
    a change alters every other client's translations."""
    if (settings.api_keys or settings.admin_api_keys) and not _matches(given or "", settings.admin_api_keys):
        raise AdminKeyRequired("changing glossaries needs an admin key (one of NEWSMT_ADMIN_API_KEYS)")


def _matches(given: str, keys: list[SecretStr]) -> bool:
    offered = _digest(given)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, _digest(key.get_secret_value()))
    return matched


def _digest(key: str) -> bytes:
    """Keys are compared as sha256 digests: equal lengths, so not even a key's length shows in the timing.
    `surrogatepass`: a JSON body can carry a lone surrogate, which is a wrong key, not a server error."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def admit(state: ServiceState, request: Request, given: str | None) -> None:
    """Authenticate the caller, then spend one request of its rate-limit allowance (NEWSMT_RATE_LIMIT_PER_MINUTE):
    its key's when the server has keys, else its address's. A failed key check is charged to the address, so
    guessing keys is rate limited too."""
    address = address_identity(request.client.host if request.client else None)
    try:
        check_api_key(state.settings, given)
    except (AuthenticationRequired, InvalidApiKey):
        state.rate_limiter.acquire(address)
        raise
    state.rate_limiter.acquire(key_identity(given) if state.settings.api_keys and given else address)


async def admitted_state(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ServiceState:
    """The service state, once the caller's bearer key (if keys are configured) and rate limit let it in. One
    dependency rather than a router-level check plus `State`: FastAPI spends ~15 us solving each, per request."""
    state = await get_state(request)
    admit(state, request, credentials.credentials if credentials is not None else None)
    return state


#: For /v1 routes: the caller is authenticated and rate limited before the route runs.
Admitted = Annotated[ServiceState, Depends(admitted_state)]


async def admin_state(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ServiceState:
    """`admitted_state`, and with keys configured the key must be an admin key."""
    state = await admitted_state(request, credentials)
    check_admin_key(state.settings, credentials.credentials if credentials is not None else None)
    return state


#: For /v1 routes that change shared state: an admin key when keys are configured.
AdminOnly = Annotated[ServiceState, Depends(admin_state)]


@dataclass(frozen=True)
class Caller:
    """An admitted caller of the job routes: the service, its jobs, and who the caller is."""

    state: ServiceState
    jobs: JobManager
    #: Who owns the jobs this caller submits: a digest of its key, or "" on a server without keys (one caller).
    owner: str


async def admitted_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    state = await admitted_state(request, credentials)
    given = credentials.credentials if credentials is not None else None
    return Caller(state, request.app.state.jobs, key_identity(given) if state.settings.api_keys and given else "")


#: For job routes: admitted as `Admitted`, plus the caller's identity, so each key sees only its own jobs.
AdmittedCaller = Annotated[Caller, Depends(admitted_caller)]
