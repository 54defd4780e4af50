"""Turn a trained run into a policy bundle, proving each target equal to the trained actor, and
re-verify a bundle later on fresh observations.

Export: the actor spec is read from the run and checked against the torch actor itself; then
ONNX (written from the spec, checked against torch on 10,000 observations), NIR (read back and
rebuilt), Lava (one persistent float network and one bit-accurate fixed-point network, each run on
200 observations, and the fixed-point model against float). The parity results and the
quantisation report travel inside the bundle.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from aolo.runtime.actor_spec import ActorSpec
from aolo.runtime.atomic_files import write_json_atomic
from aolo.runtime.bundle import ActionSpec, PolicyBundle, write_bundle
from aolo.runtime.energy import count_ops, op_counts_to_dict
from aolo.runtime.fixed_point import load_fixed_point, quantize_actor, save_fixed_point
from aolo.train.seeds import EVAL_SEEDS

from .parity import (ParityResult, check_actions, check_lava_fixed, check_lava_float, check_nir,
                     scenario_observations)

TARGETS = ("onnx", "lava", "nir")
N_BUNDLED_OBS = 1000
"""Representative scenario observations shipped in the bundle (for aolo energy), (n, obs_dim) float32."""
EXPORT_OBS_SEED = 424242
"""Seed of the observations export checks parity on (a verification seed, not an evaluation one)."""


@dataclass
class ExportResult:
    """What an export produced: the bundle, per-target export seconds and parity results."""

    bundle: Path
    export_s: dict[str, float] = field(default_factory=dict)
    parity: list[ParityResult] = field(default_factory=list)
    quantization: dict | None = None

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity)


def parse_targets(text: str) -> list[str]:
    """``"onnx,lava,nir"`` -> a checked list of targets."""
    targets = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ValueError(f"--to: unknown target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}")
    return targets


def export_run(run_dir: str | Path, out: str | Path, targets: Sequence[str] = TARGETS, n_onnx_obs: int = 10_000,
               n_lava_obs: int = 200, eval_seeds: Sequence[int] = EVAL_SEEDS, overwrite: bool = False,
               log=print) -> ExportResult:
    """Export a run directory to a bundle at ``out``.

    :param targets: subset of ("onnx", "lava", "nir"); "lava" and "nir" need a spiking actor
    :param n_onnx_obs: observations for the ONNX and torch checks
    :param n_lava_obs: observations run through each Lava network
    :param eval_seeds: seeds of the quantisation report's policy-level comparison
    :raises ValueError: an unknown target, a target the actor cannot have, or a failed parity check
    """
    from aolo.hw_profiles import RadioProfile, load_profile
    from aolo.train.actor_export import onnx_model_from_spec
    from aolo.train.run import load_run
    from aolo.train.scenario import get_scenario

    from .nir_graph import write_nir

    run = load_run(run_dir)
    spec = run.spec
    if spec.kind != "snn" and ("lava" in targets or "nir" in targets):
        raise ValueError(f"{run_dir}: a {spec.kind} actor has no Lava or NIR form; export it --to onnx")
    scenario = get_scenario(run.config.scenario)
    radio = load_profile(scenario.radio_profile, RadioProfile)
    result = ExportResult(bundle=Path(out))
    obs = scenario_observations(run.config.scenario, n_onnx_obs, EXPORT_OBS_SEED)
    # the spec written at training time must be the torch actor it describes
    result.parity.append(check_actions("actor_spec", "torch actor", spec.forward, run.act, obs))
    artefacts: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "onnx" in targets:
            t0 = time.perf_counter()
            import onnx
            import onnxruntime as ort

            path = tmp / "actor.onnx"
            onnx.save(onnx_model_from_spec(spec), path)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            result.export_s["onnx"] = time.perf_counter() - t0
            result.parity.append(check_actions("onnx", "torch actor", lambda o: session.run(None, {"obs": o})[0],
                                               run.act, obs))
            artefacts["onnx"] = path
        if "nir" in targets:
            t0 = time.perf_counter()
            path = write_nir(spec, tmp / "actor.nir")
            result.export_s["nir"] = time.perf_counter() - t0
            result.parity.append(check_nir(spec, path, obs[:1000]))
            artefacts["nir"] = path
        if "lava" in targets:
            artefacts.update(_export_lava(spec, obs, tmp, result, n_lava_obs, run.config.scenario, eval_seeds, log))
        failed = [p for p in result.parity if not p.passed]
        if failed:
            raise ValueError("parity failed: " + "; ".join(f"{p.target} vs {p.reference}: {p.criterion} "
                                                             f"(max |Δa| {p.max_abs_action_diff:.3g}, spikes "
                                                             f"{p.spike_agreement_frac})" for p in failed))
        obs_path = tmp / "observations.npy"
        np.save(obs_path, obs[:N_BUNDLED_OBS])
        artefacts["observations"] = obs_path
        artefacts["parity"] = write_json_atomic(tmp / "parity.json", [p.to_dict() for p in result.parity])
        op_counts = op_counts_to_dict(count_ops(spec, obs[:N_BUNDLED_OBS]))
        training = {"run_dir": str(Path(run_dir).resolve()), "algo": run.config.algo, "seed": run.config.seed,
                    "steps": int(run.state.get("num_timesteps", 0)), "scenario": scenario.to_dict()}
        write_bundle(out, spec, artefacts, algo=run.config.algo, action=ActionSpec.from_radio_profile(radio),
                     training_metadata=training, op_counts=op_counts, overwrite=overwrite)
    return result


def verify_bundle(path: str | Path, n_obs: int = 10_000, n_lava_obs: int = 200, seed: int | None = None,
                  scenario: str | None = None) -> list[ParityResult]:
    """Recompute every target's parity on fresh observations (torch-free).

    ONNX Runtime and NIR are compared with the bundle's numpy reference (which export proved equal
    to the torch actor), Lava float with the reference, Lava fixed with the integer model.

    :param seed: observation seed; default: a fresh one from the clock
    :param scenario: scenario to draw observations from; default: the one the actor was trained on
    """
    bundle = PolicyBundle.load(path)
    spec = bundle.spec
    seed = int(time.time_ns() % 2**31) if seed is None else seed
    scenario = scenario or bundle.manifest.training.get("scenario", {}).get("name", "default")
    obs = scenario_observations(scenario, n_obs, seed)
    results = []
    if "onnx" in bundle.targets:
        import onnxruntime as ort

        session = ort.InferenceSession(str(bundle.file("onnx")), providers=["CPUExecutionProvider"])
        results.append(check_actions("onnx", "numpy reference", lambda o: session.run(None, {"obs": o})[0],
                                     spec.forward, obs))
    if "nir" in bundle.targets:
        results.append(check_nir(spec, bundle.file("nir"), obs[:1000]))
    if "lava_fixed" in bundle.targets:
        results.append(check_lava_float(spec, obs[:n_lava_obs]))
        results.extend(check_lava_fixed(spec, load_fixed_point(spec, bundle.file("lava_fixed")), obs[:n_lava_obs]))
    return results


def _export_lava(spec: ActorSpec, obs: np.ndarray, tmp: Path, result: ExportResult, n_lava_obs: int, scenario: str,
                 eval_seeds: Sequence[int], log: Callable[[str], object]) -> dict[str, Path]:
    """The Lava target: quantise to Loihi 2 fixed point, check float and fixed Lava networks
    against the reference, and report what quantisation changes (parity and the report go into
    ``result``).

    :param obs: (n, obs_dim) float32 scenario observations
    :param tmp: folder for the artefacts
    :return: the artefacts, target -> file (``lava_fixed``, ``quantization_report``)
    """
    from .quantization import layer_table, policy_effect, report_dict

    t0 = time.perf_counter()
    fixed = quantize_actor(spec)
    path = save_fixed_point(fixed, tmp / "lava_fixed.npz")
    fixed = load_fixed_point(spec, path)  # check what the bundle will hold
    result.export_s["lava"] = time.perf_counter() - t0
    log(f"running Lava float and fixed networks on {n_lava_obs} observations ...")
    result.parity.append(check_lava_float(spec, obs[:n_lava_obs]))
    result.parity.extend(check_lava_fixed(spec, fixed, obs[:n_lava_obs]))
    log("evaluating the fixed-point actor against float on the evaluation seeds ...")
    result.quantization = report_dict(layer_table(spec, fixed, obs[:2000]),
                                      policy_effect(spec, fixed, scenario, list(eval_seeds)))
    qpath = write_json_atomic(tmp / "quantization_report.json", result.quantization)
    return {"quantization_report": qpath, "lava_fixed": path}
