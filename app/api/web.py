"""The web chat page: GET / and its static files, served by the service itself.

The page is plain HTML, CSS and JavaScript in `app/api/static` (no build step, no CDN), so it works offline
and ships inside the wheel. It talks to the same public API as any client (`/v1/models`,
`/v1/chat/completions` with SSE streaming), so it needs no server-side state of its own.
The page and its files are public: the API key is typed into the page and sent only to `/v1/*`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from prunekit.app.api.errors import error_body

__all__ = ["STATIC_DIR", "web_router"]

STATIC_DIR = Path(__file__).parent / "static"

# The page loads nothing from anywhere else: a script or style injected by model output could not run,
# and a CDN reference slipped in by mistake fails loudly in the browser instead of silently going online.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with every release: revalidate rather than serve a stale page.
    "Cache-Control": "no-cache",
}


def _file_response(relative: str, media_type: str | None = None) -> Response:
    """The file under `STATIC_DIR` named by `relative`, else a JSON 404 (also for `..` escapes).

    The 404 is built here rather than raised, so the router answers the same inside any app.
    """
    root = STATIC_DIR.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        body = error_body(f"static file {relative!r} does not exist", "not_found", "not_found")
        return JSONResponse(body, status_code=404)
    return FileResponse(path, media_type=media_type, headers=_SECURITY_HEADERS)


def web_router() -> APIRouter:
    """Routes for the chat page: `GET /` and `GET /static/{path}`.

    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> app.include_router(web_router())
    """
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        return _file_response("index.html", media_type="text/html")

    # A route, not `StaticFiles` mounted on the router: `include_router` drops mounts.
    @router.get("/static/{relative:path}", include_in_schema=False)
    async def static(relative: str) -> Response:
        return _file_response(relative)

    return router
