"""The upstream LLM server, reached through httpx's transport (its httpcore connection pool).

Why not ``httpx.AsyncClient``: on every request the client merges the base URL, runs the auth
flow, the redirect loop and the event hooks, and passes the answer through its cookie jar (which
builds a ``urllib`` request to do it). A proxy needs none of these: its one credential is a fixed
header, a redirect from the LLM server is a fault rather than somewhere to follow, and it keeps no
cookies. Profiled under issue 21's benchmark (py-spy, SmolLM2 on llama.cpp, 2-core machine) those
layers were about 40% of the gateway's httpx time per proxied request. The transport is the one
``AsyncClient`` itself uses (``httpx.AsyncHTTPTransport``: pooling, keep-alive, HTTP/1.1 parsing by
h11, httpx's exception types), so timeouts, connection faults and streams behave as they did.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import httpx

__all__ = ["Upstream", "json_bytes"]


def json_bytes(body: dict[str, Any]) -> bytes:
    """A request body as compact UTF-8 JSON (no NaN or Infinity: the gateway refused those)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class Upstream:
    """An OpenAI-compatible server at ``base_url``.

    :param base_url: its OpenAI base URL, e.g. ``http://127.0.0.1:8080/v1``
    :param api_key: sent as ``Authorization: Bearer`` on every request (None: no header)
    :param connect_timeout_s: connecting, writing the request and waiting for a pooled connection, s
    :param read_timeout_s: the longest wait for the next bytes of the answer, s
    :param max_connections: connections to it at most (the gateway's concurrency limit)
    :param transport: the httpx transport (None: ``httpx.AsyncHTTPTransport`` over the network)
    """

    def __init__(self, base_url: str, api_key: Optional[str], connect_timeout_s: float, read_timeout_s: float,
                 max_connections: int, transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self._urls: dict[str, httpx.URL] = {}
        self._headers = [("Accept", "application/json"), ("User-Agent", f"aolo-gateway httpx/{httpx.__version__}")]
        if api_key is not None:
            self._headers.append(("Authorization", f"Bearer {api_key}"))
        self._timeout = {"connect": connect_timeout_s, "read": read_timeout_s, "write": connect_timeout_s,
                         "pool": connect_timeout_s}
        self.transport = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(64, max_connections)))

    def url(self, path: str) -> httpx.URL:
        """``base_url`` joined with a relative ``path`` such as ``chat/completions`` (parsed once)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self.base_url.join(path)
        return url

    async def send(self, method: str, path: str, content: Optional[bytes] = None) -> httpx.Response:
        """Send one request; returns once the answer's headers are in (read or stream its body,
        which closes it, or ``aclose()`` it).

        :param path: relative to ``base_url``
        :param content: a JSON body (:func:`json_bytes`), or None
        :raises httpx.HTTPError: the connection was refused or broke, or a timeout passed
        """
        headers = self._headers
        if content is not None:
            headers = [*headers, ("Content-Type", "application/json")]
        request = httpx.Request(method, self.url(path), headers=headers, content=content,
                                extensions={"timeout": self._timeout})
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.transport.aclose()
