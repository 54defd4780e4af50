"""The gateway's sidecar routes on a real uvicorn server on 127.0.0.1: decide, outcome, carbon,
health and metrics, validation, limits, concurrency.

:func:`running_gateway`, :class:`Client`, :func:`telemetry` and :func:`outcome` are shared with
the other gateway tests and test_ledger_durability.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest

from aolo.runtime.actor_spec import ActorSpec, Linear, Tanh
from aolo.runtime.gateway import Gateway, GatewaySettings, create_app
from aolo.runtime.gateway.serve import running
from aolo.runtime.policy_io import OBS_DIM, OBS_FIELDS

from test_bundle import make_bundle, random_ann_spec


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


class Client:
    """A keep-alive JSON client (stdlib http.client) for one server.

    :param token: bearer token sent with every request (None: none)
    """

    def __init__(self, port: int, timeout_s: float = 10.0, token: Optional[str] = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        self.token = token

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            self.conn.request(method, path, body=data, headers={"Content-Type": "application/json", **auth,
                                                                **(headers or {})})
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server may answer (413) and close before a large body is sent; its answer is read below
        resp = self.conn.getresponse()
        payload = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(payload) if ctype.startswith("application/json") else payload.decode()), resp

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        status, data, _ = self.request("POST", path, body)
        return status, data

    def get(self, path: str) -> tuple[int, Any]:
        status, data, _ = self.request("GET", path)
        return status, data

    def close(self) -> None:
        self.conn.close()


def telemetry(request_id: str = "r1", **kw: Any) -> dict[str, Any]:
    body = {"request_id": request_id, "timestamp_utc": "2024-06-01T18:05:00Z", "task_class": "math",
            "prompt_tokens": 64, "deadline_s": 12.0, "gain_db": -105.0, "active_sessions": 6}
    body.update(kw)
    return body


def outcome(request_id: str = "r1", **kw: Any) -> dict[str, Any]:
    body = {"request_id": request_id, "output_tokens": 180, "airtime_s": 0.02, "harq_tries": 1, "outage": False}
    body.update(kw)
    return body


@dataclass
class RunningGateway:
    """A gateway served on loopback: its port and the objects behind it."""

    port: int
    gateway: Gateway

    @property
    def service(self):
        return self.gateway.service

    @property
    def metrics(self):
        return self.gateway.metrics


@contextlib.contextmanager
def running_gateway(bundle_path: Path, ledger_path: Path, backend: str = "reference", llm_meter: Any = None,
                    **settings: Any) -> Iterator[RunningGateway]:
    """A real gateway (uvicorn, in a background thread) on an ephemeral loopback port."""
    cfg = GatewaySettings(bundle=bundle_path, ledger=ledger_path, backend=backend, port=0, **settings)
    holder: list[Gateway] = []
    app = create_app(cfg, on_ready=holder.append, llm_meter=llm_meter)
    with running(app, cfg) as port:
        yield RunningGateway(port, holder[0])


def sample_value(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` in Prometheus text (prometheus_client's parser).

    :raises KeyError: no such sample
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise KeyError(f"{name}{labels}")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample ``name`` in Prometheus text, with its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(dict(s.labels), float(s.value)) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"), random_ann_spec(seed=8))


@pytest.fixture()
def server(bundle_path, tmp_path) -> Iterator[RunningGateway]:
    with running_gateway(bundle_path, tmp_path / "ledger.db", max_batch=64) as s:
        yield s


@pytest.fixture()
def client(server) -> Iterator[Client]:
    c = Client(server.port)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------
# valid calls
# ---------------------------------------------------------------------------------------------


def test_decide_answers_one_request_with_a_level_and_a_power(client):
    status, d = client.post("/v1/decide", telemetry())
    assert status == 200
    assert d["request_id"] == "r1" and d["level"] in ("L0", "L1", "L2") and d["level"] == f"L{d['level_index']}"
    assert 0.2 <= d["tx_power_w"] <= 20.0
    assert (d["backend"], d["precision"], d["fallback"], d["max_new_tokens"]) == ("reference", "float", False, None)
    assert d["actor_energy_j"] > 0  # charged on the server CPU's profile, as aolo serve does


def test_decide_answers_a_batch_in_order(client):
    status, data = client.post("/v1/decide", {"requests": [telemetry(f"b{i}", gain_db=-70.0 - 4 * i)
                                                          for i in range(10)]})
    assert status == 200
    assert [d["request_id"] for d in data["decisions"]] == [f"b{i}" for i in range(10)]


def test_outcome_is_committed_and_returned_with_its_carbon(client, server):
    client.post("/v1/decide", telemetry())
    status, row = client.post("/v1/outcome", outcome(quality=1.0, quality_base=1.0))
    assert status == 200
    parts = ("inference_g", "radio_g", "actor_g", "embodied_gpu_g", "embodied_bs_g")
    assert row["total_g"] == pytest.approx(sum(row[p] for p in parts)) and row["total_g"] > 0
    assert server.service.ledger.get("r1").to_dict() == row


def test_a_reported_inference_energy_is_labelled_as_its_reporter_says(client, server):
    for rid, kind in (("m1", None), ("m2", "modelled"), ("m3", "measured")):
        client.post("/v1/decide", telemetry(rid))
        extra = {} if kind is None else {"inference_energy_kind": kind}
        status, row = client.post("/v1/outcome", outcome(rid, inference_energy_j=500.0, **extra))
        assert status == 200 and row["inference_energy_j"] == 500.0
        assert (row["inference_kind"], row["radio_kind"], row["actor_kind"]) == (kind or "measured", "modelled",
                                                                                 "estimated")
    client.post("/v1/decide", telemetry("m4"))
    assert client.post("/v1/outcome", outcome("m4"))[1]["inference_kind"] == "modelled"  # none reported: the profile
    status, err = client.post("/v1/decide", telemetry("m5"))
    status, err = client.post("/v1/outcome", outcome("m5", inference_energy_j=1.0, inference_energy_kind="guessed"))
    assert status == 422 and "inference_energy_kind" in json.dumps(err)
    assert client.get("/v1/carbon")[1]["kinds"]["inference"] == {"measured": 2, "modelled": 2}


def test_carbon_totals_cover_the_requested_time_range(client):
    for i, ts in enumerate(["2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", "2024-06-01T12:00:00Z"]):
        client.post("/v1/decide", telemetry(f"c{i}", timestamp_utc=ts))
        client.post("/v1/outcome", outcome(f"c{i}"))
    status, everything = client.get("/v1/carbon")
    assert status == 200 and everything["count"] == 3
    status, part = client.get("/v1/carbon?from=2024-06-01T10:30:00Z&to=2024-06-01T12:00:00%2B00:00")
    assert status == 200 and part["count"] == 1  # [from, to): only 11:00
    assert part["from_utc"] == "2024-06-01T10:30:00.000000Z"
    assert part["total_g"] == pytest.approx(part["sum"]["total_g"])
    assert sum(part["breakdown_g"].values()) == pytest.approx(part["total_g"])
    assert sum(part["share_frac"].values()) == pytest.approx(1.0)
    # an unencoded '+' in the offset arrives as a space and still parses
    assert client.get("/v1/carbon?to=2024-06-01T11:30:00+00:00")[1]["count"] == 2


def test_healthz_reports_backend_and_bundle(client, server):
    status, h = client.get("/healthz")
    assert status == 200
    assert (h["status"], h["backend"], h["bundle_sha256"]) == ("ok", "reference", server.service.bundle.sha256)


def test_metrics_are_prometheus_text_with_the_service_series(client):
    client.post("/v1/decide", telemetry())
    client.post("/v1/outcome", outcome())
    client.get("/nope")
    status, text, resp = client.request("GET", "/metrics")
    assert status == 200 and resp.getheader("Content-Type").startswith("text/plain; version=")
    assert sample_value(text, "aolo_decisions_total", backend="reference", precision="float") == 1
    assert "# TYPE aolo_decision_latency_seconds histogram" in text.splitlines()
    assert sample_value(text, "aolo_decision_latency_seconds_bucket", le="+Inf") == 1
    assert sample_value(text, "aolo_decision_latency_seconds_count") == 1
    assert sample_value(text, "aolo_fallbacks_total") == 0
    # every energy and carbon series says its kind: the outcome reported no energy, so inference is
    # modelled (server profile), radio modelled (profile over the reported airtime), actor estimated
    carbon = {(lab["part"], lab["kind"]): v for lab, v in samples(text, "aolo_carbon_grams_total")}
    assert set(carbon) == {("inference", "modelled"), ("radio", "modelled"), ("actor", "estimated"),
                           ("embodied", "modelled")} and all(v > 0 for v in carbon.values())
    energy = {(lab["part"], lab["kind"]): v for lab, v in samples(text, "aolo_energy_joules_total")}
    assert set(energy) == {("inference", "modelled"), ("radio", "modelled"), ("actor", "estimated")}
    assert sample_value(text, "aolo_actor_energy_joules_total", kind="estimated") > 0
    assert sample_value(text, "aolo_http_requests_total", path="/v1/decide", code="200") == 1
    assert sample_value(text, "aolo_http_requests_total", path="other", code="404") == 1
    assert sample_value(text, "aolo_upstream_errors_total", kind="refused") == 0
    for line in text.splitlines():  # every sample line is "name{labels} value"
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            assert name.startswith("aolo_") and float(value) >= 0


def test_two_servers_in_one_process_keep_their_own_metrics(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "a.db") as a, running_gateway(bundle_path, tmp_path / "b.db") as b:
        Client(a.port).post("/v1/decide", telemetry())
        labels = {"backend": "reference", "precision": "float"}
        assert sample_value(Client(a.port).get("/metrics")[1], "aolo_decisions_total", **labels) == 1
        assert sample_value(Client(b.port).get("/metrics")[1], "aolo_decisions_total", **labels) == 0
        assert a.metrics.registry is not b.metrics.registry


def test_onnx_backend_serves_over_http(tmp_path):
    pytest.importorskip("onnx")
    path = make_bundle(tmp_path, random_ann_spec(seed=8), with_onnx=True)
    with running_gateway(path, tmp_path / "l.db", backend="onnx") as s:
        status, d = Client(s.port).post("/v1/decide", telemetry())
    assert status == 200 and d["backend"] == "onnx"


# ---------------------------------------------------------------------------------------------
# bad input: 4xx with {"error", "field"}
# ---------------------------------------------------------------------------------------------

BAD_DECIDE = [
    ("missing field", {k: v for k, v in telemetry().items() if k != "gain_db"}, 422, "gain_db"),
    ("wrong type", telemetry(prompt_tokens="many"), 422, "prompt_tokens"),
    ("float for an int", telemetry(prompt_tokens=64.5), 422, "prompt_tokens"),
    ("bool for a number", telemetry(deadline_s=True), 422, "deadline_s"),
    ("out of range", telemetry(deadline_s=-1.0), 422, "deadline_s"),
    ("zero prompt", telemetry(prompt_tokens=0), 422, "prompt_tokens"),
    ("negative sessions", telemetry(active_sessions=-2), 422, "active_sessions"),
    ("ci_norm above 1", telemetry(ci_norm=1.5), 422, "ci_norm"),
    ("unknown class", telemetry(task_class="poetry"), 422, "task_class"),
    ("unknown field", telemetry(gain_dB=-100.0), 422, "gain_dB"),
    ("no utc offset", telemetry(timestamp_utc="2024-06-01T18:05:00"), 422, "timestamp_utc"),
    ("not a time", telemetry(timestamp_utc="yesterday"), 422, "timestamp_utc"),
    ("empty request_id", telemetry(request_id=""), 422, "request_id"),
    ("not an object", [1, 2], 422, "(root)"),
    ("empty batch", {"requests": []}, 422, "requests"),
    ("batch over the limit", {"requests": [telemetry(f"x{i}") for i in range(65)]}, 422, "requests"),
    ("bad item in a batch", {"requests": [telemetry("a"), telemetry("b", gain_db="loud")]}, 422,
     "requests[1].gain_db"),
    ("extra key beside a batch", {"requests": [telemetry()], "mode": "fast"}, 422, "mode"),
]


@pytest.mark.parametrize("case,body,status,field", BAD_DECIDE, ids=[c[0] for c in BAD_DECIDE])
def test_bad_decide_body_is_refused_naming_the_field(client, case, body, status, field):
    got, data = client.post("/v1/decide", body)
    assert (got, data["field"]) == (status, field), data
    assert data["error"].startswith(field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["gain_db", "deadline_s", "ci_g_per_kwh"])
def test_nan_and_infinity_are_refused_naming_the_field(client, literal, field):
    raw = json.dumps(telemetry(**{field: float(literal)}))  # Python writes the NaN / Infinity literals
    assert literal in raw
    status, data, _ = client.request("POST", "/v1/decide", raw=raw.encode())
    assert (status, data["field"]) == (422, field), data
    assert "finite" in data["error"]


def test_nan_in_an_outcome_is_refused_naming_the_field(client):
    client.post("/v1/decide", telemetry())
    raw = json.dumps(outcome()).replace('"airtime_s": 0.02', '"airtime_s": NaN')
    status, data, _ = client.request("POST", "/v1/outcome", raw=raw.encode())
    assert (status, data["field"]) == (422, "airtime_s")


@pytest.mark.parametrize("raw", [b'{"request_id": "r1",', b"\xff\xfe", b"", b"[" * 100000])
def test_unreadable_json_is_a_400(client, raw):
    status, data, _ = client.request("POST", "/v1/decide", raw=raw)
    assert status == 400 and data["error"].startswith("body:"), data


def test_outcome_for_an_unknown_request_id_is_a_404_naming_it(client):
    status, data = client.post("/v1/outcome", outcome("never-decided"))
    assert (status, data["field"]) == (404, "request_id")
    assert "never-decided" in data["error"]


def test_outcome_with_a_bad_field_is_refused_naming_it(client):
    client.post("/v1/decide", telemetry())
    for body, field in [(outcome(harq_tries=-1), "harq_tries"), (outcome(outage="no"), "outage"),
                        (outcome(quality=0.5), "quality_base"), ({"request_id": "r1"}, "output_tokens")]:
        status, data = client.post("/v1/outcome", body)
        assert (status, data["field"]) == (422, field), data


def test_deciding_a_pending_request_id_again_is_a_409(client):
    client.post("/v1/decide", telemetry("twice"))
    status, data = client.post("/v1/decide", telemetry("twice"))
    assert (status, data["field"]) == (409, "request_id")


def test_body_over_the_limit_is_a_413_and_the_server_keeps_serving(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "l.db", max_body_bytes=1024) as s:
        big = Client(s.port)
        status, data, resp = big.request("POST", "/v1/decide", raw=b" " * 2048)
        assert (status, data["field"]) == (413, "body") and resp.getheader("Connection") == "close"
        assert Client(s.port).post("/v1/decide", telemetry())[0] == 200


def test_default_body_limit_is_one_mebibyte(server):
    """A declared Content-Length one byte over 1 MiB is refused before the body is read."""
    for size, expected in (((1 << 20) + 1, 413), (1 << 20, None)):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", "/v1/decide")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        if expected is None:  # exactly 1 MiB is read and judged on its content (not JSON here: 4xx, not 413)
            conn.send(b" " * size)
        resp = conn.getresponse()
        assert resp.status == expected if expected else 400 <= resp.status < 500 and resp.status != 413
        conn.close()


def test_a_client_that_sends_a_whole_oversized_body_reads_the_413(client):
    """The server drains what it refused before closing, so the client gets the 413, not a reset."""
    status, _, _ = client.request("POST", "/v1/decide", raw=b"{" + b" " * (1 << 20) + b"}")
    assert status == 413


def test_unknown_path_is_a_404(client):
    status, data = client.get("/v2/decide")
    assert status == 404 and data["field"] is None


@pytest.mark.parametrize("method,path", [("GET", "/v1/decide"), ("POST", "/metrics"), ("DELETE", "/v1/outcome")])
def test_wrong_method_is_a_405_with_allow(client, method, path):
    status, data, resp = client.request(method, path, body={} if method != "GET" else None)
    assert status == 405 and resp.getheader("Allow") in ("GET", "POST")


def _chunked_post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("POST", path)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    for i in range(0, len(body), 256):
        part = body[i:i + 256]
        conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_chunked_bodies_are_read_under_the_same_size_limit(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "l.db", max_body_bytes=1024) as s:
        status, d = _chunked_post(s.port, "/v1/decide", json.dumps(telemetry("chunked")).encode())
        assert status == 200 and d["request_id"] == "chunked"
        # over the limit, and within what the gateway drains before answering (the limit again), so
        # the client can finish sending and read the 413
        status, err = _chunked_post(s.port, "/v1/decide", b" " * 1536)
        assert (status, err["field"]) == (413, "body")


@pytest.mark.parametrize("query,field", [("from=last-week", "from"), ("to=2024-06-01", "to"), ("zone=x", "zone"),
                                         ("from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z", "to")])
def test_bad_carbon_query_is_a_422_naming_the_parameter(client, query, field):
    status, data = client.get(f"/v1/carbon?{query}")
    assert (status, data["field"]) == (422, field), data


# ---------------------------------------------------------------------------------------------
# failure and load
# ---------------------------------------------------------------------------------------------


def _nan_on_long_prompts_spec() -> ActorSpec:
    """A real actor that overflows to inf - inf = NaN when prompt_tokens_scaled and deadline_scaled
    are both large (a 1024-token prompt, a 60 s deadline), and is fine otherwise."""
    names = list(OBS_FIELDS)
    w = np.zeros((2, OBS_DIM), np.float32)
    w[0, names.index("prompt_tokens_scaled")] = 3e38  # x 4.0 overflows float32 to +inf
    w[0, names.index("deadline_scaled")] = -3e38  # x 2.0 overflows to -inf
    w[1, names.index("gain_db_scaled")] = 0.1
    return ActorSpec(kind="ann", obs_dim=OBS_DIM, act_dim=2, nodes=[Linear(w, np.zeros(2, np.float32)), Tanh()])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_backend_failure_falls_back_to_the_safe_policy_and_is_counted_in_metrics(tmp_path):
    path = make_bundle(tmp_path, _nan_on_long_prompts_spec())
    with running_gateway(path, tmp_path / "l.db") as s:
        c = Client(s.port)
        status, ok = c.post("/v1/decide", telemetry("fine", prompt_tokens=64, deadline_s=12.0))
        assert status == 200 and ok["fallback"] is False
        status, bad = c.post("/v1/decide", telemetry("nan", prompt_tokens=1024, deadline_s=60.0))
        assert status == 200
        assert (bad["level"], bad["tx_power_w"], bad["fallback"]) == ("L0", 20.0, True)
        assert c.post("/v1/outcome", outcome("nan"))[1]["fallback"] is True
        text = c.request("GET", "/metrics")[1]
    assert sample_value(text, "aolo_fallbacks_total") == 1
    assert sample_value(text, "aolo_decisions_total", backend="reference", precision="float") == 2


def test_concurrent_clients_are_all_acknowledged_and_in_the_ledger(bundle_path, tmp_path):
    n_threads, n_each = 8, 100
    with running_gateway(bundle_path, tmp_path / "l.db") as s:
        def work(t: int) -> list[str]:
            c, acked = Client(s.port), []
            for i in range(n_each):
                rid = f"t{t}-{i}"
                assert c.post("/v1/decide", telemetry(rid, gain_db=-60.0 - i % 60))[0] == 200
                status, row = c.post("/v1/outcome", outcome(rid))
                assert status == 200 and row["request_id"] == rid
                acked.append(rid)
            c.close()
            return acked

        with ThreadPoolExecutor(n_threads) as pool:
            acked = [rid for ids in pool.map(work, range(n_threads)) for rid in ids]
        ledger = s.service.ledger
        assert len(acked) == n_threads * n_each == ledger.count()
        assert all(ledger.get(rid) is not None for rid in acked[::37])
        assert ledger.integrity_check() == "ok"
        text = c.get("/metrics")[1] if (c := Client(s.port)) else ""
        assert sample_value(text, "aolo_decisions_total", backend="reference", precision="float") == n_threads * n_each


def test_serve_command_with_a_damaged_bundle_prints_one_line_naming_the_file_and_exits_2(tmp_path):
    import subprocess
    import sys

    path = make_bundle(tmp_path, random_ann_spec())
    (path / "actor_spec.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "aolo", "serve", str(path), "--backend", "reference", "--port", "0",
                        "--ledger", str(tmp_path / "l.db")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path / 'actor_spec.json'}: size mismatch"), lines
    assert not (tmp_path / "l.db").exists()


def test_concurrent_decides_share_backend_calls_and_match_one_at_a_time(bundle_path, tmp_path):
    """Decides that arrive together are batched into one backend call (DecideBatcher); their
    decisions equal those of the same telemetry decided alone."""
    import asyncio

    import httpx

    bodies = [telemetry(f"m{i}", gain_db=-70.0 - 3 * i, task_class=["math", "alpaca", "mmlu"][i % 3],
                        prompt_tokens=20 + 40 * i) for i in range(24)]
    with running_gateway(bundle_path, tmp_path / "a.db") as s:
        alone = [Client(s.port).post("/v1/decide", b)[1] for b in bodies]
        calls_alone = s.gateway.batcher.calls

    async def together(port: int) -> list[dict]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     limits=httpx.Limits(max_connections=24)) as c:
            answers = await asyncio.gather(*(c.post("/v1/decide", json=b) for b in bodies))
        return [a.json() for a in answers]

    with running_gateway(bundle_path, tmp_path / "b.db") as s:
        batched = asyncio.run(together(s.port))
        calls_together = s.gateway.batcher.calls
    assert calls_alone == len(bodies) and calls_together < len(bodies)
    for a, b in zip(alone, batched):
        assert (a["request_id"], a["level"]) == (b["request_id"], b["level"])
        assert a["tx_power_w"] == pytest.approx(b["tx_power_w"], abs=1e-4)


def test_a_clash_in_a_shared_batch_fails_only_its_own_request(server):
    import asyncio

    import httpx

    async def go() -> list[int]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            answers = await asyncio.gather(*(c.post("/v1/decide", json=telemetry(rid))
                                             for rid in ("u1", "u2", "same", "same", "u3")))
        return [a.status_code for a in answers]

    codes = asyncio.run(go())
    assert sorted(codes) == [200] * 4 + [409]


def test_a_failure_inside_a_lean_route_is_a_logged_500_that_names_nothing_and_is_counted(bundle_path, tmp_path, caplog):
    # the sidecar routes run outside FastAPI's stack (runtime/gateway/lean.py): an unexpected
    # error must still get the 500 every route gives, a traceback in the log, and its count
    with running_gateway(bundle_path, tmp_path / "l.db") as s:
        c = Client(s.port)
        assert c.post("/v1/decide", telemetry("before"))[0] == 200
        s.service.ledger.close()  # a real fault: the ledger is gone under the running server
        with caplog.at_level("ERROR", logger="aolo.runtime.gateway"):
            status, data = c.post("/v1/decide", telemetry("after"))
        assert (status, data) == (500, {"error": "internal error", "field": None})
        assert any("POST /v1/decide failed" in r.getMessage() and r.exc_info for r in caplog.records)
        assert Client(s.port).get("/healthz")[0] == 200  # the server keeps serving
        text = c.request("GET", "/metrics")[1]
    assert sample_value(text, "aolo_http_requests_total", path="/v1/decide", code="500") == 1
    assert sample_value(text, "aolo_http_requests_total", path="/v1/decide", code="200") == 1
