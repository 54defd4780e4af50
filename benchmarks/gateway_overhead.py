"""What the gateway costs: the same prompts to a real LLM directly and through ``aolo serve``, and
the sidecar decide path under a load generator beside the old stdlib server, in one run.

1. Proxy overhead. SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server (one thread,
   ``aolo.llm_server``); ``aolo serve --upstream`` in its own process with an always-L0 policy
   (a constant actor on the reference backend), so the upstream gets the very same request either
   way and produces the same tokens (temperature 0). Latency: each prompt sent directly and through
   the gateway in turn, sequentially, each path on one keep-alive connection (as an OpenAI SDK
   client keeps its connections); the added latency is reported two ways: the gateway's own share
   (the client's wall time minus the upstream call as the gateway timed it, from handing the
   request to httpx's transport to the answer's last byte, ``aolo.upstream_latency_s``), and the
   paired difference of the client's wall times (which also holds the LLM's own jitter: tens of ms
   on a shared machine, and llama.cpp reuses the previous prompt's cache, which favours whichever
   path goes second). Throughput: ``--clients`` concurrent clients over all prompts, direct and
   through the gateway in alternating blocks.
2. Sidecar decide path. ``POST /v1/decide`` (one request, unique ids) under ``wrk`` (``--connections``
   keep-alive connections, 2 threads) against the gateway and against the old ``http.server``-based
   server, checked out from git history (the commit before it was removed) into a temporary folder
   and run with the service and ledger of that commit; both in their own process, on the same
   256 x 256 ANN actor on ONNX Runtime (``runtime_latency.ann_spec``), alternated twice. Beside
   decisions/s, each server's CPU time per decision (user + system, from /proc): on a machine
   shared with other work, a steadier measure of cost than the rate.

``wrk`` comes from Debian's packages: ``make install`` installs it (``apt-get install -y wrk``);
without it this script uses a Python load generator (http.client threads) and says so.

Targets (issue 21): added latency p50 <= 2 ms and p99 <= 10 ms for non-streamed answers; throughput
>= 95% of direct; sidecar decisions/s >= 1.5x the old server's at 8 connections, p99 <= 20 ms.

    python benchmarks/gateway_overhead.py [--smoke] [--prompts 24] [--max-tokens 16] [--duration-s 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_latency import ann_onnx, ann_spec  # noqa: E402

from aolo.gateway_demo import DEMO_PROMPTS, constant_bundle  # noqa: E402
from aolo.hw_profiles import DEFAULT_RADIO_PROFILE, RadioProfile, load_profile  # noqa: E402
from aolo.llm_server import llama_server  # noqa: E402
from aolo.runtime.bundle import ActionSpec, write_bundle  # noqa: E402

ADDED_P50_TARGET_MS, ADDED_P99_TARGET_MS, THROUGHPUT_TARGET = 2.0, 10.0, 0.95
SIDECAR_SPEEDUP_TARGET, SIDECAR_P99_TARGET_MS = 1.5, 20.0

OLD_SERVER_CODE = """
import sys
from aolo.hw_profiles import DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE, LLMServerProfile, RadioProfile, load_profile
from aolo.runtime.backends import make_backend
from aolo.runtime.bundle import PolicyBundle
from aolo.runtime.grid import load_grid
from aolo.runtime.ledger import Ledger
from aolo.runtime.server import ServerSettings, make_server, run_until_signalled
from aolo.runtime.service import PolicyService
import aolo
assert aolo.__file__.startswith(sys.argv[3]), aolo.__file__
bundle = PolicyBundle.load(sys.argv[1])
svc = PolicyService(bundle, make_backend('onnx', bundle), Ledger(sys.argv[2]),
                    load_profile(DEFAULT_SERVER_PROFILE, LLMServerProfile), load_profile(DEFAULT_RADIO_PROFILE, RadioProfile),
                    load_grid(DEFAULT_GRID_ZONE))
server = make_server(svc, ServerSettings(port=0))
run_until_signalled(server, on_ready=lambda s: print('aolo serve: listening on http://127.0.0.1:%d' % s.port, flush=True))
"""

WRK_SCRIPT = """
local counter = 0
local tag = "x"
local n_threads = 0
function setup(thread)
  n_threads = n_threads + 1
  thread:set("tid", n_threads)
end
function init(args)
  tag = args[1] .. "-" .. tostring(tid)
end
request = function()
  counter = counter + 1
  local body = string.format('{"request_id":"%s-%d","timestamp_utc":"2024-06-01T18:05:00Z","task_class":"math",'
    .. '"prompt_tokens":64,"deadline_s":12.0,"gain_db":-100.0,"active_sessions":5}', tag, counter)
  return wrk.format("POST", "/v1/decide", {["Content-Type"] = "application/json"}, body)
end
"""


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------


def _wait_listening(proc: subprocess.Popen, what: str, timeout_s: float = 120.0) -> int:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sel.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if "listening on" in line:
            return int(line.split("http://")[1].split()[0].rsplit(":", 1)[1].rstrip(")"))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{what} did not start: {proc.stderr.read()[-2000:] if proc.stderr else ''}")


def start_gateway(bundle: Path, ledger: Path, backend: str, upstream: Optional[str] = None) -> tuple[subprocess.Popen, int]:
    """``aolo serve`` in its own process; returns it and its port."""
    cmd = [sys.executable, "-m", "aolo", "serve", str(bundle), "--backend", backend, "--port", "0", "--ledger",
           str(ledger)] + (["--upstream", upstream] if upstream else [])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, _wait_listening(proc, "aolo serve")


def old_server_tree(dest: Path) -> Optional[Path]:
    """The aolo package as it was before the gateway replaced ``runtime/server.py``, laid out under
    ``dest`` (``aolo/``, ``aolo/runtime``, ``aolo/hw_profiles``); None outside a git checkout."""
    try:
        deleted = subprocess.run(["git", "log", "--diff-filter=D", "--format=%H", "-1", "--", "runtime/server.py"],
                                 cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    if not deleted:
        return None
    rev = f"{deleted}^"
    for folder, target in (("aolo", "aolo"), ("runtime", "aolo/runtime"), ("hw_profiles", "aolo/hw_profiles")):
        out = dest / target
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev, folder], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(out)], input=archive, check=True)
    return dest


def start_old_server(tree: Path, bundle: Path, ledger: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", OLD_SERVER_CODE, str(bundle), str(ledger), str(tree)], cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, _wait_listening(proc, "the old server")


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far, s (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ---------------------------------------------------------------------------------------------
# sidecar decide under load
# ---------------------------------------------------------------------------------------------


def _ms(text: str) -> float:
    value, unit = float(re.match(r"([\d.]+)", text).group(1)), re.sub(r"[\d.]", "", text)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk_load(port: int, connections: int, duration_s: float, tag: str, script: Path) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency", "-s",
                          str(script), f"http://127.0.0.1:{port}", "--", tag],
                         capture_output=True, text=True, timeout=duration_s + 60, check=True).stdout
    lat = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+[a-z]+)", out, re.M))
    if "50" not in lat or "99" not in lat:
        raise RuntimeError(f"cannot read wrk's latency distribution from:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"decisions_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]), "errors": int(errors.group(1)) if errors else 0,
            "load_generator": "wrk -t2"}


def python_load(port: int, connections: int, duration_s: float, tag: str) -> dict[str, Any]:
    """Fallback without wrk: one http.client thread per connection (GIL-bound: a lower bound)."""
    stop_at = time.perf_counter() + duration_s
    lat: list[list[float]] = [[] for _ in range(connections)]
    errors = [0]

    def work(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = 0
        while time.perf_counter() < stop_at:
            body = json.dumps({"request_id": f"{tag}-{c}-{i}", "timestamp_utc": "2024-06-01T18:05:00Z",
                               "task_class": "math", "prompt_tokens": 64, "deadline_s": 12.0, "gain_db": -100.0,
                               "active_sessions": 5}).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/v1/decide", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            lat[c].append(time.perf_counter() - t0)
            errors[0] += resp.status != 200
            i += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(work, range(connections)))
    wall = time.perf_counter() - t0
    all_ms = np.concatenate([np.asarray(x) for x in lat]) * 1e3
    return {"decisions_per_s": all_ms.size / wall, "p50_ms": float(np.percentile(all_ms, 50)),
            "p99_ms": float(np.percentile(all_ms, 99)), "errors": errors[0], "load_generator": "python http.client threads"}


def bench_sidecar(root: Path, connections: int, duration_s: float, rounds: int) -> dict[str, Any]:
    action = ActionSpec.from_radio_profile(load_profile(DEFAULT_RADIO_PROFILE, RadioProfile))
    spec = ann_spec()
    bundle = write_bundle(root / "ann", spec, {"onnx": ann_onnx(spec, root / "ann.onnx")}, algo="sac", action=action,
                          op_counts={"layer0_macs": 256 * 15 + 256 * 256 + 512})
    tree = old_server_tree(root / "old")
    script = root / "decide.lua"
    script.write_text(WRK_SCRIPT)
    have_wrk = shutil.which("wrk") is not None
    runs: dict[str, list[dict[str, Any]]] = {"gateway": [], "old server": []}
    for r in range(rounds):
        for name in ("old server", "gateway"):
            if name == "old server" and tree is None:
                continue
            ledger = root / f"{name.replace(' ', '_')}-{r}.db"
            proc, port = (start_old_server(tree, bundle, ledger) if name == "old server"
                          else start_gateway(bundle, ledger, "onnx"))
            try:
                tag = f"{name[0]}{r}"
                warm = min(2.0, duration_s / 4)
                (wrk_load(port, connections, warm, tag + "w", script) if have_wrk
                 else python_load(port, connections, warm, tag + "w"))
                c0 = cpu_s(proc.pid)
                run = (wrk_load(port, connections, duration_s, tag, script) if have_wrk
                       else python_load(port, connections, duration_s, tag))
                run["server_cpu_us_per_decision"] = 1e6 * (cpu_s(proc.pid) - c0) / (run["decisions_per_s"] * duration_s)
                runs[name].append(run)
            finally:
                stop(proc)
    out: dict[str, Any] = {"connections": connections, "duration_s": duration_s, "rounds": rounds, "runs": runs}
    for name, rs in runs.items():
        if rs:
            out[name] = {"decisions_per_s": float(np.median([x["decisions_per_s"] for x in rs])),
                         "p50_ms": float(np.median([x["p50_ms"] for x in rs])),
                         "p99_ms": float(np.median([x["p99_ms"] for x in rs])),
                         "server_cpu_us_per_decision": float(np.median([x["server_cpu_us_per_decision"] for x in rs])),
                         "errors": sum(x["errors"] for x in rs), "load_generator": rs[0]["load_generator"]}
    if runs["old server"]:
        out["speedup"] = out["gateway"]["decisions_per_s"] / out["old server"]["decisions_per_s"]
    return out


# ---------------------------------------------------------------------------------------------
# proxy overhead against the real LLM
# ---------------------------------------------------------------------------------------------


class _ChatClient:
    """One keep-alive connection, as an OpenAI SDK client keeps its connections (stdlib http.client)."""

    def __init__(self, port: int, model: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.model = model

    def post(self, prompt: str, max_tokens: int) -> tuple[float, dict[str, Any]]:
        """One chat completion; returns the client's wall time (s) and the answer."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                           "max_tokens": max_tokens}).encode()
        t0 = time.perf_counter()
        self.conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        wall = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        return wall, json.loads(data)

    def close(self) -> None:
        self.conn.close()


def bench_proxy(root: Path, prompts: list[str], max_tokens: int, clients: int, rounds: int) -> dict[str, Any]:
    bundle = constant_bundle(root / "always_l0", level_index=0)
    with llama_server() as llm:
        llm_port = int(llm.url.rsplit(":", 1)[1].split("/")[0])
        proc, gw_port = start_gateway(bundle, root / "proxy.db", "reference", upstream=llm.url)
        try:
            ports = {"direct": llm_port, "gateway": gw_port}
            clients_of = {name: _ChatClient(port, llm.model) for name, port in ports.items()}
            for p in prompts[:3]:  # warm both paths and their connections
                for c in clients_of.values():
                    c.post(p, max_tokens)
            direct, through, own, same_tokens = [], [], [], 0
            cpu0 = cpu_s(proc.pid)
            for _ in range(rounds):
                for p in prompts:
                    wd, ad = clients_of["direct"].post(p, max_tokens)
                    wg, ag = clients_of["gateway"].post(p, max_tokens)
                    direct.append(wd)
                    through.append(wg)
                    own.append(wg - ag["aolo"]["upstream_latency_s"])
                    same_tokens += ad["usage"]["completion_tokens"] == ag["usage"]["completion_tokens"]
            gateway_cpu_ms = 1e3 * (cpu_s(proc.pid) - cpu0) / len(through)
            for c in clients_of.values():
                c.close()
            rates: dict[str, list[float]] = {"direct": [], "gateway": []}
            for _ in range(rounds):
                for name, port in ports.items():
                    pool_clients = [_ChatClient(port, llm.model) for _ in range(clients)]

                    def work(k: int) -> None:  # client k sends prompts k, k + clients, ... on its connection
                        for p in prompts[k::clients]:
                            pool_clients[k].post(p, max_tokens)

                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(clients) as pool:
                        list(pool.map(work, range(clients)))
                    rates[name].append(len(prompts) / (time.perf_counter() - t0))
                    for c in pool_clients:
                        c.close()
        finally:
            stop(proc)
    paired_ms = (np.asarray(through) - np.asarray(direct)) * 1e3
    own_ms = np.asarray(own) * 1e3
    return {
        "prompts": len(prompts), "rounds": rounds, "max_tokens": max_tokens, "clients": clients,
        "direct_p50_ms": float(np.percentile(np.asarray(direct) * 1e3, 50)),
        "gateway_p50_ms": float(np.percentile(np.asarray(through) * 1e3, 50)),
        "added_paired_p50_ms": float(np.percentile(paired_ms, 50)),
        "added_paired_p99_ms": float(np.percentile(paired_ms, 99)),
        "added_own_p50_ms": float(np.percentile(own_ms, 50)), "added_own_p99_ms": float(np.percentile(own_ms, 99)),
        "same_output_tokens_frac": same_tokens / len(direct),
        "gateway_cpu_ms_per_request": gateway_cpu_ms,
        "direct_requests_per_s": float(np.mean(rates["direct"])),
        "gateway_requests_per_s": float(np.mean(rates["gateway"])),
        "throughput_ratio": float(np.sum(rates["gateway"]) / np.sum(rates["direct"])),
    }


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds of each measurement (checks the script runs)")
    ap.add_argument("--prompts", type=int, default=24, help="prompts for the proxy measurement (from the demo's set)")
    ap.add_argument("--max-tokens", type=int, default=16, help="max_tokens of each answer")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients for the throughput ratio")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each measurement (alternating direct/gateway)")
    ap.add_argument("--connections", type=int, default=8, help="load generator connections for the decide path")
    ap.add_argument("--duration-s", type=float, default=10.0, help="load generator run per server and round, s")
    ap.add_argument("--only", choices=("proxy", "sidecar"), default=None, help="run one of the two measurements")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.prompts, args.max_tokens, args.rounds, args.duration_s, args.clients = 3, 4, 1, 2.0, 2

    from rich.console import Console

    console = Console(width=150)
    prompts = [p for _, p in DEMO_PROMPTS][:args.prompts]
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "smoke": args.smoke,
                               "loadavg_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        if args.only != "proxy":
            results["sidecar"] = bench_sidecar(Path(d), args.connections, args.duration_s, args.rounds)
        if args.only != "sidecar":
            results["proxy"] = bench_proxy(Path(d), prompts, args.max_tokens, args.clients, args.rounds)
    results["loadavg_at_end"] = os.getloadavg()

    if "proxy" in results:
        _proxy_table(console, results["proxy"])
    if "sidecar" in results:
        _sidecar_table(console, results["sidecar"])
    console.print(f"load average at start {results['loadavg_at_start']}, at end {results['loadavg_at_end']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return results


def _proxy_table(console: Any, p: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"proxy: {p['prompts']} prompts x {p['rounds']} rounds, max_tokens {p['max_tokens']}, "
                    f"SmolLM2-135M on llama.cpp (1 thread)")
    for col in ("measure", "value", "target"):
        t.add_column(col)
    t.add_row("direct p50 / through the gateway p50", f"{p['direct_p50_ms']:.1f} / {p['gateway_p50_ms']:.1f} ms", "")
    t.add_row("added latency, gateway's own share p50 / p99", f"{p['added_own_p50_ms']:.2f} / {p['added_own_p99_ms']:.2f} ms",
              f"<= {ADDED_P50_TARGET_MS:g} / {ADDED_P99_TARGET_MS:g} ms")
    t.add_row("added latency, paired wall-time difference p50 / p99",
              f"{p['added_paired_p50_ms']:.2f} / {p['added_paired_p99_ms']:.2f} ms", "(includes the LLM's jitter)")
    t.add_row(f"throughput, {p['clients']} clients: direct / gateway",
              f"{p['direct_requests_per_s']:.2f} / {p['gateway_requests_per_s']:.2f} req/s "
              f"({100 * p['throughput_ratio']:.1f}%)", f">= {100 * THROUGHPUT_TARGET:.0f}%")
    t.add_row("gateway CPU time per request (user + system)", f"{p['gateway_cpu_ms_per_request']:.2f} ms",
              "(its added latency on an idle core)")
    t.add_row("same output tokens direct and through the gateway", f"{100 * p['same_output_tokens_frac']:.0f}%", "")
    console.print(t)


def _sidecar_table(console: Any, s: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"sidecar POST /v1/decide, {s['connections']} connections, {s['duration_s']:g} s x {s['rounds']} "
                    f"round(s) each, ONNX 256x256 ANN ({s['gateway']['load_generator']})")
    for col in ("server", "decisions/s", "p50 (ms)", "p99 (ms)", "server CPU (us/decision)", "non-2xx"):
        t.add_column(col, justify="left" if col == "server" else "right")
    for name in ("old server", "gateway"):
        if name in s:
            r = s[name]
            t.add_row(name, f"{r['decisions_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['server_cpu_us_per_decision']:.0f}", str(r["errors"]))
    console.print(t)
    if "speedup" in s:
        console.print(f"gateway / old server: {s['speedup']:.2f}x decisions/s (target >= {SIDECAR_SPEEDUP_TARGET:g}x), "
                      f"gateway p99 {s['gateway']['p99_ms']:.2f} ms (target <= {SIDECAR_P99_TARGET_MS:g} ms)")
    else:
        console.print("old server: not measured (not a git checkout)")


if __name__ == "__main__":
    main()
