"""The gateway under attack, on a real uvicorn server: tokens and scopes on every route but
/healthz, bounded inputs (never a 5xx), slow and oversized clients, floods, duplicate ids, and
bad outcomes that must not fail good ones."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aolo.runtime.gateway.app import route_scopes

from test_bundle import make_bundle, random_ann_spec
from test_gateway_sidecar import Client, outcome, running_gateway, telemetry

TOKENS = {"all": ("serve", "report", "read"), "serve-only": ("serve",), "report-only": ("report",),
          "read-only": ("read",)}


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"), random_ann_spec(seed=3))


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    tables = [f'[[tokens]]\nname = "{name}"\nsha256 = "{hashlib.sha256(f"tok-{name}".encode()).hexdigest()}"\n'
              f"scopes = [{', '.join(chr(34) + s + chr(34) for s in scopes)}]\n" for name, scopes in TOKENS.items()]
    path.write_text("\n".join(tables))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def guarded(bundle_path, tmp_path_factory, tokens_file):
    with running_gateway(bundle_path, tmp_path_factory.mktemp("l") / "l.db", tokens_file=tokens_file,
                         upstream_url="http://127.0.0.1:9/v1") as s:
        yield s


# ---------------------------------------------------------------------------------------------
# authentication
# ---------------------------------------------------------------------------------------------


def test_every_route_but_healthz_declares_a_scope():
    table = route_scopes()
    assert {p for p, _ in table} >= {"/v1/chat/completions", "/v1/models", "/v1/decide", "/v1/outcome",
                                     "/v1/feedback", "/v1/carbon", "/metrics"}
    unguarded = [route for route, scopes in table.items() if not scopes]
    assert unguarded == [], unguarded
    assert "/healthz" not in {p for p, _ in table}  # served by the app itself, open by design


def test_every_guarded_route_refuses_a_missing_or_unknown_token_with_401(guarded):
    for (path, method) in route_scopes():
        for token in (None, "not-a-token"):
            status, data, resp = Client(guarded.port, token=token).request(method, path,
                                                                            body={} if method == "POST" else None)
            assert status == 401, (path, method, token, data)
            assert resp.getheader("WWW-Authenticate", "").startswith("Bearer")
    assert Client(guarded.port).get("/healthz")[0] == 200


def test_a_token_without_the_routes_scope_gets_403_and_with_it_gets_through(guarded):
    scopes = route_scopes()
    for name, held in TOKENS.items():
        c = Client(guarded.port, token=f"tok-{name}")
        for (path, method), needed in scopes.items():
            status, data, _ = c.request(method, path, body={} if method == "POST" else None)
            if set(needed) <= set(held):
                assert status not in (401, 403), (name, path, status, data)
            else:
                assert status == 403, (name, path, status, data)


def test_scopes_split_the_decide_outcome_and_read_roles(guarded):
    serve, report, read = (Client(guarded.port, token=f"tok-{n}") for n in ("serve-only", "report-only", "read-only"))
    assert serve.post("/v1/decide", telemetry("scoped"))[0] == 200
    assert serve.post("/v1/outcome", outcome("scoped"))[0] == 403
    assert report.post("/v1/outcome", outcome("scoped"))[0] == 200
    assert read.get("/v1/carbon")[1]["count"] >= 1
    assert read.post("/v1/decide", telemetry("nope"))[0] == 403


def test_a_tokens_file_others_may_write_is_refused(tmp_path, tokens_file):
    from aolo.runtime.gateway import SettingsError
    from aolo.runtime.gateway.auth import load_tokens

    loose = tmp_path / "t.toml"
    loose.write_text(tokens_file.read_text())
    loose.chmod(0o666)
    with pytest.raises(SettingsError, match="others may write"):
        load_tokens(loose)


# ---------------------------------------------------------------------------------------------
# inputs named in the issue: a 4xx, never a 5xx or a hang
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def open_gw(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "l.db", max_pending=50, body_timeout_s=1.0, header_timeout_s=1.0,
                         keepalive_timeout_s=1.0) as s:
        yield s


HUGE = [("ci_g_per_kwh", 1e308), ("gain_db", -1e308), ("deadline_s", 1e308), ("prompt_tokens", 10 ** 30),
        ("active_sessions", 10 ** 30), ("timestamp_utc", "0001-01-01T00:00:00+00:00"),
        ("timestamp_utc", "9999-12-31T23:59:59-12:00"), ("timestamp_utc", "0001-01-01T00:00:00+14:00")]


@pytest.mark.parametrize("field,value", HUGE, ids=[f"{f}={v}" for f, v in HUGE])
def test_huge_numbers_and_far_timestamps_are_a_422_and_carbon_keeps_answering(open_gw, field, value):
    c = Client(open_gw.port)
    status, data = c.post("/v1/decide", telemetry("big", **{field: value}))
    assert (status, data["field"]) == (422, field), data
    assert c.get("/v1/carbon")[0] == 200


@pytest.mark.parametrize("field,value", [("output_tokens", 10 ** 30), ("airtime_s", 1e308), ("harq_tries", 10 ** 20),
                                         ("inference_energy_j", 1e308), ("inference_latency_s", 1e308),
                                         ("tx_power_w", 1e308)])
def test_huge_outcome_values_are_a_422_and_the_decision_stays_pending(open_gw, field, value):
    c = Client(open_gw.port)
    c.post("/v1/decide", telemetry("o"))
    status, data = c.post("/v1/outcome", outcome("o", **{field: value}))
    assert (status, data["field"]) == (422, field), data
    assert c.post("/v1/outcome", outcome("o"))[0] == 200


@pytest.mark.parametrize("query", ["from=0001-01-01T00:00:00-05:00", "to=9999-12-31T23:59:59%2B14:00",
                                   "from=0001-01-01T00:00:00Z"])
def test_far_timestamps_in_a_carbon_query_are_a_422(open_gw, query):
    status, data = Client(open_gw.port).get(f"/v1/carbon?{query}")
    assert status == 422 and data["field"] in ("from", "to"), data


def test_sums_stay_finite_at_the_largest_accepted_values(open_gw):
    c = Client(open_gw.port)
    for i in range(3):
        c.post("/v1/decide", telemetry(f"max{i}", ci_g_per_kwh=5000.0, prompt_tokens=1_000_000, active_sessions=0))
        status, row = c.post("/v1/outcome", outcome(f"max{i}", output_tokens=1_000_000, airtime_s=3600.0,
                                                    inference_energy_j=1e8, inference_latency_s=86_400.0,
                                                    tx_power_w=1000.0, harq_tries=1000))
        assert status == 200
    status, totals = c.get("/v1/carbon")
    assert status == 200 and 0 < totals["total_g"] < 1e7


def _raw(port: int, data: bytes, wait_s: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


def test_a_content_length_longer_than_the_body_is_a_408_after_the_body_timeout(open_gw):
    t0 = time.monotonic()
    answer = _raw(open_gw.port, b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                b"Content-Length: 5000\r\n\r\n{\"request_id\":", wait_s=10.0)
    elapsed = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"field":"body"' in answer and elapsed < 5.0


def test_a_connection_that_never_finishes_its_headers_is_closed(open_gw):
    t0 = time.monotonic()
    answer = _raw(open_gw.port, b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait_s=10.0)
    assert answer == b"" and time.monotonic() - t0 < 5.0  # closed by the 1 s header deadline


def test_slow_clients_do_not_starve_the_others(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "l.db", header_timeout_s=30.0, limit_concurrency=200) as s:
        slow = []
        for _ in range(150):  # idle connections holding nothing but a socket each
            sock = socket.create_connection(("127.0.0.1", s.port))
            sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        try:
            c = Client(s.port)
            t0 = time.monotonic()
            for i in range(20):
                assert c.post("/v1/decide", telemetry(f"fast{i}"))[0] == 200
            assert time.monotonic() - t0 < 5.0
        finally:
            for sock in slow:
                sock.close()


def test_beyond_the_concurrency_limit_new_work_gets_503_not_a_hang(bundle_path, tmp_path):
    with running_gateway(bundle_path, tmp_path / "l.db", header_timeout_s=30.0, limit_concurrency=20) as s:
        held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(25)]
        try:
            time.sleep(0.2)
            status, _ = Client(s.port, timeout_s=5).post("/v1/decide", telemetry("over"))
            assert status == 503
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert Client(s.port).post("/v1/decide", telemetry("after"))[0] == 200


def test_a_flood_of_decides_without_outcomes_gets_429_and_keeps_the_live_ones(open_gw):
    c = Client(open_gw.port)
    assert c.post("/v1/decide", {"requests": [telemetry(f"live{i}") for i in range(40)]})[0] == 200
    codes = [c.post("/v1/decide", telemetry(f"flood{i}"))[0] for i in range(30)]
    assert codes.count(200) == 10 and codes.count(429) == 20
    status, data, resp = c.request("POST", "/v1/decide", telemetry("one-more"))
    assert status == 429 and resp.getheader("Retry-After") and data["field"] == "request_id"
    assert all(c.post("/v1/outcome", outcome(f"live{i}"))[0] == 200 for i in range(40))
    assert "aolo_pending_refused_total 21.0" in c.get("/metrics")[1].splitlines()


def test_deciding_an_id_already_in_the_ledger_is_a_409(open_gw):
    c = Client(open_gw.port)
    c.post("/v1/decide", telemetry("done"))
    assert c.post("/v1/outcome", outcome("done"))[0] == 200
    status, data = c.post("/v1/decide", telemetry("done"))
    assert (status, data["field"]) == (409, "request_id") and "already in the ledger" in data["error"]


def test_one_bad_outcome_among_concurrent_ones_fails_alone(open_gw):
    c = Client(open_gw.port)
    ids = [f"c{i}" for i in range(12)]
    assert c.post("/v1/decide", {"requests": [telemetry(i) for i in ids]})[0] == 200
    barrier = threading.Barrier(len(ids))

    def send(rid: str) -> int:
        body = outcome(rid, output_tokens=10 ** 30) if rid == "c5" else outcome(rid)
        cl = Client(open_gw.port)
        barrier.wait()
        return cl.post("/v1/outcome", body)[0]

    with ThreadPoolExecutor(len(ids)) as pool:
        codes = dict(zip(ids, pool.map(send, ids)))
    assert codes.pop("c5") == 422 and set(codes.values()) == {200}
    assert open_gw.service.ledger.count() == 11


def test_an_outcome_after_a_restart_is_accepted(bundle_path, tmp_path):
    db = tmp_path / "l.db"
    with running_gateway(bundle_path, db) as s:
        assert Client(s.port).post("/v1/decide", telemetry("across"))[0] == 200
    with running_gateway(bundle_path, db) as s:
        status, row = Client(s.port).post("/v1/outcome", outcome("across"))
        assert status == 200 and row["request_id"] == "across"


def test_binding_beyond_loopback_without_tokens_warns(bundle_path, tmp_path):
    import signal

    from test_ledger_durability import _start_server

    proc, port = _start_server(bundle_path, tmp_path / "l.db", "--host", "0.0.0.0")
    try:
        assert Client(port).get("/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "binding 0.0.0.0 without --tokens: every route is open" in err
