"""Error answers: one exception type, two JSON shapes.

The sidecar and ledger routes answer ``{"error": "<field>: <what is wrong>", "field": "<field>"}``
(as before the gateway); the OpenAI-compatible routes (``/v1/chat/completions``, ``/v1/models``)
answer OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so SDKs raise their
usual exceptions. Status codes: 400 unreadable JSON, 401/403 token, 404 unknown route or id, 405
method, 408 body too slow, 409 id already decided or recorded, 413 body too large, 422 a bad field,
429 too many pending decisions, 502/504 upstream faults, 503 no upstream or the ledger cannot
write.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["APIError", "error_response", "install_error_handlers", "internal_error", "validation_message"]

log = logging.getLogger("aolo.runtime.gateway")

OPENAI_PATHS = ("/v1/chat/", "/v1/models")
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 408: "timeout_error", 409: "conflict_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error", 502: "upstream_error", 503: "unavailable_error",
                 504: "upstream_timeout_error"}


class APIError(Exception):
    """An error answer.

    :param status: HTTP status
    :param message: one line, starting with the field it is about when there is one
    :param field: the field, parameter or header (None: the request as a whole)
    :param headers: extra response headers (``WWW-Authenticate``, ``Allow``)
    :param code: a short machine-readable code for OpenAI-style answers
    """

    def __init__(self, status: int, message: str, field: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers, self.code = status, message, field, headers or {}, code


def openai_error_body(status: int, message: str, field: Optional[str] = None, code: Optional[str] = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"), "param": field,
                      "code": code}}


def error_response(path: str, e: APIError) -> Response:
    """The JSON answer of ``e`` in the shape of the route at ``path``."""
    if path.startswith(OPENAI_PATHS):
        body: dict[str, Any] = openai_error_body(e.status, e.message, e.field, e.code)
    else:
        body = {"error": e.message, "field": e.field}
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=e.status,
                    media_type="application/json", headers=e.headers)


def internal_error() -> Response:
    """The answer to a bug: a 500 that names nothing of the request (the log has the traceback)."""
    return JSONResponse({"error": "internal error", "field": None}, status_code=500)


def field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    """``("requests", 1, "gain_db")`` -> ``requests[1].gain_db``."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def validation_message(err: dict[str, Any], prefix: str = "") -> tuple[str, str]:
    """(field, one-line message) of pydantic's first error."""
    loc = tuple(err["loc"])
    msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("field '") and "': " in msg and not loc:  # a model check naming its field
        name, msg = msg[len("field '"):].split("': ", 1)
        loc = (name,)
    field = field_path(loc, prefix)
    if err["type"] == "finite_number":
        msg += " (NaN and Infinity are not accepted)"
    if err["type"] == "missing":
        msg = "field required"
    return field, f"{field}: {msg}"


def install_error_handlers(app: FastAPI) -> None:
    """APIError, FastAPI's validation errors, Starlette's 404/405, and a last-resort 500 that
    logs the traceback and names nothing of the request."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> Response:
        return error_response(request.url.path, e)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> Response:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        if loc and loc[0] in ("body", "query", "header", "path"):
            loc = loc[1:]
        if err["type"] == "json_invalid":
            return error_response(request.url.path, APIError(400, f"body: not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", "body"))
        if err["type"] == "missing" and not loc:
            return error_response(request.url.path, APIError(400, "body: empty; send a JSON object", "body"))
        if err["type"] == "model_attributes_type" and not loc:
            return error_response(request.url.path, APIError(422, "(root): must be a JSON object", "(root)"))
        field, message = validation_message({**err, "loc": loc})
        return error_response(request.url.path, APIError(422, message, field))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        headers = dict(e.headers or {})
        if e.status_code == 404:
            message = f"no route {request.url.path!r}"
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = f"body: {e.detail}" if e.status_code == 400 else str(e.detail)
        return error_response(request.url.path, APIError(e.status_code, message, "body" if e.status_code == 400 else None,
                                                         headers=headers))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return internal_error()
