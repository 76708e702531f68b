"""The web page: `GET /` and its few packaged assets under `/static/` (service/static/), nothing from a CDN, so the
page works on a machine with no internet access. The page itself is a client of the native /v1 API.

Assets are served by explicit routes over a fixed name -> file table built at import, rather than a StaticFiles
mount: nothing a request says can reach a path outside the package, and the routes work the same with every FastAPI
version the project allows.

The Content-Security-Policy lets the page load only its own script and style and talk only to this server. The page
never renders user text as HTML in the first place; the policy is the second wall, which would stop an injected
inline handler such as `onerror=` from running.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files: revalidate on every load, so a redeployed server never pairs a new page with an old script.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web page"], include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The translation page."""
    return FileResponse(ASSETS["index.html"], media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    """The page's script and stylesheet (any packaged file, by its bare name)."""
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404, f"no asset named {name!r}")
    return FileResponse(path, headers=SECURITY_HEADERS)
