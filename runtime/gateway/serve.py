"""Running an app on uvicorn: in the foreground (``aolo serve``) or in a thread (tests, benchmarks).

Limits handed to uvicorn: ``limit_concurrency`` (connections and requests at once; 503 beyond),
``timeout_keep_alive`` (idle keep-alive connections), ``timeout_graceful_shutdown`` (requests in
flight after SIGTERM), ``backlog``, and h11's ``max_incomplete_event_size`` (64 KiB of headers)
when httptools is absent. The header deadline and the body's size and time limits come from
:mod:`.limits`. uvloop and httptools are used when installed (they are dependencies).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from typing import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .limits import header_timeout_protocol
from .settings import GatewaySettings

__all__ = ["bind", "run", "running", "uvicorn_config"]

log = logging.getLogger("aolo.runtime.gateway")
MAX_HEADER_BYTES = 64 << 10


def uvicorn_config(app: FastAPI, settings: GatewaySettings) -> uvicorn.Config:
    """uvicorn's config for ``app`` under ``settings``' limits."""
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop = "asyncio"
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, loop=loop, lifespan="on",
        http=header_timeout_protocol(AutoHTTPProtocol, settings.header_timeout_s, settings.keepalive_timeout_s),
        limit_concurrency=settings.limit_concurrency, backlog=2048,
        timeout_keep_alive=max(1, round(settings.keepalive_timeout_s)),
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES, access_log=False, server_header=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted: nothing here uses the client's address
        log_level="warning", log_config=None)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one), so the port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Stop(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


def run(app: FastAPI, settings: GatewaySettings, sock: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn's handlers: stop accepting, let requests in flight
    finish within the grace period, run the lifespan's shutdown: upstream client, backend, ledger),
    then return. Must run in the main thread.

    uvicorn re-raises the signal once it has shut down, to whatever handler was there before it;
    the handler installed here turns that into a return, so the caller can say it stopped and exit 0.
    """
    server = uvicorn.Server(uvicorn_config(app, settings))
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    except _Stop:
        pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def running(app: FastAPI, settings: GatewaySettings, timeout_s: float = 60.0) -> Iterator[int]:
    """``app`` served by uvicorn in a background thread on ``settings.host``; yields the port.
    On exit: a graceful shutdown (lifespan shutdown included)."""
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings))
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    thread = threading.Thread(target=serve, name=f"aolo-gateway:{port}", daemon=True)
    thread.start()
    ready = threading.Event()
    while not ready.wait(0.01):
        if server.started:
            ready.set()
        elif not thread.is_alive() or errors:
            sock.close()
            raise RuntimeError(f"the gateway did not start: {errors[0] if errors else 'startup failed'}")
        timeout_s -= 0.01
        if timeout_s <= 0:
            server.should_exit = True
            raise TimeoutError("the gateway did not start in time")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
