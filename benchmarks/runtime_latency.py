"""Decision latency and throughput of the runtime: backends in process, and the HTTP server.

In process, per backend: latency of one decision (batch 1) as p50 / p99, and decisions/s at
batch 256 (``--batch``). Over HTTP on loopback: decisions/s and latency p50 / p99 with
``--clients`` keep-alive client threads (stdlib http.client) against a server in its own process
(so clients and server do not share a GIL), for single decisions, batches of 16, and decide +
outcome pairs (an outcome commits to the SQLite ledger with synchronous=FULL before it is answered).

Actors (random weights, the deployed shapes): an ANN as SAC's default actor (15 -> 256 -> 256 -> 2,
ReLU, tanh) and an SNN as aolo's default PopSAN (10 neurons per observation dim, 64-64 CubaLIF,
10 per action dim, T = 5). The ANN's ONNX graph is written here with onnx.helper; the SNN's comes
from ``aolo.train.actor_export.onnx_model_from_spec`` in a subprocess (it imports torch, which
this process never does) and is skipped when that is not installed.

Targets: ONNX in-process p50 < 200 us for one decision; HTTP >= 1,000 decisions/s with p99 < 20 ms.

    python benchmarks/runtime_latency.py [--clients 8] [--requests 500] [--batch 256] [--no-lava] [--json out.json] [--smoke]

``--smoke`` runs every part with a handful of calls on batches of 4 (a check that the benchmark
runs; its figures and verdicts mean nothing).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aolo.hw_profiles import DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE, RadioProfile, load_profile
from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, ReLU, Tanh
from aolo.runtime.backends import BackendError, make_backend
from aolo.runtime.bundle import ActionSpec, PolicyBundle, write_bundle
from aolo.runtime.policy_io import OBS_DIM

SINGLE_TARGET_S = 200e-6
HTTP_RATE_TARGET = 1000.0
HTTP_P99_TARGET_S = 20e-3


# ---------------------------------------------------------------------------------------------
# actors and bundles
# ---------------------------------------------------------------------------------------------


def ann_spec(seed: int = 0, hidden: tuple[int, ...] = (256, 256)) -> ActorSpec:
    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    fan_in = OBS_DIM
    for h in hidden:
        nodes += [Linear(rng.normal(0, 1 / np.sqrt(fan_in), (h, fan_in)), rng.normal(0, 0.05, h)), ReLU()]
        fan_in = h
    nodes += [Linear(rng.normal(0, 1 / np.sqrt(fan_in), (2, fan_in)), np.zeros(2)), Tanh()]
    return ActorSpec(kind="ann", obs_dim=OBS_DIM, act_dim=2, nodes=nodes, metadata={"algo": "sac"})


def snn_spec(seed: int = 0, pop: int = 10, hidden: tuple[int, ...] = (64, 64), out_pop: int = 10,
             timesteps: int = 5) -> ActorSpec:
    rng = np.random.default_rng(seed)
    enc = PopulationEncoder(np.tile(np.linspace(-3, 3, pop), (OBS_DIM, 1)), np.full((OBS_DIM, pop), np.sqrt(0.15)))
    sizes = [OBS_DIM * pop, *hidden, 2 * out_pop]
    nodes: list[Any] = [enc]
    for n_in, n_out in zip(sizes, sizes[1:]):
        nodes += [Linear(rng.normal(0.05, 1.5 / np.sqrt(n_in), (n_out, n_in))),
                  CubaLIF(np.full(n_out, 0.5), np.full(n_out, 0.75), np.full(n_out, 0.5))]
    nodes += [PopulationDecoder(rng.normal(0, 1, (2, out_pop)), np.zeros(2)), Tanh()]
    return ActorSpec(kind="snn", obs_dim=OBS_DIM, act_dim=2, nodes=nodes, timesteps=timesteps,
                     metadata={"algo": "sdrl"})


def ann_onnx(spec: ActorSpec, path: Path) -> Path:
    """MatMul / Add / Relu / Tanh graph of an ANN spec; input obs (batch, obs_dim), output action."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "obs"
    for i, node in enumerate(spec.nodes):
        if isinstance(node, Linear):
            inits += [numpy_helper.from_array(np.ascontiguousarray(node.weight.T), f"w{i}"),
                      numpy_helper.from_array(node.bias, f"b{i}")]
            nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
                      helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"h{i}"])]
            x = f"h{i}"
        elif isinstance(node, ReLU):
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Tanh", [x], ["action"]))
    graph = helper.make_graph(nodes, "ann_actor",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", OBS_DIM])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 2])], inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def snn_onnx(spec: ActorSpec, path: Path) -> Path | None:
    """The export stage's SNN graph, built in a subprocess (it imports torch); None if unavailable."""
    spec_path = path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec.to_dict()))
    code = ("import json, sys\n"
            "from aolo.runtime.actor_spec import ActorSpec\n"
            "from aolo.train.actor_export import onnx_model_from_spec\n"
            "spec = ActorSpec.from_dict(json.load(open(sys.argv[1])))\n"
            "open(sys.argv[2], 'wb').write(onnx_model_from_spec(spec).SerializeToString())\n")
    r = subprocess.run([sys.executable, "-c", code, str(spec_path), str(path)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        print(f"(SNN ONNX skipped: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode})")
        return None
    return path


def build_bundles(root: Path) -> dict[str, Path]:
    action = ActionSpec.from_radio_profile(load_profile(DEFAULT_RADIO_PROFILE, RadioProfile))
    bundles = {}
    ann = ann_spec()
    bundles["ann"] = write_bundle(root / "ann", ann, {"onnx": ann_onnx(ann, root / "ann.onnx")}, algo="sac",
                                  action=action)
    snn = snn_spec()
    onnx_path = snn_onnx(snn, root / "snn.onnx")
    bundles["snn"] = write_bundle(root / "snn", snn, {"onnx": onnx_path} if onnx_path else {}, algo="sdrl",
                                  action=action)
    return bundles


# ---------------------------------------------------------------------------------------------
# in process
# ---------------------------------------------------------------------------------------------


def _percentiles_us(samples_s: list[float]) -> tuple[float, float]:
    a = np.asarray(samples_s) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def time_calls(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_backend(name: str, bundle: PolicyBundle, precision: str, n_single: int, n_batch: int,
                  batch: int = 256) -> dict[str, Any]:
    backend = make_backend(name, bundle, precision=precision)
    rng = np.random.default_rng(0)
    try:
        obs1 = rng.normal(0, 1, (1, OBS_DIM)).astype(np.float32)
        single = time_calls(lambda: backend.decide(obs1), n_single, warmup=min(50, n_single))
        obs_batch = rng.normal(0, 1, (batch, OBS_DIM)).astype(np.float32)
        batch_s = time_calls(lambda: backend.decide(obs_batch), n_batch, warmup=1)
    finally:
        backend.close()
    p50, p99 = _percentiles_us(single)
    return {"actor": bundle.manifest.actor_kind, "backend": name, "precision": precision, "single_p50_us": p50,
            "single_p99_us": p99, "batch": batch, "batch_decisions_per_s": batch / float(np.median(batch_s)),
            "threads": "1 intra-op" if name == "onnx" else ("numpy BLAS" if name == "reference" else "lava procs")}


def bench_lava_rebuild(bundle: PolicyBundle, n_persistent: int, n_rebuild: int) -> dict[str, Any]:
    """One decision on a persistent Lava network against building, running and closing a network
    for every decision (what the runtime must never do), side by side on the same actor."""
    from aolo.runtime.backends.lava import LavaActorNetwork

    obs1 = np.random.default_rng(1).normal(0, 1, (1, OBS_DIM)).astype(np.float32)
    with LavaActorNetwork(bundle.spec, "float") as net:
        persistent = time_calls(lambda: net.decide(obs1), n_persistent, warmup=min(10, n_persistent))

    def rebuild() -> None:
        with LavaActorNetwork(bundle.spec, "float") as fresh:
            fresh.decide(obs1)

    rebuilt = time_calls(rebuild, n_rebuild, warmup=1)
    p50_persistent, p50_rebuild = float(np.median(persistent)), float(np.median(rebuilt))
    return {"persistent_p50_ms": 1e3 * p50_persistent, "rebuild_p50_ms": 1e3 * p50_rebuild,
            "speedup": p50_rebuild / p50_persistent, "n_rebuild": n_rebuild}


def bench_service(bundle_path: Path, n: int, warmup: int = 50) -> dict[str, Any]:
    """Full in-process decide of PolicyService (telemetry model -> observation -> ONNX -> Decision)."""
    from aolo.hw_profiles import LLMServerProfile
    from aolo.runtime.grid import load_grid
    from aolo.runtime.ledger import Ledger
    from aolo.runtime.service import PolicyService, Telemetry

    bundle = PolicyBundle.load(bundle_path)
    with tempfile.TemporaryDirectory() as d:
        svc = PolicyService(bundle, make_backend("onnx", bundle), Ledger(Path(d) / "l.db"),
                            load_profile(DEFAULT_SERVER_PROFILE, LLMServerProfile), load_profile(DEFAULT_RADIO_PROFILE, RadioProfile),
                            load_grid(DEFAULT_GRID_ZONE), max_pending=1000)
        tel = [Telemetry(request_id=f"s{i}", timestamp_utc="2024-06-01T18:00:00Z", task_class="math",
                         prompt_tokens=64, deadline_s=12.0, gain_db=-100.0, active_sessions=5) for i in range(n + warmup)]
        it = iter(tel)
        samples = time_calls(lambda: svc.decide(next(it)), n, warmup=warmup)
        svc.close()
    p50, p99 = _percentiles_us(samples)
    return {"what": "PolicyService.decide (onnx, ann), one request", "p50_us": p50, "p99_us": p99}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

SERVER_CODE = """
import sys
from aolo.runtime.gateway import GatewaySettings, create_app
from aolo.runtime.gateway.serve import bind, run
settings = GatewaySettings(bundle=sys.argv[1], ledger=sys.argv[2], backend=sys.argv[3], port=0)
sock = bind('127.0.0.1', 0)
app = create_app(settings, on_ready=lambda gw: print(sock.getsockname()[1], 'torch' in sys.modules, flush=True))
run(app, settings, sock)
"""


def _telemetry(rid: str) -> dict[str, Any]:
    return {"request_id": rid, "timestamp_utc": "2024-06-01T18:05:00Z", "task_class": "math", "prompt_tokens": 64,
            "deadline_s": 12.0, "gain_db": -100.0, "active_sessions": 5}


def _outcome(rid: str) -> dict[str, Any]:
    return {"request_id": rid, "output_tokens": 180, "airtime_s": 0.02, "harq_tries": 1, "outage": False}


def http_load(port: int, clients: int, requests: int, mode: str, tag: str) -> dict[str, Any]:
    """``clients`` threads x ``requests`` each; mode 'single', 'batch16' or 'pair' (decide + outcome)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    decisions = [0] * clients
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def post(conn: http.client.HTTPConnection, path: str, body: Any) -> None:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            errors.append(f"{path} {resp.status}")

    def work(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.connect()
        start.wait()
        for i in range(requests):
            rid = f"{tag}-{c}-{i}"
            t0 = time.perf_counter()
            if mode == "batch16":
                post(conn, "/v1/decide", {"requests": [_telemetry(f"{rid}-{k}") for k in range(16)]})
                decisions[c] += 16
            else:
                post(conn, "/v1/decide", _telemetry(rid))
                decisions[c] += 1
                if mode == "pair":
                    post(conn, "/v1/outcome", _outcome(rid))
            latencies[c].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    return {"mode": mode, "clients": clients, "requests": int(lat.size), "errors": len(errors),
            "decisions_per_s": sum(decisions) / wall, "http_requests_per_s": lat.size * (2 if mode == "pair" else 1) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def bench_http(bundle_path: Path, backend: str, clients: int, requests: int,
               warmup: int = 50) -> tuple[list[dict[str, Any]], bool]:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(bundle_path), str(Path(d) / "l.db"), backend],
                                stdout=subprocess.PIPE, text=True)
        try:
            port_s, torch_loaded = proc.stdout.readline().split()
            port = int(port_s)
            http_load(port, clients, warmup, "single", "warm")
            rows = [http_load(port, clients, requests, mode, mode) for mode in ("single", "batch16", "pair")]
        finally:
            proc.terminate()
            proc.wait(30)
    return rows, torch_loaded == "True"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=3000, help="single-decision calls per backend")
    ap.add_argument("--batch", type=int, default=256, help="observations per batched call")
    ap.add_argument("--batches", type=int, default=30, help="batched calls per backend (Lava: 2)")
    ap.add_argument("--clients", type=int, default=8, help="HTTP client threads")
    ap.add_argument("--requests", type=int, default=400, help="HTTP requests per client thread per mode")
    ap.add_argument("--no-lava", action="store_true", help="skip the Lava backend")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--smoke", action="store_true", help="a handful of calls per part (checks that it runs)")
    args = ap.parse_args(argv)
    n_lava_single, n_lava_persistent, n_lava_rebuild, n_service, n_warm = 300, 200, 10, 2000, 50
    if args.smoke:
        # batches of 4: a Lava network decides one observation at a time (about 25 ms each here), so
        # the three batches of 256 it would run per precision took 40 of the smoke's 50 s
        args.single, args.batch, args.batches, args.clients, args.requests = 20, 4, 1, 2, 5
        n_lava_single, n_lava_persistent, n_lava_rebuild, n_service, n_warm = 5, 5, 1, 20, 2

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as d:
        paths = build_bundles(Path(d))
        bundles = {k: PolicyBundle.load(p) for k, p in paths.items()}
        runs = [("ann", "onnx", "float"), ("ann", "reference", "float")]
        if "onnx" in bundles["snn"].targets:
            runs.append(("snn", "onnx", "float"))
        runs.append(("snn", "reference", "float"))
        if not args.no_lava:
            runs += [("snn", "lava", "float"), ("snn", "lava", "fixed")]
        rows = []
        for actor, name, precision in runs:
            lava = name == "lava"
            try:
                rows.append(bench_backend(name, bundles[actor], precision, n_lava_single if lava else args.single,
                                          min(2, args.batches) if lava else args.batches, args.batch))
            except BackendError as e:
                console.print(f"({name}/{precision} skipped: {e})")
        results["in_process"] = rows
        if not args.no_lava:
            results["lava_rebuild"] = bench_lava_rebuild(bundles["snn"], n_lava_persistent, n_lava_rebuild)
        results["service"] = bench_service(paths["ann"], n_service, warmup=n_warm)
        http_rows, torch_loaded = bench_http(paths["ann"], "onnx", args.clients, args.requests, warmup=n_warm)
        results["http"] = http_rows
        results["http_server_imported_torch"] = torch_loaded

    base = next(r for r in rows if r["backend"] == "onnx" and r["actor"] == "ann")["single_p50_us"]
    t = Table(title=f"in-process decisions ({results['cpu_count']} CPUs; ONNX Runtime 1 intra-op thread)")
    for col in ("actor", "backend", "precision", "p50 single (us)", "p99 single (us)", "x ONNX-ANN p50",
                f"batch {args.batch} (decisions/s)", "threads"):
        t.add_column(col, justify="left" if col in ("actor", "backend", "precision", "threads") else "right")
    for r in rows:
        t.add_row(r["actor"], r["backend"], r["precision"], f"{r['single_p50_us']:.1f}", f"{r['single_p99_us']:.1f}",
                  f"{r['single_p50_us'] / base:.2f}", f"{r['batch_decisions_per_s']:,.0f}", r["threads"])
    console.print(t)
    s = results["service"]
    console.print(f"{s['what']}: p50 {s['p50_us']:.1f} us, p99 {s['p99_us']:.1f} us")

    h = Table(title=f"HTTP on loopback, onnx ANN, {args.clients} keep-alive client threads x {args.requests} "
                    f"requests, server in its own process (one handler thread per connection)")
    for col in ("mode", "decisions/s", "HTTP req/s", "p50 (ms)", "p99 (ms)", "errors"):
        h.add_column(col, justify="left" if col == "mode" else "right")
    for r in http_rows:
        h.add_row(r["mode"], f"{r['decisions_per_s']:,.0f}", f"{r['http_requests_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
                  f"{r['p99_ms']:.2f}", str(r["errors"]))
    console.print(h)

    lava = results.get("lava_rebuild")
    if lava:
        console.print(f"Lava float, one decision: persistent network p50 {lava['persistent_p50_ms']:.1f} ms, "
                      f"build + decide + close per call p50 {lava['rebuild_p50_ms']:.0f} ms "
                      f"({lava['n_rebuild']} calls): persistent is {lava['speedup']:.0f}x faster")

    onnx_p50 = base * 1e-6
    single = next(r for r in http_rows if r["mode"] == "single")
    verdicts = [
        (f"ONNX in-process p50 {base:.1f} us < {SINGLE_TARGET_S * 1e6:.0f} us", onnx_p50 < SINGLE_TARGET_S),
        (f"HTTP {single['decisions_per_s']:,.0f} decisions/s >= {HTTP_RATE_TARGET:,.0f}",
         single["decisions_per_s"] >= HTTP_RATE_TARGET),
        (f"HTTP p99 {single['p99_ms']:.2f} ms < {HTTP_P99_TARGET_S * 1e3:.0f} ms", single["p99_ms"] < HTTP_P99_TARGET_S * 1e3),
    ]
    if lava:
        lava_row = next(r for r in rows if r["backend"] == "lava" and r["precision"] == "float")
        verdicts += [
            (f"Lava float persistent p50 {lava_row['single_p50_us'] / 1e3:.1f} ms < 20 ms", lava_row["single_p50_us"] < 20e3),
            (f"Lava persistent {lava['speedup']:.0f}x faster than rebuilding per call (>= 20x)", lava["speedup"] >= 20),
        ]
    for text, ok in verdicts:
        console.print(f"[{'green' if ok else 'red'}]{'met' if ok else 'MISSED'}[/]: {text}")
    results["targets"] = {text: ok for text, ok in verdicts}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
