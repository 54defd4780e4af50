"""The sidecar routes, for RAN integrations that serve the LLM themselves and only ask for a
decision and report the outcome.

::

    POST /v1/decide    (serve)   one Telemetry object, or {"requests": [Telemetry, ...]}  -> Decision / {"decisions": [...]}
    POST /v1/outcome   (report)  one Outcome object                                      -> the committed ledger row
    POST /v1/feedback  (report)  {"request_id", "quality"}                               -> the row's new quality

They are lean routes (:mod:`.lean`): plain functions of the gateway and the request body, without
FastAPI's per-request routing and dependency solving, on the hot path of every RAN request.

A decide is answered as soon as its decisions wait in memory; the ledger's writer puts them in the
file within its next commit (see :meth:`PolicyService.decide_begin`). An outcome is answered once
its row is committed with ``synchronous=FULL``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.datastructures import Headers

from ..ledger import DuplicateRequestError, LedgerError, LedgerWrite, UnknownRowError
from ..service import Outcome, PendingFullError, ServiceError, Telemetry, UnknownRequestError
from .errors import APIError, log, validation_message
from .lean import LeanRoute

__all__ = ["ROUTES", "Feedback", "committed", "decide", "feedback", "outcome", "parse_json"]

_TELEMETRY_LIST = TypeAdapter(list[Telemetry])


class Feedback(BaseModel):
    """A client's judgement of a served answer.

    :param request_id: the served request's id
    :param quality: the answer's quality in [0, 1] (Sprout's metric: 1 when it is as good as the
        judge's preferred level's)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    request_id: str = Field(min_length=1, max_length=128)
    quality: float = Field(strict=True, ge=0, le=1)


async def committed(write: LedgerWrite) -> None:
    """Wait for a ledger write without blocking the event loop (the writer thread resolves a future)."""
    if write.done.is_set():
        return
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def resolve(_: LedgerWrite) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

    write.add_done_callback(resolve)
    await fut


def _constant_as_float(name: str) -> float:
    # NaN, Infinity and -Infinity parse as floats so that the models refuse them naming the field
    return float(name)


def parse_json(body: bytes) -> Any:
    """The request's JSON (Python's json module).

    :raises APIError: 400 empty or not JSON
    """
    if not body:
        raise APIError(400, "body: empty; send a JSON object", "body")
    try:
        return json.loads(body, parse_constant=_constant_as_float)
    except json.JSONDecodeError as e:
        raise APIError(400, f"body: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", "body") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        raise APIError(400, f"body: not valid JSON: {type(e).__name__}", "body") from None


def _json(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def _batch(data: Any, max_batch: int) -> tuple[list[Telemetry], bool]:
    if isinstance(data, dict) and "requests" in data:
        extra = sorted(set(data) - {"requests"})
        if extra:
            raise APIError(422, f"{extra[0]}: unknown field (a batch is {{\"requests\": [...]}})", extra[0])
        items = data["requests"]
        if not isinstance(items, list) or not items:
            raise APIError(422, "requests: must be a non-empty list of telemetry objects", "requests")
        if len(items) > max_batch:
            raise APIError(422, f"requests: at most {max_batch} per batch, got {len(items)}", "requests")
        try:
            return _TELEMETRY_LIST.validate_python(items), False
        except ValidationError as e:
            field, message = validation_message(e.errors()[0], "requests")
            raise APIError(422, message, field) from None
    if not isinstance(data, dict):
        raise APIError(422, "(root): must be a JSON object", "(root)")
    try:
        return [Telemetry.model_validate(data)], True
    except ValidationError as e:
        field, message = validation_message(e.errors()[0])
        raise APIError(422, message, field) from None


async def decide(gw: Any, body: bytes, headers: Headers) -> bytes:
    """``POST /v1/decide``: decide one request or a batch; the decisions wait in the ledger for
    their outcomes."""
    batch, single = _batch(parse_json(body), gw.settings.max_batch)
    t0 = time.perf_counter()
    try:
        if gw.backend_inline:  # onnx, reference: ~0.1 ms in process, batched with concurrent decides
            decisions = await gw.batcher.decide(batch)
        else:  # Lava: milliseconds, and not thread-safe (the service serialises it)
            decisions, _ = await asyncio.to_thread(gw.service.decide_begin, batch)
    except PendingFullError as e:
        gw.metrics.pending_refused.inc(len(batch))
        raise APIError(429, str(e), e.field, headers={"Retry-After": "1"}) from None
    except ServiceError as e:
        raise APIError(409, str(e), e.field) from None
    gw.metrics.count_decisions(len(decisions), sum(d.fallback for d in decisions),
                               sum(d.actor_energy_j for d in decisions), time.perf_counter() - t0)
    if single:
        return decisions[0].model_dump_json().encode()
    return b'{"decisions":[' + b",".join(d.model_dump_json().encode() for d in decisions) + b"]}"


def _model(model: type[BaseModel], body: bytes) -> Any:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise APIError(422, "(root): must be a JSON object", "(root)")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        field, message = validation_message(e.errors()[0])
        raise APIError(422, message, field) from None


async def outcome(gw: Any, body: bytes, headers: Headers) -> bytes:
    """``POST /v1/outcome``: record one outcome; returns the committed ledger row (J, g, s, W)."""
    out: Outcome = _model(Outcome, body)
    try:
        row, write = gw.service.record_begin(out)
    except UnknownRequestError as e:
        raise APIError(404, str(e), "request_id") from None
    except LedgerError as e:
        raise APIError(503, f"ledger: {e}") from None
    await committed(write)
    try:
        gw.service.record_settle(write)
    except DuplicateRequestError as e:
        raise APIError(409, str(e), "request_id") from None
    except LedgerError as e:
        log.error("ledger write failed: %s", e)
        raise APIError(503, f"ledger: {e}") from None
    gw.metrics.count_row(row)
    return _json(row.to_dict())


async def feedback(gw: Any, body: bytes, headers: Headers) -> bytes:
    """``POST /v1/feedback``: a client's quality for a served request; replaces the expected
    quality in its ledger row and in the rolling window the policy's quality slack comes from."""
    fb: Feedback = _model(Feedback, body)
    try:
        write = gw.service.feedback_begin(fb.request_id, fb.quality)
    except LedgerError as e:
        raise APIError(503, f"ledger: {e}") from None
    await committed(write)
    if isinstance(write.error, UnknownRowError):
        raise APIError(404, f"request_id {fb.request_id!r}: no served request under this id", "request_id")
    if write.error is not None:
        raise APIError(503, f"ledger: {write.error}")
    return _json({"request_id": fb.request_id, "quality": fb.quality, "quality_source": "feedback"})


ROUTES = (LeanRoute("/v1/decide", "POST", ("serve",), decide),
          LeanRoute("/v1/outcome", "POST", ("report",), outcome),
          LeanRoute("/v1/feedback", "POST", ("report",), feedback))
