"""The app factory: one FastAPI app per :class:`GatewaySettings`, nothing process-global.

:func:`create_app` builds the app, its own Prometheus registry and its routers; its lifespan opens
the policy service (bundle, backend, ledger) unless one is handed in, and the upstream's
connection pool (:class:`.upstream.Upstream`), and closes them on shutdown. Routes and scopes:

=====================  ======  =======  ==========================================
route                  method  scope    module
=====================  ======  =======  ==========================================
/v1/chat/completions   POST    serve    :mod:`.proxy` (a lean route, :mod:`.lean`)
/v1/models             GET     serve    :mod:`.proxy`
/v1/decide             POST    serve    :mod:`.sidecar` (a lean route, :mod:`.lean`)
/v1/outcome            POST    report   :mod:`.sidecar` (a lean route)
/v1/feedback           POST    report   :mod:`.sidecar` (a lean route)
/v1/carbon             GET     read     :mod:`.reads`
/metrics               GET     read     :mod:`.reads`
/healthz               GET     (none)   here
=====================  ======  =======  ==========================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from ..llm_energy import TokenShareMeter, open_llm_meter
from ..service import PolicyService
from ..sprout_tables import class_deadline_s
from .auth import TokenStore, load_tokens
from .batching import DecideBatcher
from .errors import install_error_handlers
from .lean import LeanRouteMiddleware
from .limits import BodyLimitMiddleware
from .metrics import GatewayMetrics
from .settings import GatewaySettings, SettingsError
from .upstream import Upstream

__all__ = ["LEAN_ROUTES", "ROUTERS", "Gateway", "GatewayFastAPI", "create_app", "open_service", "route_scopes"]

log = logging.getLogger("aolo.runtime.gateway")


def _routers() -> tuple:
    from . import proxy, reads

    return proxy.router, reads.router


def _lean_routes() -> tuple:
    from . import proxy, sidecar

    return sidecar.ROUTES + proxy.ROUTES


ROUTERS = _routers()
LEAN_ROUTES = _lean_routes()


@dataclass
class Gateway:
    """What the routes use (``request.app.state.gateway``), set up by the lifespan."""

    settings: GatewaySettings
    service: PolicyService
    metrics: GatewayMetrics
    upstream: Optional[Upstream]
    telemetry_defaults: dict[str, Any]
    class_deadlines_s: dict[str, float]
    backend_inline: bool
    batcher: DecideBatcher
    actor_hardware: Optional[str] = None
    llm_meter: Optional[TokenShareMeter] = None
    llm_energy_note: str = ""
    started: float = field(default_factory=time.monotonic)


class GatewayFastAPI(FastAPI):
    """FastAPI with the gateway's own ASGI layers outside its middleware stack.

    ``outer_layers(stack)`` wraps what FastAPI builds (its server-error and telemetry middleware,
    exception handlers, router): the body limits and answer counts (:class:`.limits.BodyLimitMiddleware`)
    and the lean sidecar routes (:class:`.lean.LeanRouteMiddleware`), so a decide pays for neither
    FastAPI's routing nor its per-request middleware (its OpenTelemetry check alone read the
    environment for three providers on every request: 5% of the decide path's CPU in py-spy).
    Errors of the routes behind still get FastAPI's handlers (:func:`.errors.install_error_handlers`).
    """

    outer_layers: Optional[Callable[[Callable], Callable]] = None

    def build_middleware_stack(self) -> Callable:  # type: ignore[override]
        stack = super().build_middleware_stack()
        return stack if self.outer_layers is None else self.outer_layers(stack)


def open_service(settings: GatewaySettings) -> tuple[PolicyService, Optional[str]]:
    """Load the bundle and profiles, open the backend and the ledger, build the service.

    :return: the service and the hardware its actor energy is charged for (None: unknown)
    :raises BundleError, BackendError, ProfileError, LedgerError, ServiceError, SigningKeyError, ValueError, OSError:
        each naming its file or field; whatever was opened is closed
    """
    from aolo.hw_profiles import LLMServerProfile, RadioProfile, load_profile

    from ..backends import check_against_recorded, make_backend
    from ..bundle import PolicyBundle
    from ..energy import charge_actor_energy
    from ..grid import load_grid
    from ..ledger import Ledger

    opened: list = []
    try:
        bundle = PolicyBundle.load(settings.bundle)
        signer = None
        if settings.trusted_keys is not None:
            from ..signing import load_trusted_keys, verify_signer

            signer = verify_signer(bundle, load_trusted_keys(settings.trusted_keys))
        server = load_profile(settings.server, LLMServerProfile)
        radio = load_profile(settings.radio, RadioProfile)
        trace = load_grid(settings.grid)
        backend = make_backend(settings.backend, bundle, precision=settings.precision)
        opened.append(backend)
        check_against_recorded(backend, bundle)  # a tampered artefact is refused before it serves
        hardware = charge_actor_energy(backend, bundle, settings.actor_hardware)
        ledger = Ledger(settings.ledger)
        opened.append(ledger)
        service = PolicyService(bundle, backend, ledger, server, radio, trace, max_pending=settings.max_pending,
                                pending_ttl_s=settings.pending_ttl_s, bundle_signer=signer)
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        raise
    return service, hardware


def _telemetry_defaults(settings: GatewaySettings, service: PolicyService) -> dict[str, Any]:
    """Defaults of a chat request's telemetry (``deadline_s``: the class's T_max, filled in later)."""
    from .directive import new_request_id

    gain_db = -float(service.link.pathloss_db(settings.default_distance_m))
    return {"request_id": new_request_id, "task_class": settings.default_task_class, "gain_db": gain_db,
            "active_sessions": settings.default_active_sessions, "deadline_s": None}


def create_app(settings: GatewaySettings, service: Optional[PolicyService] = None, actor_hardware: Optional[str] = None,
               transport: Optional[httpx.AsyncBaseTransport] = None,
               on_ready: Optional[Callable[[Gateway], None]] = None,
               llm_meter: Optional[TokenShareMeter] = None) -> FastAPI:
    """Build one gateway app.

    :param settings: the gateway's settings
    :param service: an open service to serve (the app closes it on shutdown); None opens one from
        ``settings`` in the lifespan
    :param actor_hardware: with ``service``: the hardware its actor energy is charged for
    :param transport: httpx transport to the upstream (None: ``httpx.AsyncHTTPTransport`` over the network)
    :param on_ready: called once the lifespan has opened everything, before requests are served
    :param llm_meter: the meter of the upstream's LLM energy (None: as ``settings.llm_energy`` says,
        :func:`aolo.runtime.llm_energy.open_llm_meter`)
    :raises SettingsError: an unreadable tokens file; ``llm_energy`` ``measure`` with no readable GPU counter
    """
    tokens: Optional[TokenStore] = load_tokens(settings.tokens_file) if settings.tokens_file else None
    if llm_meter is not None:
        llm_note = "measured: " + llm_meter.name
    else:
        try:
            llm_meter, llm_note = open_llm_meter(settings.upstream_url, settings.llm_energy)
        except ValueError as e:
            raise SettingsError(f"--llm-energy: {e}") from None
    registry = CollectorRegistry(auto_describe=True)
    metrics = GatewayMetrics(registry, settings.backend, settings.precision)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc, hardware = (service, actor_hardware) if service is not None else await asyncio.to_thread(open_service, settings)
        upstream = None
        if settings.upstream_url is not None:
            key = settings.upstream_api_key
            upstream = Upstream(settings.upstream_url, None if key is None else key.get_secret_value(),
                                settings.upstream_connect_timeout_s, settings.upstream_read_timeout_s,
                                settings.limit_concurrency, transport)
        # onnx and reference decide in ~0.1 ms in process: inline; Lava (not thread-safe, ms) in a thread
        gw = Gateway(settings=settings, service=svc, metrics=metrics, upstream=upstream,
                     telemetry_defaults=_telemetry_defaults(settings, svc), class_deadlines_s=class_deadline_s(),
                     backend_inline=bool(svc.backend.thread_safe), batcher=DecideBatcher(svc), actor_hardware=hardware,
                     llm_meter=llm_meter, llm_energy_note=llm_note)
        app.state.gateway = gw
        if on_ready is not None:
            on_ready(gw)
        try:
            yield
        finally:
            if upstream is not None:
                await upstream.aclose()
            await asyncio.to_thread(svc.close)

    app = GatewayFastAPI(title="aolo gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tokens = tokens
    app.state.metrics = metrics
    install_error_handlers(app)

    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        """Liveness, open to all: backend and the execution provider it runs on, bundle, how LLM and
        actor energy are accounted, pending decisions, fallbacks, uptime (s)."""
        import json

        gw: Gateway = request.app.state.gateway
        b = gw.service.backend
        body = {"status": "ok", "backend": b.name, "precision": b.precision,
                "execution_provider": getattr(b, "execution_provider", b.name),
                "llm_energy": gw.llm_energy_note,
                "actor_energy": (f"estimated: op counts on {gw.actor_hardware}" if gw.actor_hardware
                                 else "unknown: the bundle has no op counts"),
                "bundle_sha256": gw.service.bundle.sha256,
                "bundle_signer": gw.service.bundle_signer,
                "pending_decisions": gw.service.pending_count, "fallbacks": gw.service.fallback_count,
                "upstream": gw.settings.upstream_url is not None, "uptime_s": round(time.monotonic() - gw.started, 3)}
        return Response(json.dumps(body).encode(), media_type="application/json")

    routes = frozenset(path for path, _ in route_scopes()) | {"/healthz"}
    app.outer_layers = lambda inner: BodyLimitMiddleware(
        LeanRouteMiddleware(inner, LEAN_ROUTES), max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s, metrics=metrics, routes=routes)
    return app


def route_scopes() -> dict[tuple[str, str], tuple[str, ...]]:
    """Every route of the routers and every lean route, (path, method) -> the scopes its
    ``Security`` dependencies (or its :class:`.lean.LeanRoute`) demand (empty: unguarded)."""
    from fastapi.params import Security as SecurityParam
    from fastapi.routing import APIRoute

    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for router in ROUTERS:
        for r in router.routes:
            if isinstance(r, APIRoute):
                scopes = tuple(s for dep in r.dependencies if isinstance(dep, SecurityParam) for s in dep.scopes)
                for method in sorted(r.methods):
                    out[(r.path, method)] = scopes
    for lean in LEAN_ROUTES:
        out[(lean.path, lean.method)] = lean.scopes
    return out
