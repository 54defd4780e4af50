"""The OpenAI-compatible proxy in front of a real LLM (llama.cpp's server with SmolLM2-135M-Instruct,
the session's ``llm`` fixture) and in front of real HTTP servers that misbehave the ways upstreams do.

Answers are kept short (small ``max_tokens``, temperature 0): the model answers at about 50
tokens/s on one thread.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from aolo.gateway_demo import constant_bundle
from aolo.llm_server import llama_server

from test_gateway_sidecar import Client, running_gateway, sample_value, samples

PROMPTS = ("Explain why the sky is blue.", "Describe the water cycle.", "Give three tips for staying healthy.",
           "What is photosynthesis?")


def chat(content: str = "What is 2 + 2?", max_tokens: int = 8, **kw: Any) -> dict[str, Any]:
    return {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": content}], "temperature": 0,
            "max_tokens": max_tokens, **kw}


def sse_events(text: str) -> list[Any]:
    """The data of each SSE event ("[DONE]" kept as a string)."""
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {f"L{i}": constant_bundle(root / f"l{i}", level_index=i) for i in range(3)}


@pytest.fixture(scope="module")
def l2_gateway(bundles, llm, tmp_path_factory):
    with running_gateway(bundles["L2"], tmp_path_factory.mktemp("l2") / "l.db", upstream_url=llm.url) as s:
        yield s


# ---------------------------------------------------------------------------------------------
# against the real LLM
# ---------------------------------------------------------------------------------------------


def test_the_l2_directive_shortens_real_answers(bundles, llm, l2_gateway, tmp_path):
    with running_gateway(bundles["L0"], tmp_path / "l0.db", upstream_url=llm.url) as l0:
        def tokens(port: int) -> list[int]:
            c = Client(port, timeout_s=120)
            out = []
            for p in PROMPTS:
                status, answer, resp = c.request("POST", "/v1/chat/completions", chat(p, max_tokens=64))
                assert status == 200, answer
                out.append(answer["usage"]["completion_tokens"])
                assert answer["aolo"]["output_tokens"] == out[-1]
            return out

        long, short = tokens(l0.port), tokens(l2_gateway.port)
    # L0 answers run into the 64-token cap; "Answer very briefly, in one sentence." stops well before
    assert sum(short) < 0.6 * sum(long), (short, long)


def test_a_plain_answer_carries_its_decision_and_carbon_in_headers_and_body(l2_gateway):
    status, answer, resp = Client(l2_gateway.port, timeout_s=60).request(
        "POST", "/v1/chat/completions", chat(), headers={"X-Aolo-Task-Class": "triviaqa", "X-Aolo-Gain-Db": "-110"})
    assert status == 200, answer
    a = answer["aolo"]
    assert answer["choices"][0]["message"]["content"] and answer["object"] == "chat.completion"
    assert (resp.getheader("X-Aolo-Level"), a["level"]) == ("L2", "L2")
    assert float(resp.getheader("X-Aolo-Carbon-G")) == pytest.approx(a["carbon_g"], rel=1e-5)
    assert resp.getheader("X-Aolo-Carbon-Kinds") == "inference=modelled,radio=modelled,actor=estimated,embodied=modelled"
    assert a["carbon_g"] == pytest.approx(sum(p["g"] for p in a["breakdown"].values()))
    assert {k: v["kind"] for k, v in a["breakdown"].items()} == {
        "inference": "modelled", "radio": "modelled", "actor": "estimated", "embodied_gpu": "modelled",
        "embodied_bs": "modelled"}
    row = l2_gateway.service.ledger.get(a["request_id"])
    assert (row.served_via, row.output_tokens_source, row.task_class, row.quality_source) == (
        "proxy", "usage", "triviaqa", "expected")
    assert row.output_tokens == answer["usage"]["completion_tokens"] and row.total_g == a["carbon_g"]
    assert row.prompt_tokens == answer["usage"]["prompt_tokens"] and row.upstream_latency_s > 0


def test_a_streamed_answer_ends_with_its_carbon_before_done(l2_gateway):
    status, text, resp = Client(l2_gateway.port, timeout_s=60).request(
        "POST", "/v1/chat/completions", chat(stream=True), headers={"X-Aolo-Request-Id": "streamed-1"})
    assert status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    final = events[-2]
    assert final["choices"] == [] and final["aolo"]["request_id"] == "streamed-1"
    streamed = "".join((c["choices"][0]["delta"].get("content") or "") for c in events[:-2] if c["choices"])
    assert streamed and not any("usage" in e for e in events[:-2] if isinstance(e, dict) and not e["choices"])
    row = l2_gateway.service.ledger.get("streamed-1")
    assert row.total_g == final["aolo"]["carbon_g"] and resp.getheader("X-Aolo-Level") == "L2"
    # llama-cpp-python's server sends no usage on streams, even asked: the gateway counts content chunks
    content_chunks = sum(1 for c in events[:-2] if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert (row.output_tokens_source, row.output_tokens) == ("counted_chunks", content_chunks)


def test_the_ledger_total_equals_the_sum_returned_to_clients(bundles, llm, tmp_path):
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=llm.url) as s:
        c = Client(s.port, timeout_s=60)
        returned = []
        for i, stream in enumerate((False, True, False, True)):
            status, body, _ = c.request("POST", "/v1/chat/completions", chat(PROMPTS[i], max_tokens=6, stream=stream))
            assert status == 200
            returned.append(sse_events(body)[-2]["aolo"]["carbon_g"] if stream else body["aolo"]["carbon_g"])
        totals = c.get("/v1/carbon")[1]
        assert totals["count"] == 4 and totals["by_level"] == {"L1": 4}
        assert totals["total_g"] == pytest.approx(sum(returned), rel=1e-12)
        by_kind = samples(c.get("/metrics")[1], "aolo_carbon_grams_total")
        assert sum(v for _, v in by_kind) == pytest.approx(sum(returned))
        assert {lab["kind"] for lab, _ in by_kind} <= {"measured", "modelled", "estimated"}


class WallClockGpu:
    """Stands in for NVML on a machine without a GPU: a constant draw over the wall clock."""

    name, domain, where = "fake:gpu0", "gpu", "constant 150 W"
    power_w = 150.0

    def read_j(self) -> float:
        return self.power_w * time.monotonic()


def test_with_a_gpu_counter_the_llm_energy_is_measured_over_each_answer(bundles, llm, tmp_path):
    from aolo.runtime.llm_energy import TokenShareMeter

    meter = TokenShareMeter([WallClockGpu()])
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=llm.url, llm_meter=meter) as s:
        c = Client(s.port, timeout_s=60)
        assert c.get("/healthz")[1]["llm_energy"] == "measured: fake:gpu0"
        status, answer, resp = c.request("POST", "/v1/chat/completions", chat(max_tokens=6))
        assert status == 200
        assert resp.getheader("X-Aolo-Carbon-Kinds").startswith("inference=measured,")
        row = s.service.ledger.get(answer["aolo"]["request_id"])
        # alone in flight: the whole draw of its window, which the upstream call lies within
        assert row.inference_kind == "measured" and answer["aolo"]["breakdown"]["inference"]["kind"] == "measured"
        assert row.inference_energy_j >= 150.0 * row.upstream_latency_s * 0.999
        assert row.inference_energy_j <= 150.0 * (row.upstream_latency_s + 0.5)
        status, text, _ = c.request("POST", "/v1/chat/completions", chat(max_tokens=6, stream=True))
        streamed = s.service.ledger.get(sse_events(text)[-2]["aolo"]["request_id"])
        assert streamed.inference_kind == "measured" and streamed.inference_energy_j > 0
        energy = {(lab["part"], lab["kind"]): v for lab, v in samples(c.get("/metrics")[1], "aolo_energy_joules_total")}
        assert energy[("inference", "measured")] == pytest.approx(row.inference_energy_j + streamed.inference_energy_j)
        assert ("inference", "modelled") not in energy and meter.in_flight == 0


def test_eight_concurrent_clients_are_all_served_and_recorded(l2_gateway):
    before = l2_gateway.service.ledger.count()

    def one(i: int) -> tuple[int, str]:
        status, answer, _ = Client(l2_gateway.port, timeout_s=120).request(
            "POST", "/v1/chat/completions", chat(f"Name a colour number {i}.", max_tokens=4, stream=i % 2 == 1))
        rid = sse_events(answer)[-2]["aolo"]["request_id"] if i % 2 else answer["aolo"]["request_id"]
        return status, rid

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert [s for s, _ in results] == [200] * 8 and len({r for _, r in results}) == 8
    assert l2_gateway.service.ledger.count() == before + 8


def test_models_are_listed_from_the_upstream(l2_gateway, llm):
    status, data = Client(l2_gateway.port).get("/v1/models")
    assert status == 200 and [m["id"] for m in data["data"]] == [llm.model]


def test_a_serve_token_reaches_the_llm_and_a_read_token_does_not(bundles, llm, tmp_path):
    import hashlib

    tokens = tmp_path / "tokens.toml"
    tokens.write_text("".join(f'[[tokens]]\nname = "{n}"\nsha256 = "{hashlib.sha256(n.encode()).hexdigest()}"\n'
                              f'scopes = ["{n}"]\n' for n in ("serve", "read")))
    with running_gateway(bundles["L2"], tmp_path / "l.db", upstream_url=llm.url, tokens_file=tokens) as s:
        assert Client(s.port, timeout_s=60, token="serve").post("/v1/chat/completions", chat(max_tokens=2))[0] == 200
        assert Client(s.port, token="read").post("/v1/chat/completions", chat())[0] == 403
        assert Client(s.port).post("/v1/chat/completions", chat())[0] == 401
        assert Client(s.port, token="read").get("/v1/carbon")[1]["count"] == 1


BAD_CHAT = [
    ("no messages", {"model": "m", "messages": []}, {}, 422, "messages"),
    ("bad role", chat() | {"messages": [{"role": "wizard", "content": "hi"}]}, {}, 422, "messages[0].role"),
    ("huge max_tokens", chat(max_tokens=10 ** 30), {}, 422, "max_tokens"),
    ("two answers", chat(n=2), {}, 422, "n"),
    ("stream not a bool", chat(stream="yes"), {}, 422, "stream"),
    ("NaN temperature", None, {}, 422, "temperature"),
    ("bad class header", chat(), {"X-Aolo-Task-Class": "poetry"}, 422, "X-Aolo-Task-Class"),
    ("gain not a number", chat(), {"X-Aolo-Gain-Db": "loud"}, 422, "X-Aolo-Gain-Db"),
    ("huge gain", chat(), {"X-Aolo-Gain-Db": "-1e308"}, 422, "X-Aolo-Gain-Db"),
    ("NaN gain", chat(), {"X-Aolo-Gain-Db": "nan"}, 422, "X-Aolo-Gain-Db"),
    ("huge sessions", chat(), {"X-Aolo-Active-Sessions": "1" + "0" * 30}, 422, "X-Aolo-Active-Sessions"),
    ("bad metadata class", chat(metadata={"aolo_task_class": "poetry"}), {}, 422, "metadata.aolo_task_class"),
    ("long request id", chat(), {"X-Aolo-Request-Id": "x" * 200}, 422, "X-Aolo-Request-Id"),
    ("not an object", [1, 2], {}, 422, "(root)"),
]


@pytest.mark.parametrize("case,body,headers,status,field", BAD_CHAT, ids=[c[0] for c in BAD_CHAT])
def test_bad_chat_requests_get_an_openai_style_4xx_naming_the_field(l2_gateway, case, body, headers, status, field):
    before = l2_gateway.service.ledger.count()
    raw = (json.dumps(body) if body is not None else json.dumps(chat()).replace('"temperature": 0', '"temperature": NaN'))
    got, data, _ = Client(l2_gateway.port).request("POST", "/v1/chat/completions", raw=raw.encode(), headers=headers)
    assert got == status and data["error"]["param"] == field, data
    assert data["error"]["type"] == "invalid_request_error" and data["error"]["message"].startswith(field)
    assert l2_gateway.service.ledger.count() == before


def test_a_request_id_already_in_the_ledger_is_a_409(l2_gateway):
    c = Client(l2_gateway.port, timeout_s=60)
    assert c.request("POST", "/v1/chat/completions", chat(max_tokens=2), headers={"X-Aolo-Request-Id": "once"})[0] == 200
    status, data, _ = c.request("POST", "/v1/chat/completions", chat(), headers={"X-Aolo-Request-Id": "once"})
    assert status == 409 and data["error"]["param"] == "request_id"
    status, data, _ = c.request("POST", "/v1/chat/completions", {**chat(), "metadata": {"aolo_request_id": "once"}})
    assert status == 409 and data["error"]["param"] == "request_id"  # the id from metadata is looked up too


def test_feedback_replaces_the_expected_quality(l2_gateway):
    c = Client(l2_gateway.port, timeout_s=60)
    status, answer, _ = c.request("POST", "/v1/chat/completions", chat(max_tokens=2))
    rid = answer["aolo"]["request_id"]
    assert answer["aolo"]["quality_source"] == "expected"
    assert c.post("/v1/feedback", {"request_id": rid, "quality": 0.25}) == (
        200, {"request_id": rid, "quality": 0.25, "quality_source": "feedback"})
    row = l2_gateway.service.ledger.get(rid)
    assert (row.quality, row.quality_source) == (0.25, "feedback")
    assert c.post("/v1/feedback", {"request_id": "nobody", "quality": 1.0})[0] == 404
    assert c.post("/v1/feedback", {"request_id": rid, "quality": 2.0})[1]["field"] == "quality"


def test_the_upstream_killed_mid_stream_gives_an_sse_error_and_no_served_row(bundles, tmp_path):
    with llama_server() as dying, running_gateway(bundles["L0"], tmp_path / "l.db", upstream_url=dying.url) as s:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        body = json.dumps(chat("Write a long story about a dragon.", max_tokens=400, stream=True)).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while got.count(b"data: ") < 3:  # the answer is under way
            got += sock.recv(65536)
        dying.process.kill()
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            got += chunk
            if got.endswith(b"0\r\n\r\n"):
                break
        sock.close()
        text = got.decode(errors="replace")
        assert '"error"' in text and "[DONE]" not in text and '"aolo"' not in text
        assert s.service.ledger.count() == 0
        metrics = Client(s.port).get("/metrics")[1]
        assert sample_value(metrics, "aolo_upstream_errors_total", kind="stream_broken") == 1


# ---------------------------------------------------------------------------------------------
# upstreams that misbehave (real HTTP servers on loopback)
# ---------------------------------------------------------------------------------------------


def plain_answer(with_aolo: bool) -> bytes:
    """A chat completion as an upstream may write it: its own spacing, a trailing newline, fields
    the gateway does not read, and (``with_aolo``) an ``aolo`` key of its own."""
    extra = ', "aolo": {"from": "upstream"}' if with_aolo else ""
    return (b'{ "id": "u1", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": "fp_1",\n'
            b'  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],\n'
            b'  "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}' + extra.encode() + b" }\n")


class FaultyUpstream(ThreadingHTTPServer):
    """An HTTP server that answers every request in one faulty way: ``status_500``, ``malformed``
    (200 with a body that is not JSON), ``hang`` (sleeps past the gateway's timeout),
    ``bad_chunk`` (a stream whose second chunk is not JSON), ``no_usage`` (a good stream without
    usage, three content chunks); or with a good plain answer (``plain``, ``plain_with_aolo``:
    :func:`plain_answer`)."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        super().__init__(("127.0.0.1", 0), _FaultyHandler)


class _FaultyHandler(BaseHTTPRequestHandler):
    server: FaultyUpstream

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode
        if mode == "hang":
            time.sleep(3)
        if mode == "status_500":
            self._send(500, b'{"error": "out of memory"}')
        elif mode in ("malformed", "hang"):
            self._send(200, b"<html>not json</html>")
        elif mode in ("plain", "plain_with_aolo"):
            self._send(200, plain_answer(mode == "plain_with_aolo"))
        elif mode in ("bad_chunk", "no_usage"):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
            events = [chunk, "{not json" if mode == "bad_chunk" else chunk, chunk]
            body = b"".join(b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
                            for e in events) + b"data: [DONE]\n\n"
            self._send(200, body, "text/event-stream")

    def do_GET(self) -> None:
        self._send(500 if self.server.mode == "status_500" else 200, b"nope")

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def faulty() -> Iterator:
    servers = []

    def start(mode: str) -> str:
        srv = FaultyUpstream(mode)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("mode,stream,status,kind", [
    ("refused", False, 502, "refused"), ("refused", True, 502, "refused"),
    ("hang", False, 504, "timeout"), ("status_500", False, 502, "status_5xx"), ("status_500", True, 502, "status_5xx"),
    ("malformed", False, 502, "malformed"),
])
def test_upstream_faults_are_openai_errors_unbilled_and_counted(bundles, faulty, tmp_path, mode, stream, status, kind):
    url = _closed_port_url() if mode == "refused" else faulty(mode)
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=url, upstream_read_timeout_s=1.0) as s:
        c = Client(s.port, timeout_s=30)
        t0 = time.monotonic()
        got, data, _ = c.request("POST", "/v1/chat/completions", chat(stream=stream))
        assert got == status and data["error"]["code"] == f"upstream_{kind}", data
        assert data["error"]["type"] in ("upstream_error", "upstream_timeout_error")
        assert time.monotonic() - t0 < 10
        assert s.service.ledger.count() == 0
        assert sample_value(c.get("/metrics")[1], "aolo_upstream_errors_total", kind=kind) == 1


def test_a_malformed_stream_chunk_ends_the_stream_with_an_error_event(bundles, faulty, tmp_path):
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=faulty("bad_chunk")) as s:
        status, text, _ = Client(s.port).request("POST", "/v1/chat/completions", chat(stream=True))
        events = sse_events(text)
        assert status == 200 and events[-1]["error"]["code"] == "upstream_malformed" and "[DONE]" not in events
        assert s.service.ledger.count() == 0


def test_a_stream_without_usage_is_billed_by_its_counted_chunks(bundles, faulty, tmp_path):
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=faulty("no_usage")) as s:
        status, text, _ = Client(s.port).request("POST", "/v1/chat/completions", chat(stream=True))
        final = sse_events(text)[-2]["aolo"]
        assert (final["output_tokens"], final["output_tokens_source"]) == (3, "counted_chunks")
        assert s.service.ledger.get(final["request_id"]).output_tokens_source == "counted_chunks"


@pytest.mark.parametrize("mode", ["plain", "plain_with_aolo"])
def test_a_plain_answer_keeps_the_upstreams_bytes_and_gets_one_aolo_object(bundles, faulty, tmp_path, mode):
    with running_gateway(bundles["L1"], tmp_path / "l.db", upstream_url=faulty(mode)) as s:
        c = Client(s.port)
        c.conn.request("POST", "/v1/chat/completions", body=json.dumps(chat()).encode(),
                       headers={"Content-Type": "application/json"})
        resp = c.conn.getresponse()
        raw = resp.read()
    assert resp.status == 200
    answer = json.loads(raw)
    upstream = json.loads(plain_answer(mode == "plain_with_aolo"))
    assert raw.count(b'"aolo"') == 1 and answer["aolo"]["output_tokens"] == 3 and "request_id" in answer["aolo"]
    assert {k: v for k, v in answer.items() if k != "aolo"} == {k: v for k, v in upstream.items() if k != "aolo"}
    if mode == "plain":  # spliced into the bytes as they came, not serialised again
        assert raw.startswith(plain_answer(False).rstrip()[:-1])


def test_without_an_upstream_the_proxy_routes_answer_503(bundles, tmp_path):
    with running_gateway(bundles["L1"], tmp_path / "l.db") as s:
        status, data = Client(s.port).post("/v1/chat/completions", chat())
        assert status == 503 and data["error"]["code"] == "no_upstream"


def test_kill_9_under_chat_load_loses_no_acknowledged_row(bundles, llm, tmp_path):
    """``aolo serve --upstream`` in its own process, four clients chatting; SIGKILL mid-load: every
    answer a client received (its ledger row was committed before the answer ended) is in the file."""
    import os
    import signal
    import sqlite3

    from test_ledger_durability import _start_server

    db = tmp_path / "ledger.db"
    proc, port = _start_server(bundles["L2"], db, "--upstream", llm.url)
    acked: list[str] = []
    lock, stop = threading.Lock(), threading.Event()

    def load(t: int) -> None:
        c = Client(port, timeout_s=30)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                status, answer, _ = c.request("POST", "/v1/chat/completions", chat(f"Say {t}-{i}.", max_tokens=2,
                                                                                 stream=i % 2 == 0))
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server is gone
            if status != 200:
                continue
            if isinstance(answer, str):  # a stream: acknowledged only if it ended with [DONE]
                events = sse_events(answer)
                if events and events[-1] == "[DONE]":
                    with lock:
                        acked.append(events[-2]["aolo"]["request_id"])
            else:
                with lock:
                    acked.append(answer["aolo"]["request_id"])

    threads = [threading.Thread(target=load, args=(t,), daemon=True) for t in range(4)]
    try:
        for th in threads:
            th.start()
        deadline = time.monotonic() + 120
        while len(acked) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked) >= 12, "the load did not get going"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests WHERE served_via = 'proxy'")}
    finally:
        conn.close()
    assert not set(acked) - stored, f"acknowledged answers missing from the ledger: {sorted(set(acked) - stored)[:3]}"
