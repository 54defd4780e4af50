"""The device check of issue 26, driven by ``scripts/device_check.sh``: on a machine with an NVIDIA
GPU (under 5 minutes), and in a CPU-only form anywhere.

1. Training throughput (``--stage train``, a process of its own: torch): SAC (MLP actor) and SDRL
   (PopSAN actor) at TrainConfig's defaults on the default scenario, environment steps per second
   of ``SAC.learn`` after the random warm-up, on cpu and, with a GPU, on cuda (one torch thread, as
   aolo trains). Each algorithm's cpu model is then written as a bundle (ONNX actor, random-init
   weights trained for those few steps: the energy of a decision does not depend on how well it
   decides).
2. ONNX Runtime (``--stage onnx``, a process without torch, so the CUDA 12 libraries of
   onnxruntime-gpu never meet torch's CUDA 13 ones): each bundle's actor on CUDA against CPU on the
   bundle's recorded observations at batch 1 and 256 (max |delta a| <= 1e-5), then its energy per
   decision with ``aolo energy --measure``'s code at batch 1 and 256 (NVML for the GPU, RAPL where
   readable, idle baseline subtracted) on CUDA and on CPU, beside the op-count estimate.
3. One table (stdout), and the figures as JSON (``--json``).

Usage: python scripts/device_check.py [--smoke] [--json PATH]
  --smoke: tiny counts, so the CPU-only test runs it in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5  # max |delta a|, ONNX on CUDA against ONNX on CPU (the runtime's float parity bound)


# ---------------------------------------------------------------------------------------------
# stage 1: training throughput and the bundles (torch)
# ---------------------------------------------------------------------------------------------
def stage_train(out: Path, smoke: bool) -> dict:
    import onnx
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_throughput import learn_rate  # the training benchmark's own timing

    from aolo.hw_profiles import RadioProfile, load_profile
    from aolo.runtime.bundle import ActionSpec, write_bundle
    from aolo.train.actor_export import actor_spec_from_policy, onnx_model_from_spec
    from aolo.train.sac_policy import make_sac
    from aolo.train.sb3_vec_env import ServiceVecEnv
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel
    from aolo.train.train_config import TrainConfig
    from aolo.train.training import sac_kwargs

    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    steps = 160 if smoke else 4_000
    config = TrainConfig(learning_starts=64 if smoke else 2_000)
    model = ServiceModel(get_scenario("default"))
    rates: dict[str, dict[str, float]] = {}
    for algo in ("sac", "sdrl"):
        for device in devices:
            args = argparse.Namespace(scenario="tiny" if smoke else "default", n_envs=config.n_envs, steps=steps,
                                      learning_starts=config.learning_starts, batch_size=config.batch_size,
                                      log_every=40 if smoke else 1_000, threads=1, device=device)
            with tempfile.TemporaryDirectory() as runs:
                rates.setdefault(algo, {})[device] = learn_rate(algo, args, Path(runs))[0]
        # the bundle: the actor of a fresh cpu model (its energy per decision does not depend on training)
        env = ServiceVecEnv(model.scenario, n_envs=config.n_envs, model=model, seed=0)
        sac = make_sac(algo, env, seed=0, popsan=config.popsan if algo == "sdrl" else None,
                       **sac_kwargs(config.with_(device="cpu")))
        spec = actor_spec_from_policy(sac.policy)
        onnx.save(onnx_model_from_spec(spec), out / f"{algo}.onnx")
        write_bundle(out / algo, spec, {"onnx": out / f"{algo}.onnx"}, algo=algo,
                     action=ActionSpec.from_radio_profile(load_profile("macro", RadioProfile)), overwrite=True)
    return {"torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else None,
            "steps_timed": steps, "n_envs": config.n_envs, "env_steps_per_s": rates,
            "bundles": {algo: str(out / algo) for algo in ("sac", "sdrl")}}


# ---------------------------------------------------------------------------------------------
# stage 2: ONNX on CUDA against CPU, and measured energy (no torch in this process)
# ---------------------------------------------------------------------------------------------
def stage_onnx(bundles: dict[str, str], smoke: bool) -> dict:
    import numpy as np
    import onnxruntime as ort

    from aolo.runtime.backends.onnx import OnnxBackend
    from aolo.runtime.bundle import PolicyBundle
    from aolo.runtime.energy_counters import find_counters
    from aolo.runtime.energy_measure import obs_batches
    from aolo.runtime.energy_report import measure_bundle_energy

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    search = find_counters()
    out: dict = {"onnxruntime": ort.__version__, "providers_built": ort.get_available_providers(),
                 "counters": [c.name for c in search.counters], "counter_reasons": search.reasons, "actors": {}}
    repeats, window_s, idle_s = (2, 0.05, 0.05) if smoke else (5, 1.0, 1.0)
    for algo, path in bundles.items():
        bundle = PolicyBundle.load(path)
        obs = bundle.recorded_observations()
        entry: dict = {"kind": bundle.spec.kind}
        if cuda:
            on_gpu = OnnxBackend.load(bundle, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            on_cpu = OnnxBackend.load(bundle, providers=["CPUExecutionProvider"])
            entry["cuda_provider"] = on_gpu.execution_provider
            entry["max_abs_delta_a"] = {
                str(b): float(max(np.max(np.abs(on_gpu.decide(x) - on_cpu.decide(x))) for x in obs_batches(obs, b, 4)))
                for b in (1, 256)}
            on_gpu.close()
            on_cpu.close()
        energy = {}
        for name, providers in ((("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),) if cuda else ()) + (
                ("cpu", ["CPUExecutionProvider"]),):
            m = measure_bundle_energy(path, repeats=repeats, window_s=window_s, idle_s=idle_s, search=search,
                                      providers=providers)
            energy[name] = {"provider": m.provider, "counters": m.counters, "hardware": m.hardware, "batches": {
                str(b): {"estimated_j": m.estimates[b].energy_j,
                         "latency_s_per_decision": (m.batches[b].latency_s_per_decision if b in m.batches
                                                    else m.estimates[b].latency_s),
                         **({"measured_j": m.batches[b].mean_j, "std_j": m.batches[b].std_j,
                             "idle_w": m.batches[b].idle.total_w, "by_counter_j": m.batches[b].by_counter_j()}
                            if b in m.batches else {})}
                for b in m.estimates}}
        entry["energy"] = energy
        out["actors"][algo] = entry
    return out


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
def _j(e: dict, key: str = "measured_j") -> str:
    if key not in e:
        return "not measured"
    return f"{e[key]:.3e} ± {e['std_j']:.1e} J" if key == "measured_j" else f"{e[key]:.3e} J"


def table(train: dict, onnx: dict) -> list[str]:
    """The check's table, one line per figure, columns SAC (ANN) and SDRL (SNN)."""
    rows: list[tuple[str, str, str]] = []
    a = onnx["actors"]
    if "max_abs_delta_a" in a["sac"]:
        for b in ("1", "256"):
            cells = [a[x]["max_abs_delta_a"][b] for x in ("sac", "sdrl")]
            rows.append((f"ONNX CUDA vs CPU, max abs delta a, batch {b}",
                         *(f"{c:.1e} {'ok' if c <= TOLERANCE else 'FAIL'}" for c in cells)))
    else:
        rows.append(("ONNX CUDA vs CPU, max abs delta a", "n/a (no CUDA provider)", "n/a (no CUDA provider)"))
    for dev in ("cuda", "cpu"):
        if dev not in a["sac"]["energy"]:
            continue
        e = {x: a[x]["energy"][dev] for x in ("sac", "sdrl")}
        counters = ", ".join(e["sac"]["counters"]) or "none"
        for b in ("1", "256"):
            rows.append((f"{e['sac']['provider']}: J/decision batch {b}, measured ({counters})",
                         _j(e["sac"]["batches"][b]), _j(e["sdrl"]["batches"][b])))
            rows.append((f"{e['sac']['provider']}: J/decision batch {b}, estimated ({e['sac']['hardware']} profile)",
                         _j(e["sac"]["batches"][b], "estimated_j"), _j(e["sdrl"]["batches"][b], "estimated_j")))
            rows.append((f"{e['sac']['provider']}: latency per decision batch {b}",
                         *(f"{1e6 * e[x]['batches'][b]['latency_s_per_decision']:.2f} us" for x in ("sac", "sdrl"))))
    r = train["env_steps_per_s"]
    for dev in ("cpu", "cuda"):
        if dev in r["sac"]:
            rows.append((f"training env steps/s on {dev} (1 torch thread)", f"{r['sac'][dev]:,.0f}", f"{r['sdrl'][dev]:,.0f}"))
    if "cuda" in r["sac"]:
        rows.append(("training cuda / cpu", *(f"{r[x]['cuda'] / r[x]['cpu']:.2f} x" for x in ("sac", "sdrl"))))
        faster = {x: "cuda" if r[x]["cuda"] > r[x]["cpu"] else "cpu" for x in ("sac", "sdrl")}
        rows.append(("measured faster (TrainConfig.device auto picks cpu)", faster["sac"], faster["sdrl"]))
    w = [max(len(row[i]) for row in rows + [("check", "SAC (ANN actor)", "SDRL (SNN actor)")]) for i in range(3)]
    line = lambda c: "| " + " | ".join(x.ljust(w[i]) for i, x in enumerate(c)) + " |"  # noqa: E731
    return [line(("check", "SAC (ANN actor)", "SDRL (SNN actor)")), "|" + "|".join("-" * (n + 2) for n in w) + "|"] + \
        [line(row) for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny counts (the CPU-only test)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--stage", choices=("train", "onnx"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "train":
        print(json.dumps(stage_train(args.dir, args.smoke)))
        return 0
    if args.stage == "onnx":
        print(json.dumps(stage_onnx(json.loads((args.dir / "train.json").read_text())["bundles"], args.smoke)))
        return 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aolo-device-check-") as tmp:
        d = Path(tmp)
        results = {}
        for stage in ("train", "onnx"):
            cmd = [sys.executable, __file__, "--stage", stage, "--dir", str(d)] + (["--smoke"] if args.smoke else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                print(f"device check: stage {stage} failed (exit {proc.returncode})")
                return 1
            results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
            (d / f"{stage}.json").write_text(json.dumps(results[stage]))
    onnx = results["onnx"]
    print(f"torch {results['train']['torch']} (cuda: {results['train']['cuda'] or 'none'}), onnxruntime "
          f"{onnx['onnxruntime']} (providers: {', '.join(onnx['providers_built'])})")
    print("energy counters: " + (", ".join(onnx["counters"]) or "none") +
          ("" if not onnx["counter_reasons"] else f" (not read: {'; '.join(onnx['counter_reasons'])})"))
    print("\n".join(table(results["train"], onnx)))
    print(f"device check: {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    deltas = [v for a in onnx["actors"].values() for v in a.get("max_abs_delta_a", {}).values()]
    return 0 if all(v <= TOLERANCE for v in deltas) else 1


if __name__ == "__main__":
    sys.exit(main())
