"""The ledger and metrics reads (scope ``read``)::

    GET /v1/carbon   ?from=ISO&to=ISO (both optional; [from, to))  -> ledger totals and breakdown
    GET /metrics                                                   -> Prometheus text (prometheus_client)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from ..ledger import CARBON_COLUMNS
from ..service import TIMESTAMP_RANGE_UTC
from .auth import require_scopes
from .errors import APIError

__all__ = ["router"]

router = APIRouter()
_AWARE = TypeAdapter(AwareDatetime)


def _bounds(request: Request) -> dict[str, Any]:
    params = request.query_params
    unknown = sorted(set(params.keys()) - {"from", "to"})
    if unknown:
        raise APIError(422, f"{unknown[0]}: unknown query parameter (use from, to)", unknown[0])
    lo, hi = TIMESTAMP_RANGE_UTC
    bounds = {}
    for name in ("from", "to"):
        if name in params:
            # an unencoded '+' in a query string arrives as ' ' (form encoding); put it back
            raw = params.getlist(name)[-1].replace(" ", "+")
            try:
                t = _AWARE.validate_python(raw)
            except ValidationError as e:
                raise APIError(422, f"{name}: {e.errors()[0]['msg']} (ISO-8601 with a UTC offset)", name) from None
            try:
                ok = lo <= t <= hi
            except OverflowError:  # year 1 with a negative offset, year 9999 with a positive one
                ok = False
            if not ok:
                raise APIError(422, f"{name}: must be in [{lo:%Y-%m-%d}, {hi:%Y-%m-%d}] UTC", name)
            bounds[name] = t
    if "from" in bounds and "to" in bounds and bounds["to"] < bounds["from"]:
        raise APIError(422, "to: is before from", "to")
    return bounds


@router.get("/v1/carbon", dependencies=[Security(require_scopes, scopes=["read"])])
async def carbon(request: Request) -> Response:
    """Ledger totals over [from, to), with the breakdown by component (g) and each component's
    share of the total (a read on the ledger's reader connection, in a worker thread)."""
    bounds = _bounds(request)
    ledger = request.app.state.gateway.service.ledger
    totals = await asyncio.to_thread(ledger.totals, bounds.get("from"), bounds.get("to"))
    total_g = totals["sum"]["total_g"]
    parts = [c for c in CARBON_COLUMNS if c != "total_g"]
    body = {"total_g": total_g, "breakdown_g": {c: totals["sum"][c] for c in parts},
            "share_frac": {c: (totals["sum"][c] / total_g if total_g > 0 else None) for c in parts}, **totals}
    return Response(json.dumps(body, separators=(",", ":")).encode(), media_type="application/json")


@router.get("/metrics", dependencies=[Security(require_scopes, scopes=["read"])])
async def metrics(request: Request) -> Response:
    """The app's registry in Prometheus's text format."""
    gw = request.app.state.gateway
    gw.metrics.pending.set(gw.service.pending_count)
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
