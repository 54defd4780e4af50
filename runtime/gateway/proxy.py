"""The OpenAI-compatible proxy (scope ``serve``)::

    POST /v1/chat/completions   plain or "stream": true, forwarded to the upstream with the directive applied
    GET  /v1/models             the upstream's model list

For each chat request: telemetry from headers or ``metadata`` (:mod:`.directive`), one decision,
the level's instruction and cap applied, the request forwarded through httpx's transport
(:mod:`.upstream`), output tokens taken from
the upstream's ``usage`` (asked for on streams with ``stream_options.include_usage``; without it,
one token per streamed content chunk, and the ledger row says ``counted_chunks``), the request
priced by the one carbon model and its ledger row committed before the answer ends. The answer
carries the decision and its carbon: headers ``X-Aolo-Request-Id``, ``X-Aolo-Level``,
``X-Aolo-Tx-Power-W`` (and, on plain answers, ``X-Aolo-Carbon-G`` and ``X-Aolo-Carbon-Kinds``),
and an ``aolo`` object in the JSON body or in the last SSE chunk before ``[DONE]``.

Upstream faults (connection refused, timeout, 5xx, malformed JSON, a stream that dies) give an
OpenAI-style 502 or 504, or on a stream already under way an SSE ``error`` event that ends it;
nothing is billed, and each is counted in ``aolo_upstream_errors_total{kind}``. An upstream 4xx
(a bad model name, a context too long) is passed through as it is, unbilled. A client that leaves
mid-stream is not billed either.

``/v1/chat/completions`` is a lean route (:mod:`.lean`: the same token check, body limits and error
shapes, without FastAPI's per-request routing); ``/v1/models`` is an ordinary FastAPI route.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, AsyncIterator, Literal, Optional

import httpx
from fastapi import APIRouter, Request, Security
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers

from ..ledger import DuplicateRequestError, LedgerError, LedgerRow, LedgerWrite
from ..service import Served, ServiceError
from .auth import require_scopes
from .directive import TELEMETRY_INPUTS, apply_directive, chat_telemetry, estimate_prompt_tokens
from .errors import APIError, log, openai_error_body, validation_message
from .lean import LeanRoute
from .settings import MAX_TOKENS_BOUND
from .sidecar import committed, parse_json
from .upstream import json_bytes

__all__ = ["ROUTES", "ChatRequest", "aolo_summary", "chat_completions", "router"]

router = APIRouter()


class ChatMessage(BaseModel):
    """One message; content is text or a list of content parts. Other keys pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Optional[str | list[dict[str, Any]]] = Field(None, max_length=100_000)


class ChatRequest(BaseModel):
    """The fields the gateway reads and bounds; every other field is forwarded as it came.

    :param messages: 1 to ``max_messages`` messages (checked by the route)
    :param max_tokens: the client's cap, 1 to 1,000,000 tokens
    :param metadata: string values; ``aolo_*`` keys are telemetry and are not forwarded
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: Optional[str] = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = Field(False, strict=True)
    stream_options: Optional[dict[str, Any]] = None
    max_tokens: Optional[int] = Field(None, ge=1, le=MAX_TOKENS_BOUND, strict=True)
    max_completion_tokens: Optional[int] = Field(None, ge=1, le=MAX_TOKENS_BOUND, strict=True)
    n: Optional[int] = Field(None, ge=1, le=1, strict=True)  # one answer per request: one decision, one row
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, ge=0, le=1)
    presence_penalty: Optional[float] = Field(None, ge=-2, le=2)
    frequency_penalty: Optional[float] = Field(None, ge=-2, le=2)
    metadata: Optional[dict[str, str | int | float]] = Field(None, max_length=64)


def _upstream_fault(gw: Any, kind: str, status: int, message: str) -> APIError:
    gw.metrics.upstream_errors.labels(kind).inc()
    log.warning("upstream %s: %s", kind, message)
    return APIError(status, f"upstream: {message}", None, code=f"upstream_{kind}")


def _transport_fault(gw: Any, e: httpx.HTTPError) -> APIError:
    if isinstance(e, httpx.TimeoutException):
        return _upstream_fault(gw, "timeout", 504, f"no answer within the timeout ({type(e).__name__})")
    if isinstance(e, httpx.ConnectError):
        return _upstream_fault(gw, "refused", 502, f"cannot connect to {gw.settings.upstream_url} ({e})")
    return _upstream_fault(gw, "stream_broken", 502, f"{type(e).__name__}: {e}")


def aolo_summary(row: LedgerRow) -> dict[str, Any]:
    """The ``aolo`` object of an answer: decision, tokens and carbon by part, each part's kind."""
    radio_j = row.radio_dynamic_energy_j + row.radio_static_energy_j
    return {
        "request_id": row.request_id, "level": row.level, "tx_power_w": row.tx_power_w, "backend": row.backend,
        "fallback": row.fallback, "prompt_tokens": row.prompt_tokens, "output_tokens": row.output_tokens,
        "output_tokens_source": row.output_tokens_source, "ci_g_per_kwh": row.ci_g_per_kwh,
        "carbon_g": row.total_g,
        "breakdown": {
            "inference": {"g": row.inference_g, "energy_j": row.inference_energy_j, "kind": row.inference_kind},
            "radio": {"g": row.radio_g, "energy_j": radio_j, "airtime_s": row.airtime_s, "kind": row.radio_kind},
            "actor": {"g": row.actor_g, "energy_j": row.actor_energy_j, "kind": row.actor_kind},
            "embodied_gpu": {"g": row.embodied_gpu_g, "kind": "modelled"},
            "embodied_bs": {"g": row.embodied_bs_g, "kind": "modelled"},
        },
        "quality": row.quality, "quality_source": row.quality_source, "upstream_latency_s": row.upstream_latency_s,
    }


def _kinds_header(row: LedgerRow) -> str:
    return f"inference={row.inference_kind},radio={row.radio_kind},actor={row.actor_kind},embodied=modelled"


def _decision_headers(served: Served) -> dict[str, str]:
    d = served.decision
    return {"X-Aolo-Request-Id": d.request_id, "X-Aolo-Level": d.level, "X-Aolo-Tx-Power-W": f"{d.tx_power_w:.6g}"}


def _upstream(gw: Any) -> Any:
    if gw.upstream is None:
        raise APIError(503, "no upstream configured (aolo serve BUNDLE --upstream URL)", code="no_upstream")
    return gw.upstream


async def _decide(gw: Any, raw: bytes, headers: Headers) -> tuple[dict[str, Any], Served]:
    """Validate, find the telemetry, decide; returns (forwarded body, decision)."""
    _upstream(gw)
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise APIError(422, "(root): must be a JSON object", "(root)")
    try:
        bad = _non_finite(data)
    except RecursionError:
        raise APIError(400, "body: nested too deeply", "body") from None
    if bad is not None:
        raise APIError(422, f"{bad}: must be a finite number (NaN and Infinity are not accepted)", bad)
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as e:
        field, message = validation_message(e.errors()[0])
        raise APIError(422, message, field) from None
    if len(req.messages) > gw.settings.max_messages:
        raise APIError(422, f"messages: at most {gw.settings.max_messages}, got {len(req.messages)}", "messages")
    tel = chat_telemetry(headers, req.metadata, gw.telemetry_defaults, gw.class_deadlines_s,
                         estimate_prompt_tokens(data["messages"]))  # the validated messages, as they came
    header, key = TELEMETRY_INPUTS["request_id"]
    client_id = header in headers or (req.metadata is not None and key in req.metadata)  # else a fresh uuid4
    if client_id and gw.service.ledger.find_recorded([tel.request_id]) is not None:  # a primary-key lookup
        raise APIError(409, f"request_id {tel.request_id!r} is already in the ledger", "request_id")
    t0 = time.perf_counter()
    try:
        if gw.backend_inline:
            served = gw.service.decide_served(tel)
        else:
            served = await asyncio.to_thread(gw.service.decide_served, tel)
    except ServiceError as e:
        raise APIError(409, str(e), e.field) from None
    d = served.decision
    gw.metrics.count_decisions(1, int(d.fallback), d.actor_energy_j, time.perf_counter() - t0)
    body = dict(data)
    if req.metadata is not None:  # telemetry keys stay here; an emptied metadata is dropped
        rest = {k: v for k, v in req.metadata.items() if not k.startswith("aolo_")}
        if rest:
            body["metadata"] = rest
        else:
            body.pop("metadata")
    body = apply_directive(body, gw.settings.directives.level(d.level))
    return body, served


def _non_finite(obj: Any, path: str = "") -> Optional[str]:
    """The path of the first NaN or infinite number anywhere in a JSON value (fields the gateway
    forwards without reading them included), or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "(root)"
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _non_finite(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _non_finite(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _meter_key(served: Served) -> str:
    """The meter's key of one forwarded request (unique while it is in flight, whatever its id)."""
    return f"{served.decision.request_id}#{id(served)}"


def _measure_start(gw: Any, served: Served) -> None:
    if gw.llm_meter is not None:
        gw.llm_meter.start(_meter_key(served))


def _measure_stop(gw: Any, served: Served) -> None:
    """Stop measuring a request that will not be billed (idempotent)."""
    if gw.llm_meter is not None:
        gw.llm_meter.cancel(_meter_key(served))


def _bill(gw: Any, served: Served, prompt_tokens: int, output_tokens: int, source: str, payload_bytes: int,
          upstream_s: float) -> tuple[LedgerRow, LedgerWrite]:
    """Price the answer and queue its ledger row; with a meter, its LLM energy is its measured
    share of the upstream GPUs' energy (:mod:`aolo.runtime.llm_energy`). The caller builds its
    answer while the writer commits, then waits in :func:`_settle` before sending it.

    :raises APIError: 503 the ledger cannot write
    """
    measured_j = None
    if gw.llm_meter is not None:
        try:
            measured_j = gw.llm_meter.finish(_meter_key(served), output_tokens).energy_j
        except KeyError:  # never started (the meter came later): modelled
            measured_j = None
        except Exception as e:  # a counter that stopped answering (a lost GPU): modelled, and logged
            log.warning("LLM energy counter failed, this answer's LLM energy is modelled: %s", e)
    row = gw.service.served_row(served, prompt_tokens, output_tokens, source, payload_bytes, upstream_s,
                                inference_energy_j=measured_j)
    try:
        write = gw.service.record_served_begin(row)
    except LedgerError as e:
        raise APIError(503, f"ledger: {e}") from None
    return row, write


async def _settle(gw: Any, row: LedgerRow, write: LedgerWrite) -> None:
    """Wait until the row of :func:`_bill` is committed.

    :raises APIError: 409 the id reached the ledger meanwhile, 503 the ledger cannot write
    """
    await committed(write)
    if isinstance(write.error, DuplicateRequestError):
        raise APIError(409, str(write.error), "request_id")
    if write.error is not None:
        log.error("ledger write failed: %s", write.error)
        raise APIError(503, f"ledger: {write.error}")
    gw.metrics.count_row(row)
    gw.metrics.output_tokens.labels(row.level).inc(row.output_tokens)


def _content_bytes(text: Any) -> int:
    return len(text.encode()) if isinstance(text, str) else 0


async def chat_completions(gw: Any, raw: bytes, headers: Headers) -> Response:
    """``POST /v1/chat/completions`` (lean): decide, apply the directive, forward, price, record;
    see the module docstring."""
    body, served = await _decide(gw, raw, headers)
    if body.get("stream"):
        return await _stream(gw, body, served)
    _measure_start(gw, served)
    try:
        return await _plain(gw, body, served)
    finally:
        _measure_stop(gw, served)  # billed answers were finished in _bill; this ends the others


async def _plain(gw: Any, body: dict[str, Any], served: Served) -> Response:
    content = json_bytes(body)
    t0 = time.perf_counter()  # the upstream's time: from sending the request to its answer's last byte
    try:
        resp = await gw.upstream.send("POST", "chat/completions", content)
        await resp.aread()
    except httpx.HTTPError as e:
        raise _transport_fault(gw, e) from None
    upstream_s = time.perf_counter() - t0
    gw.metrics.upstream_latency.observe(upstream_s)
    if resp.status_code >= 500:
        raise _upstream_fault(gw, "status_5xx", 502, f"HTTP {resp.status_code}: {resp.text[:200]}")
    if resp.status_code >= 400:  # the client's mistake as the upstream sees it: passed through, unbilled
        return Response(resp.content, status_code=resp.status_code,
                        media_type=resp.headers.get("content-type", "application/json"))
    try:
        answer = resp.json()
        choices = answer["choices"]
        payload_bytes = sum(_content_bytes(c["message"].get("content")) for c in choices)
        usage = answer.get("usage") or {}
        output_tokens = int(usage["completion_tokens"]) if "completion_tokens" in usage else None
        prompt_tokens = int(usage.get("prompt_tokens") or served.telemetry.prompt_tokens)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _upstream_fault(gw, "malformed", 502, f"not a chat completion ({type(e).__name__}: {e})") from None
    source = "usage"
    if output_tokens is None:  # no usage: estimate from the text, and say so
        output_tokens, source = max(0, round(payload_bytes / 4.0)), "estimated_chars"
    row, write = _bill(gw, served, prompt_tokens, output_tokens, source, payload_bytes, upstream_s)
    headers = {**_decision_headers(served), "X-Aolo-Carbon-G": f"{row.total_g:.6g}",
               "X-Aolo-Carbon-Kinds": _kinds_header(row)}
    response = Response(_with_aolo(resp.content, answer, aolo_summary(row)), media_type="application/json",
                        headers=headers)
    await _settle(gw, row, write)  # nothing is sent before the row is committed
    gw.metrics.proxied.labels(row.level, "false").inc()
    return response


def _with_aolo(content: bytes, answer: dict[str, Any], summary: dict[str, Any]) -> bytes:
    """The upstream's answer with the ``aolo`` object added: spliced in before the closing brace of
    the bytes as they came (the answer is not serialised again), unless the upstream already sent
    an ``aolo`` key (then it is replaced, and the answer re-serialised)."""
    tail = content.rstrip()
    if "aolo" in answer or not tail.endswith(b"}"):
        return json.dumps({**answer, "aolo": summary}, separators=(",", ":")).encode()
    return tail[:-1] + b',"aolo":' + json.dumps(summary, separators=(",", ":")).encode() + b"}"


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _stream(gw: Any, body: dict[str, Any], served: Served) -> Response:
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
    content = json_bytes(body)
    t0 = time.perf_counter()
    _measure_start(gw, served)
    try:
        resp = await gw.upstream.send("POST", "chat/completions", content)
    except httpx.HTTPError as e:
        _measure_stop(gw, served)
        raise _transport_fault(gw, e) from None
    if resp.status_code >= 400:
        _measure_stop(gw, served)
        try:
            content = await resp.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await resp.aclose()
        if resp.status_code >= 500:
            raise _upstream_fault(gw, "status_5xx", 502, f"HTTP {resp.status_code}: {content[:200]!r}")
        return Response(content, status_code=resp.status_code,
                        media_type=resp.headers.get("content-type", "application/json"))

    async def events() -> AsyncIterator[bytes]:
        usage: Optional[dict[str, Any]] = None
        chunks = payload_bytes = 0
        last: dict[str, Any] = {}
        done = False
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise _StreamFault("malformed", f"a chunk is not JSON: {data[:80]!r}") from None
                if not isinstance(chunk, dict):
                    raise _StreamFault("malformed", f"a chunk is not an object: {data[:80]!r}")
                if "error" in chunk:
                    raise _StreamFault("status_5xx", f"the upstream sent an error: {str(chunk['error'])[:200]}")
                last = chunk
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        chunks += 1
                        payload_bytes += _content_bytes(text)
                        if gw.llm_meter is not None:
                            gw.llm_meter.tokens(_meter_key(served))
                if chunk.get("choices") or client_wants_usage:
                    yield b"data: " + data.encode() + b"\n\n"
            if not done:
                raise _StreamFault("stream_broken", "the stream ended before [DONE]")
            upstream_s = time.perf_counter() - t0
            gw.metrics.upstream_latency.observe(upstream_s)
            if usage is not None and "completion_tokens" in usage:
                tokens, source = int(usage["completion_tokens"]), "usage"
                prompt = int(usage.get("prompt_tokens") or served.telemetry.prompt_tokens)
            else:
                tokens, source, prompt = chunks, "counted_chunks", served.telemetry.prompt_tokens
            try:
                row, write = _bill(gw, served, prompt, tokens, source, payload_bytes, upstream_s)
                final = _sse({"id": last.get("id"), "object": "chat.completion.chunk", "created": last.get("created"),
                              "model": last.get("model"), "choices": [], "aolo": aolo_summary(row)})
                await _settle(gw, row, write)
            except APIError as e:
                yield _sse(openai_error_body(e.status, e.message, e.field, e.code))
                return
            gw.metrics.proxied.labels(row.level, "true").inc()
            yield final
            yield b"data: [DONE]\n\n"
        except _StreamFault as e:
            gw.metrics.upstream_errors.labels(e.kind).inc()
            log.warning("upstream %s mid-stream: %s", e.kind, e)
            yield _sse(openai_error_body(502, f"upstream: {e}", None, f"upstream_{e.kind}"))
        except httpx.HTTPError as e:
            fault = _transport_fault(gw, e)
            yield _sse(openai_error_body(fault.status, fault.message, None, fault.code))
        finally:
            _measure_stop(gw, served)  # a stream that failed or whose client left is not billed
            await resp.aclose()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**_decision_headers(served), "Cache-Control": "no-cache"})


class _StreamFault(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@router.get("/v1/models", dependencies=[Security(require_scopes, scopes=["serve"])])
async def models(request: Request) -> Response:
    """The upstream's model list, as it is."""
    gw = request.app.state.gateway
    try:
        resp = await _upstream(gw).send("GET", "models")
        await resp.aread()
    except httpx.HTTPError as e:
        raise _transport_fault(gw, e) from None
    if resp.status_code >= 500:
        raise _upstream_fault(gw, "status_5xx", 502, f"HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        resp.json()
    except ValueError:
        raise _upstream_fault(gw, "malformed", 502, "the model list is not JSON") from None
    return Response(resp.content, status_code=resp.status_code, media_type="application/json")


ROUTES = (LeanRoute("/v1/chat/completions", "POST", ("serve",), chat_completions),)
