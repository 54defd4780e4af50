"""HTTP front of the policy service: stdlib ``ThreadingHTTPServer``, JSON in and out.

Routes::

    POST /v1/decide    one Telemetry object, or {"requests": [Telemetry, ...]}  -> Decision / {"decisions": [...]}
    POST /v1/outcome   one Outcome object                                      -> the committed ledger row
    GET  /v1/carbon    ?from=ISO&to=ISO (both optional; [from, to))            -> ledger totals and breakdown
    GET  /healthz                                                              -> {"status": "ok", ...}
    GET  /metrics                                                              -> Prometheus text format 0.0.4

Errors are JSON ``{"error": "...", "field": "name" | null}``: 400 unreadable JSON, 404 unknown
path or request_id, 405 wrong method, 409 request_id already decided or recorded, 411 no
Content-Length, 413 body over ``max_body_bytes``, 422 a field missing, of the wrong type, out of
range, NaN or infinite (Python's json reads NaN and Infinity; the models refuse them), 503 while
shutting down or when the ledger cannot write.

Nothing here is process-global: :func:`make_server` builds the app from its own settings and its
own metrics registry, so tests run several servers in one process.
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .ledger import CARBON_COLUMNS, DuplicateRequestError, LedgerError
from .service import Outcome, PolicyService, ServiceError, Telemetry, UnknownRequestError

__all__ = [
    "AoloHTTPServer",
    "App",
    "Counter",
    "Histogram",
    "MetricsRegistry",
    "ServerSettings",
    "ServiceMetrics",
    "make_server",
    "run_until_signalled",
]

log = logging.getLogger("aolo.runtime.server")

DISCARD_LIMIT_BYTES = 16 << 20  # an oversize body up to this is read and dropped after the 413
# decision latency buckets, s: 50 us .. 1 s (an in-process decision is ~0.1 ms, an SNN on Lava ~10 ms)
LATENCY_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class ServerSettings(BaseModel):
    """Settings of one HTTP server.

    :param host: interface to bind
    :param port: TCP port; 0 picks a free one
    :param max_body_bytes: largest request body accepted, bytes (larger: 413)
    :param max_batch: most requests in one decide batch
    :param keepalive_timeout_s: an idle keep-alive connection is closed after this, s
    :param shutdown_grace_s: on shutdown, how long to wait for requests in flight, s
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1 << 20, ge=1)
    max_batch: int = Field(1024, ge=1)
    keepalive_timeout_s: float = Field(30.0, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)


# ---------------------------------------------------------------------------------------------
# metrics, written by hand in the Prometheus text format
# ---------------------------------------------------------------------------------------------


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


class Counter:
    """A monotonically increasing value per label set.

    :param name: metric name, ending in ``_total``
    :param help: one-line description
    :param labelnames: label names (low cardinality only)
    """

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if not labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series of ``labels``."""
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot decrease")
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            return self._values.get(key, 0.0)

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]
        return lines


class Histogram:
    """Cumulative buckets, sum and count of observed values.

    :param name: metric name with its unit (``_seconds``)
    :param help: one-line description
    :param buckets: upper bounds, increasing; +Inf is added
    """

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(buckets) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
                    break
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        cumulative = 0
        for bound, c in zip(self.buckets, counts):
            cumulative += c
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}')
        lines += [f"{self.name}_sum {_num(total)}", f"{self.name}_count {n}"]
        return lines


class MetricsRegistry:
    """The metrics of one app, exposed together."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Histogram] = []

    def register(self, metric: "Counter | Histogram") -> "Counter | Histogram":
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics.append(metric)
        return metric

    def expose(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        return "\n".join(line for m in self._metrics for line in m.expose()) + "\n"


class ServiceMetrics:
    """aolo's service metrics, registered in ``registry``."""

    def __init__(self, registry: MetricsRegistry, backend: str, precision: str) -> None:
        self.registry = registry
        self.decisions = Counter("aolo_decisions_total", "Decisions answered, by backend and precision.",
                                 ("backend", "precision"))
        self.decisions.inc(0, backend=backend, precision=precision)
        self.latency = Histogram("aolo_decision_latency_seconds",
                                 "Time to decide one decide call (a request or a batch), s.", LATENCY_BUCKETS_S)
        self.fallbacks = Counter("aolo_fallbacks_total", "Decisions answered by the safe policy after a backend failure.")
        self.carbon = Counter("aolo_carbon_grams_total", "Carbon of recorded requests, gCO2e.")
        self.actor_energy = Counter("aolo_actor_energy_joules_total", "Actor energy of decisions, J.")
        self.http = Counter("aolo_http_requests_total", "HTTP requests, by route and status code.", ("path", "code"))
        for m in (self.decisions, self.latency, self.fallbacks, self.carbon, self.actor_energy, self.http):
            registry.register(m)


# ---------------------------------------------------------------------------------------------
# the app: routing and validation, independent of the socket handling
# ---------------------------------------------------------------------------------------------


class HTTPError(Exception):
    """An error answer: status, message and the field it is about."""

    def __init__(self, status: int, message: str, field: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def _field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _validation_error(e: ValidationError, prefix: str = "") -> HTTPError:
    err = e.errors()[0]
    loc = tuple(err["loc"])
    msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    named = _NAMED_FIELD.match(msg)
    if named and not loc:  # a model-level check names its field in its message: "field 'x': ..."
        loc, msg = (named.group(1),), named.group(2)
    field = _field_path(loc, prefix)
    if err["type"] == "finite_number":
        msg += " (NaN and Infinity are not accepted)"
    if err["type"] == "missing":
        msg = "field required"
    return HTTPError(422, f"{field}: {msg}", field)


_NAMED_FIELD = re.compile(r"^field '([A-Za-z_][A-Za-z0-9_]*)': (.*)$", re.S)
_TELEMETRY_LIST = TypeAdapter(list[Telemetry])
_AWARE = TypeAdapter(AwareDatetime)
ROUTES = {"/v1/decide": ("POST",), "/v1/outcome": ("POST",), "/v1/carbon": ("GET",), "/healthz": ("GET",),
          "/metrics": ("GET",)}


class App:
    """Routes requests to the service and keeps the metrics.

    :param service: the policy service
    :param settings: server settings
    :param registry: the metrics registry this app writes to (a new one by default)
    """

    def __init__(self, service: PolicyService, settings: ServerSettings,
                 registry: Optional[MetricsRegistry] = None) -> None:
        self.service, self.settings = service, settings
        self.registry = registry or MetricsRegistry()
        self.metrics = ServiceMetrics(self.registry, service.backend.name, service.backend.precision)
        self.started = time.monotonic()

    def handle(self, method: str, target: str, body: Optional[bytes]) -> tuple[int, str, bytes, dict[str, str]]:
        """Answer one request.

        :param method: HTTP method
        :param target: request target (path and query)
        :param body: request body (None for GET)
        :return: (status, content type, body bytes, extra headers)
        """
        url = urlsplit(target)
        route = url.path if url.path in ROUTES else "other"
        headers: dict[str, str] = {}
        try:
            if url.path not in ROUTES:
                raise HTTPError(404, f"no route {url.path!r} (routes: {', '.join(ROUTES)})")
            if method not in ROUTES[url.path]:
                raise HTTPError(405, f"{method} is not allowed on {url.path} (allowed: {', '.join(ROUTES[url.path])})",
                                headers={"Allow": ", ".join(ROUTES[url.path])})
            status, ctype, out = self._route(url.path, url.query, body)
        except HTTPError as e:
            status, ctype, out, headers = e.status, "application/json", _error_body(e), e.headers
        except Exception:  # a bug: answer 500, keep serving
            log.exception("%s %s failed", method, url.path)
            status, ctype, out = 500, "application/json", _json({"error": "internal error", "field": None})
        self.metrics.http.inc(path=route, code=str(status))
        return status, ctype, out, headers

    def _route(self, path: str, query: str, body: Optional[bytes]) -> tuple[int, str, bytes]:
        if path == "/v1/decide":
            return 200, "application/json", _json(self.decide(_parse_json(body)))
        if path == "/v1/outcome":
            return 200, "application/json", _json(self.outcome(_parse_json(body)))
        if path == "/v1/carbon":
            return 200, "application/json", _json(self.carbon(query))
        if path == "/healthz":
            return 200, "application/json", _json(self.health())
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.registry.expose().encode()

    def decide(self, data: Any) -> dict[str, Any]:
        """POST /v1/decide: one telemetry object -> a decision; ``{"requests": [...]}`` -> ``{"decisions": [...]}``."""
        if isinstance(data, dict) and "requests" in data:
            extra = sorted(set(data) - {"requests"})
            if extra:
                raise HTTPError(422, f"{extra[0]}: unknown field (a batch is {{\"requests\": [...]}})", extra[0])
            items = data["requests"]
            if not isinstance(items, list) or not items:
                raise HTTPError(422, "requests: must be a non-empty list of telemetry objects", "requests")
            if len(items) > self.settings.max_batch:
                raise HTTPError(422, f"requests: at most {self.settings.max_batch} per batch, got {len(items)}",
                                "requests")
            try:
                batch = _TELEMETRY_LIST.validate_python(items)
            except ValidationError as e:
                raise _validation_error(e, "requests") from None
        else:
            if not isinstance(data, dict):
                raise HTTPError(422, "(root): must be a JSON object", "(root)")
            try:
                batch = Telemetry.model_validate(data)
            except ValidationError as e:
                raise _validation_error(e) from None
        t0 = time.perf_counter()
        try:
            result = self.service.decide(batch)
        except ServiceError as e:
            raise HTTPError(409, str(e), e.field) from None
        self.metrics.latency.observe(time.perf_counter() - t0)
        decisions = [result] if not isinstance(result, list) else result
        backend = self.service.backend
        self.metrics.decisions.inc(len(decisions), backend=backend.name, precision=backend.precision)
        n_fallback = sum(d.fallback for d in decisions)
        if n_fallback:
            self.metrics.fallbacks.inc(n_fallback)
        self.metrics.actor_energy.inc(sum(d.actor_energy_j for d in decisions))
        if isinstance(result, list):
            return {"decisions": [d.model_dump() for d in result]}
        return result.model_dump()

    def outcome(self, data: Any) -> dict[str, Any]:
        """POST /v1/outcome: record one outcome; returns the committed ledger row (J, g, s, W)."""
        if not isinstance(data, dict):
            raise HTTPError(422, "(root): must be a JSON object", "(root)")
        try:
            outcome = Outcome.model_validate(data)
        except ValidationError as e:
            raise _validation_error(e) from None
        try:
            row = self.service.record(outcome)
        except UnknownRequestError as e:
            raise HTTPError(404, str(e), "request_id") from None
        except DuplicateRequestError as e:
            raise HTTPError(409, str(e), "request_id") from None
        except LedgerError as e:
            log.error("ledger write failed: %s", e)
            raise HTTPError(503, f"ledger: {e}") from None
        self.metrics.carbon.inc(max(row.total_g, 0.0))
        return row.to_dict()

    def carbon(self, query: str) -> dict[str, Any]:
        """GET /v1/carbon?from=&to=: ledger totals over [from, to), with the breakdown by component (g)
        and each component's share of the total."""
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"from", "to"})
        if unknown:
            raise HTTPError(422, f"{unknown[0]}: unknown query parameter (use from, to)", unknown[0])
        bounds = {}
        for name in ("from", "to"):
            if name in params:
                # an unencoded '+' in a query string arrives as ' ' (form encoding); put it back
                raw = params[name][-1].replace(" ", "+")
                try:
                    bounds[name] = _AWARE.validate_python(raw)
                except ValidationError as e:
                    raise HTTPError(422, f"{name}: {e.errors()[0]['msg']} (ISO-8601 with a UTC offset)", name) from None
        if "from" in bounds and "to" in bounds and bounds["to"] < bounds["from"]:
            raise HTTPError(422, "to: is before from", "to")
        totals = self.service.ledger.totals(bounds.get("from"), bounds.get("to"))
        total_g = totals["sum"]["total_g"]
        share = {c: (totals["sum"][c] / total_g if total_g > 0 else None) for c in CARBON_COLUMNS if c != "total_g"}
        return {"total_g": total_g, "breakdown_g": {c: totals["sum"][c] for c in CARBON_COLUMNS if c != "total_g"},
                "share_frac": share, **totals}

    def health(self) -> dict[str, Any]:
        """GET /healthz: backend, bundle, decisions waiting for outcomes, fallbacks, uptime (s)."""
        b = self.service.backend
        return {"status": "ok", "backend": b.name, "precision": b.precision, "bundle_sha256": self.service.bundle.sha256,
                "pending_decisions": self.service.pending_count, "fallbacks": self.service.fallback_count,
                "uptime_s": round(time.monotonic() - self.started, 3)}


def _constant_as_float(name: str) -> float:
    # NaN, Infinity and -Infinity parse as floats so that the models reject them naming the field
    return float(name)


def _error_body(e: HTTPError) -> bytes:
    return _json({"error": e.message, "field": e.field})


def _parse_json(body: Optional[bytes]) -> Any:
    if not body:
        raise HTTPError(400, "body: empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_constant_as_float)
    except json.JSONDecodeError as e:
        raise HTTPError(400, f"body: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        raise HTTPError(400, f"body: not valid JSON: {type(e).__name__}") from None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# sockets
# ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "aolo"
    wbufsize = 1 << 16  # headers and body leave in one send() at the flush after each request
    server: "AoloHTTPServer"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.app.settings.keepalive_timeout_s)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Protocol errors from the base class (bad request line, oversize headers) as JSON."""
        self.close_connection = True
        text = message or HTTPStatus(code).phrase
        self._send(code, "application/json", _json({"error": text, "field": None}))

    def _send(self, status: int, ctype: str, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> Optional[bytes]:
        """The request body (None when there is none); a body on GET is read and dropped."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HTTPError(411, "Content-Length: required (chunked bodies are not accepted)", "Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.command in ("POST", "PUT", "PATCH"):
                raise HTTPError(411, "Content-Length: required", "Content-Length")
            return None
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            raise HTTPError(400, f"Content-Length: {raw!r} is not a byte count", "Content-Length") from None
        limit = self.server.app.settings.max_body_bytes
        if length > limit:
            self._unread_bytes = length
            raise HTTPError(413, f"body: {length} bytes is over the limit of {limit} bytes", "body")
        body = self.rfile.read(length)
        return body if self.command not in ("GET", "HEAD") else None

    def _discard_unread_body(self) -> None:
        """After a 413: read and drop a body up to DISCARD_LIMIT_BYTES, so that a client that sends
        its whole body before reading (http.client, curl) gets the 413 rather than a broken pipe."""
        left = min(getattr(self, "_unread_bytes", 0), DISCARD_LIMIT_BYTES)
        self._unread_bytes = 0
        try:
            self.wfile.flush()
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _dispatch(self) -> None:
        app = self.server.app
        if not self.server.enter():
            self.close_connection = True
            self._send(503, "application/json", _json({"error": "shutting down", "field": None}))
            return
        try:
            try:
                body = self._read_body()
            except HTTPError as e:
                self.close_connection = True  # the unread body would desynchronise the connection
                path = urlsplit(self.path).path
                app.metrics.http.inc(path=path if path in ROUTES else "other", code=str(e.status))
                self._send(e.status, "application/json", _error_body(e), e.headers)
                self._discard_unread_body()
                return
            self._send(*app.handle(self.command, self.path, body))
        finally:
            self.server.leave()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch  # noqa: N815


class AoloHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that counts requests in flight, for a graceful shutdown.

    :param address: (host, port)
    :param app: the app answering requests
    """

    daemon_threads = True
    request_queue_size = 128  # 8+ clients connecting at once must not overflow the backlog

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._flight_lock = threading.Condition()
        self._in_flight = 0
        self.closing = False
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def enter(self) -> bool:
        """Count a request in; False once shutdown has begun."""
        with self._flight_lock:
            if self.closing:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._flight_lock:
            self._in_flight -= 1
            self._flight_lock.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Refuse new requests and wait for those in flight; True if all finished in time."""
        deadline = time.monotonic() + timeout_s
        with self._flight_lock:
            self.closing = True
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flight_lock.wait(left)
        return True

    def close_all(self) -> None:
        """Stop accepting, wait for requests in flight, close the socket, the backend and the ledger."""
        finished = self.drain(self.app.settings.shutdown_grace_s)
        if not finished:
            log.warning("shutdown: requests still in flight after %.1f s", self.app.settings.shutdown_grace_s)
        self.server_close()
        self.app.service.close()


def make_server(service: PolicyService, settings: Optional[ServerSettings] = None,
                registry: Optional[MetricsRegistry] = None) -> AoloHTTPServer:
    """Build a server (bound, not yet serving) around ``service``.

    :param service: the policy service
    :param settings: server settings (defaults: 127.0.0.1:8080, 1 MiB bodies)
    :param registry: metrics registry (default: a new one, owned by this server)
    """
    settings = settings or ServerSettings()
    return AoloHTTPServer((settings.host, settings.port), App(service, settings, registry))


def run_until_signalled(server: AoloHTTPServer, on_ready: Optional[Callable[[AoloHTTPServer], None]] = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (drain, close backend and ledger).

    Must run in the main thread (signal handlers).

    :param on_ready: called once the handlers are installed, before serving
    """
    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        # shutdown() waits for serve_forever to return, so it cannot run in this (the serving) thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_ready is not None:
            on_ready(server)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.close_all()
        for s, h in previous.items():
            signal.signal(s, h)
