"""Lean routes: the sidecar's hot paths served straight from the ASGI scope.

A RAN integration calls ``/v1/decide`` and ``/v1/outcome`` once per LLM request, thousands of times
a second; a decision itself costs ~0.1 ms. ``/v1/chat/completions`` is lean too: every proxied
request pays the gateway's own time on top of the LLM's (issue 21's target: 2 ms at the median).
Through FastAPI's routing each call also paid for Starlette's exception middleware, the route's ``Request`` object, dependency solving for the
``Security`` scope check (``SecurityScopes``, ``Request``) and a ``Response`` object: a py-spy
profile of the decide path under ``wrk`` put about a third of the server's CPU there. A lean route
is a plain async function ``handler(gateway, body, headers)`` returning the 200 answer's JSON bytes
or a Starlette response (the proxy's answers, with their own status, headers or stream),
dispatched by :class:`LeanRouteMiddleware` on the exact path, with what FastAPI did for it done
here, the same way:

* the body arrives already read under the size and time limits (:class:`.limits.BodyLimitMiddleware`
  sits outside this middleware and still counts every answer);
* the method is checked first (405 with ``Allow``), then the bearer token and the route's scopes
  (:func:`.auth.authorize`, the function the ``Security`` dependency of the other routes calls);
* an :class:`.errors.APIError` is answered in the sidecar's error shape
  (:func:`.errors.error_response`); any other exception is logged with its traceback and answered
  with the 500 every route gives (:func:`.errors.internal_error`).

It sits outside FastAPI's middleware stack (:class:`.app.GatewayFastAPI`), so none of that stack
runs for a lean route.

Written by hand because neither Starlette nor FastAPI has a route kind without a per-request
``Request`` and dependency pass; validation stays pydantic's (the handlers validate the parsed
body with the same models), and :func:`.app.route_scopes` lists these routes with their scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Union

from starlette.datastructures import Headers
from starlette.responses import Response

from .auth import authorize
from .errors import APIError, error_response, internal_error, log

__all__ = ["LeanRoute", "LeanRouteMiddleware"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = (b"content-type", b"application/json")


@dataclass(frozen=True)
class LeanRoute:
    """One lean route.

    :param path: the exact path
    :param method: its one method
    :param scopes: the scopes a token needs (see :mod:`.auth`)
    :param handler: ``await handler(gateway, body, headers)`` -> the 200 answer's JSON bytes, or a
        response that answers itself; raises :class:`.errors.APIError` for anything else
    """

    path: str
    method: str
    scopes: tuple[str, ...]
    handler: Callable[[Any, bytes, Headers], Awaitable[Union[bytes, Response]]]


class LeanRouteMiddleware:
    """Serve ``routes`` without FastAPI's routing; hand every other request to ``app``.

    Must sit inside :class:`.limits.BodyLimitMiddleware`, which has read the whole body: the
    first ``receive()`` gives it. ``scope["app"]`` is the Starlette app (its ``state`` holds the
    tokens and the gateway).

    :param app: the ASGI app behind (FastAPI's router)
    :param routes: the lean routes, one per path
    """

    def __init__(self, app: Callable, routes: tuple[LeanRoute, ...]) -> None:
        self.app = app
        self.routes = {r.path: r for r in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        starlette_app = scope["app"]
        try:
            if scope["method"] != route.method:
                raise APIError(405, f"{scope['method']} is not allowed on {route.path}", None,
                               headers={"Allow": route.method})
            authorization = ""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            authorize(starlette_app.state.tokens, authorization, route.scopes)
            message = await receive()
            data = await route.handler(starlette_app.state.gateway, message.get("body", b""), Headers(scope=scope))
        except APIError as e:
            await error_response(route.path, e)(scope, receive, send)
            return
        except Exception:  # a bug: logged with its traceback, answered as every route's 500
            log.exception("%s %s failed", scope["method"], route.path)
            await internal_error()(scope, receive, send)
            return
        if isinstance(data, Response):
            await data(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON_HEADERS, (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})
