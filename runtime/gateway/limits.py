"""What keeps slow or large clients from starving the others, beside uvicorn's own limits.

uvicorn bounds concurrency (``limit_concurrency``: connections and requests in flight; beyond it,
503), idle keep-alive connections (``timeout_keep_alive``) and header size (h11's
``max_incomplete_event_size``, httptools' own limit), but it has no time limit on a request's
headers or body and no body size limit. Two small pieces add them, written here because neither
uvicorn nor Starlette offers them:

* :func:`header_timeout_protocol`: a subclass of uvicorn's HTTP protocol that closes a connection
  whose request headers have not all arrived ``header_timeout_s`` after it opened (or
  ``keepalive_timeout_s`` after the previous response) - slowloris;
* :class:`BodyLimitMiddleware`: an ASGI middleware that reads the request body before the app
  sees it, refusing a declared or actual size over ``max_body_bytes`` (413, after dropping up to
  as much again of what the client still sends, so that it can read the answer) and a body that has
  not fully arrived ``body_timeout_s`` after the headers (408; a Content-Length longer than the
  body sent is this case). It also counts every answer by route template and status code.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Optional

from .metrics import GatewayMetrics

__all__ = ["BodyLimitMiddleware", "header_timeout_protocol"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header_timeout_protocol(base: type, header_timeout_s: float, keepalive_timeout_s: float) -> type:
    """``base`` (uvicorn's ``H11Protocol`` or ``HttpToolsProtocol``) with a header deadline.

    A timer starts when the connection opens (``header_timeout_s``) and again when a response
    completes (``keepalive_timeout_s``); when it fires and no request is in progress (no request's
    headers arrived since), the connection is closed.
    """

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _aolo_timer: Optional[asyncio.TimerHandle] = None
        _aolo_cycles = 0

        def _aolo_arm(self, delay_s: float) -> None:
            if self._aolo_timer is not None:
                self._aolo_timer.cancel()
            seen = self.cycle

            def fire() -> None:
                self._aolo_timer = None
                # a new request started since the timer was armed: its headers came in time
                started = self.cycle is not None and self.cycle is not seen
                if not started and not self.transport.is_closing():
                    self.transport.close()

            self._aolo_timer = self.loop.call_later(delay_s, fire)

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._aolo_arm(header_timeout_s)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            if self._aolo_timer is not None:
                self._aolo_timer.cancel()
                self._aolo_timer = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._aolo_arm(keepalive_timeout_s)

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


class BodyLimitMiddleware:
    """Read the whole body under a size and time limit, then hand it to the app; count answers.

    :param app: the ASGI app
    :param max_body_bytes: largest body, bytes
    :param body_timeout_s: time for the whole body to arrive after the headers, s
    :param metrics: where ``aolo_http_requests_total`` is counted
    :param routes: the app's route paths (anything else is counted as ``other``)
    """

    def __init__(self, app: Callable, max_body_bytes: int, body_timeout_s: float, metrics: GatewayMetrics,
                 routes: frozenset[str]) -> None:
        self.app, self.max_body_bytes, self.body_timeout_s = app, max_body_bytes, body_timeout_s
        self.metrics, self.routes = metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.routes else "other"
        status = [500]

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            error = self._declared_too_large(scope)
            body: Optional[bytes] = None
            if error is None:
                # a timer that cancels this task, rather than asyncio.wait_for's extra task per request
                task, expired = asyncio.current_task(), [False]

                def expire() -> None:
                    expired[0] = True
                    task.cancel()  # type: ignore[union-attr]

                timer = asyncio.get_running_loop().call_later(self.body_timeout_s, expire)
                try:
                    body = await self._read_body(receive)
                except asyncio.CancelledError:
                    if not expired[0]:
                        raise
                    error = (408, f"body: not received within {self.body_timeout_s:g} s (is Content-Length longer "
                                  "than the body?)")
                except _TooLarge:
                    error = (413, f"body: over the limit of {self.max_body_bytes} bytes")
                except _Disconnected:
                    return
                finally:
                    timer.cancel()
            if error is not None:
                if error[0] == 413 and self._declared_bytes(scope) <= 2 * self.max_body_bytes:
                    await self._drain(receive)
                await _refuse(scope, counted_send, *error)
                return
            await self.app(scope, _replay(body or b"", receive), counted_send)
        finally:
            self.metrics.http.labels(path, str(status[0])).inc()

    def _declared_too_large(self, scope: Scope) -> Optional[tuple[int, str]]:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    n = int(value)
                except ValueError:
                    return 400, f"Content-Length: {value.decode('latin-1')[:40]!r} is not a byte count"
                if n > self.max_body_bytes:
                    return 413, f"body: {n} bytes is over the limit of {self.max_body_bytes} bytes"
        return None

    @staticmethod
    def _declared_bytes(scope: Scope) -> int:
        """The request's Content-Length (0 when absent: a chunked body)."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value)  # checked by _declared_too_large
        return 0

    async def _drain(self, receive: Receive) -> None:
        """Read and drop what the client still sends of a refused body (called when it declared at
        most twice the limit, or nothing): at most ``max_body_bytes`` more, within
        min(``body_timeout_s``, 2 s). The 413 closes the connection, and closing it with unread
        bytes makes the kernel reset it: a client still sending then got a broken pipe instead of
        reading the 413 (the default limit's test failed so about one run in three). A larger or
        slower rest is not waited for."""

        async def drop() -> None:
            left = self.max_body_bytes
            while left >= 0:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                left -= len(message.get("body", b""))

        try:
            await asyncio.wait_for(drop(), min(self.body_timeout_s, 2.0))
        except asyncio.TimeoutError:
            pass

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected  # the client left: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body once, then the real receive (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    field = message.split(":", 1)[0]
    if scope["path"].startswith(("/v1/chat/", "/v1/models")):
        payload: dict[str, Any] = {"error": {"message": message, "type": "invalid_request_error", "param": field,
                                             "code": None}}
    else:
        payload = {"error": message, "field": field}
    data = json.dumps(payload, separators=(",", ":")).encode()
    # the unread rest of the body would desynchronise the connection: close it after the answer
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
