"""Map every failure to an OpenAI-style JSON error body; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prunekit.decoding.cancel import RequestCancelledError
from prunekit.decoding.errors import (
    BackendError,
    BackendHTTPError,
    BackendTimeoutError,
    InvalidRequestError,
    NotFoundError,
    PrunekitError,
    ServiceBusyError,
)
from prunekit.graph_pruning.errors import SandboxUnavailableError

__all__ = ["ApiError", "error_body", "install_error_handlers", "redact_paths"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the service answers with a given status and OpenAI error `type`/`code`."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.headers = headers


# An absolute file path of two or more parts (`/home/u/data/x.sqlite`), not part of a URL or a longer word; the
# service's own API paths (`/v1/...`) are left alone.
_PATH = re.compile(r"(?<![\w:/.~-])/(?!v1/)[\w.@+~-]+(?:/[\w.@+~-]+)+")


def redact_paths(message: str) -> str:
    """`message` with the server's file paths replaced by their last part: clients never learn the layout.

    >>> redact_paths("file is not a database: /srv/prunekit/data/shop.sqlite")
    'file is not a database: <path>/shop.sqlite'
    >>> redact_paths("see GET /v1/models")
    'see GET /v1/models'
    """
    return _PATH.sub(lambda m: "<path>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], message)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def describe_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def status_of(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, error type, message) for a known exception, else a 500."""
    if isinstance(exc, ApiError):
        return exc.status, exc.type, redact_paths(exc.message)
    if isinstance(exc, RequestCancelledError):  # nginx's "client closed request": nobody reads it
        return 499, "cancelled", str(exc)
    if isinstance(exc, ServiceBusyError):
        return 503, "server_overloaded", redact_paths(str(exc))
    if isinstance(exc, SandboxUnavailableError):  # the operator's setup, not the request, is what is wrong
        return 503, "service_unavailable", redact_paths(str(exc))
    if isinstance(exc, NotFoundError):
        return 404, "not_found", redact_paths(str(exc))
    if isinstance(exc, InvalidRequestError):
        return 400, "invalid_request_error", redact_paths(str(exc))
    if isinstance(exc, BackendHTTPError) and exc.status_code in (400, 422):  # the request's fields, not the setup
        return 400, "invalid_request_error", redact_paths(f"the upstream server refused the request: {exc}")
    if isinstance(exc, BackendTimeoutError):
        return 504, "backend_timeout", redact_paths(str(exc))
    if isinstance(exc, BackendError):
        return 502, "backend_error", redact_paths(str(exc))
    return 500, "internal_error", "internal error: the server logged the details"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = redact_paths(describe_validation_error(exc))
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    # Known errors are handled inside the app; the catch-all (500) runs in Starlette's outermost
    # middleware, which re-raises after answering, so it must only see the unexpected.
    @app.exception_handler(ApiError)
    @app.exception_handler(PrunekitError)
    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        status, kind, message = status_of(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=status == 500)
        code = exc.code if isinstance(exc, ApiError) else None
        headers = exc.headers if isinstance(exc, ApiError) else None
        return JSONResponse(error_body(message, kind, code), status_code=status, headers=headers)
