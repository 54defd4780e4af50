"""Turn a trained run into a policy bundle, proving each target equal to the trained actor, and
re-verify a bundle later on fresh observations.

Export: the actor spec is read from the run and checked against the torch actor itself; then
ONNX (written from the spec, checked against torch on 10,000 observations), NIR (read back and
rebuilt, and loaded by snnTorch's own importer), Lava (one persistent float network and one
bit-accurate fixed-point network, each run on 200 observations, and the fixed-point model against
float), netx (lava-dl's HDF5 format for Loihi 2, loaded by netx itself and run against aolo's Lava
fixed-point network). The parity results, the quantisation report and the Loihi 2 resource use
(``runtime/loihi_fit.py``) travel inside the bundle.
"""

from __future__ import annotations

import json
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
from aolo.runtime.fixed_point import FixedPointActor, load_fixed_point, quantize_actor, save_fixed_point
from aolo.train.seeds import EVAL_SEEDS

from .parity import (ParityResult, check_actions, check_lava_fixed, check_lava_float, check_netx, check_nir,
                     check_nir_snntorch, scenario_observations)

TARGETS = ("onnx", "lava", "nir", "netx")
SPIKING_TARGETS = ("lava", "nir", "netx")
"""Targets only a spiking actor has."""
N_NIR_OBS = 1000
"""Observations the NIR file is checked on (round trip and snnTorch)."""
MAX_RESOURCES_BYTES = 1 << 20
"""``loihi_resources.json`` is a few kB."""
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
    loihi_resources: dict | None = None
    """The fixed-point network's use of one Loihi 2 chip (``LoihiResources.to_dict()``), or None."""

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

    :param targets: subset of ("onnx", "lava", "nir", "netx"); all but "onnx" need a spiking actor
    :param n_onnx_obs: observations for the ONNX and torch checks
    :param n_lava_obs: observations run through each Lava network
    :param eval_seeds: seeds of the quantisation report's policy-level comparison
    :raises ValueError: an unknown target, a target the actor cannot have, a failed parity check,
        or (with "netx") a network that does not fit one Loihi 2 chip, naming the layer and the limit
    """
    from aolo.hw_profiles import RadioProfile, load_profile
    from aolo.train.actor_export import onnx_model_from_spec
    from aolo.train.run import load_run
    from aolo.train.scenario import get_scenario

    from aolo.runtime.loihi_fit import LoihiLimits, loihi_resources

    from .nir_graph import write_nir

    run = load_run(run_dir)
    spec = run.spec
    if spec.kind != "snn" and any(t in targets for t in SPIKING_TARGETS):
        raise ValueError(f"{run_dir}: a {spec.kind} actor has no Lava, NIR or netx form; export it --to onnx")
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
            result.parity.append(check_nir(spec, path, obs[:N_NIR_OBS]))
            result.parity.append(check_nir_snntorch(spec, path, obs[:N_NIR_OBS]))
            artefacts["nir"] = path
        fixed = quantize_actor(spec) if ("lava" in targets or "netx" in targets) else None
        if fixed is not None:
            resources = loihi_resources(fixed, LoihiLimits.load())
            result.loihi_resources = resources.to_dict()
            if "netx" in targets and not resources.fits:
                raise ValueError(f"--to netx: the actor does not fit one Loihi 2 chip: {resources.violations[0]}")
            for line in resources.violations:
                log(f"warning: {line}")
            artefacts["loihi_resources"] = write_json_atomic(tmp / "loihi_resources.json", result.loihi_resources)
        if "lava" in targets:
            assert fixed is not None
            artefacts.update(_export_lava(spec, fixed, obs, tmp, result, n_lava_obs, run.config.scenario, eval_seeds,
                                          log))
        if "netx" in targets:
            assert fixed is not None
            artefacts["netx"] = _export_netx(spec, fixed, obs[:n_lava_obs], tmp, result, log)
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
    """Recompute every target's parity on fresh observations.

    ONNX Runtime and NIR are compared with the bundle's numpy reference (which export proved equal
    to the torch actor), Lava float with the reference, Lava fixed with the integer model, netx with
    aolo's Lava fixed-point network of the bundle's integers (``lava_fixed``, else the file's own).
    snnTorch's import of the NIR file is checked where snnTorch and nirtorch are installed; a netx
    file needs lava-dl (which imports torch). ONNX, NIR and Lava are checked torch-free.

    :raises ModuleNotFoundError: the bundle has a netx file and lava-dl is not installed (the
        message says what to install)

    :param seed: observation seed; default: a fresh one from the clock
    :param scenario: scenario to draw observations from; default: the one the actor was trained on
    """
    bundle = PolicyBundle.load(path)
    spec = bundle.spec
    seed = int(time.time_ns() % 2**31) if seed is None else seed
    recorded = bundle.manifest.training.get("scenario", "default")
    scenario = scenario or str(recorded.get("name", "default") if isinstance(recorded, dict) else recorded)
    obs = scenario_observations(scenario, n_obs, seed)
    results = []
    if "onnx" in bundle.targets:
        from aolo.runtime.backends import make_backend

        onnx_backend = make_backend("onnx", bundle)  # from the verified bytes, refusing external data
        results.append(check_actions("onnx", "numpy reference", onnx_backend.decide, spec.forward, obs))
        onnx_backend.close()
    if "nir" in bundle.targets:
        results.append(check_nir(spec, bundle.file("nir"), obs[:N_NIR_OBS]))
        if _snntorch_importer_installed():
            results.append(check_nir_snntorch(spec, bundle.file("nir"), obs[:N_NIR_OBS]))
    fixed = load_fixed_point(spec, bundle.file("lava_fixed")) if "lava_fixed" in bundle.targets else None
    if fixed is not None:
        results.append(check_lava_float(spec, obs[:n_lava_obs]))
        results.extend(check_lava_fixed(spec, fixed, obs[:n_lava_obs]))
    if "netx" in bundle.targets:
        from .netx import read_netx

        path = bundle.file("netx")
        results.append(check_netx(spec, fixed if fixed is not None else read_netx(spec, path), path, obs[:n_lava_obs]))
    return results


def _snntorch_importer_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("snntorch", "nirtorch"))


def bundle_loihi_resources(path: str | Path) -> tuple[dict | None, bool | None]:
    """The resource use of a bundle's fixed-point network on one Loihi 2 chip, recomputed from its
    integers (``lava_fixed``, else ``netx``), and whether it equals the bundle's own record.

    :return: (``LoihiResources.to_dict()``, recorded one equal) or (None, None) for a bundle with no
        fixed-point network; the second item is None when the bundle records none
    """
    from aolo.runtime.loihi_fit import LoihiLimits, loihi_resources

    bundle = PolicyBundle.load(path)
    if "lava_fixed" in bundle.targets:
        fixed = load_fixed_point(bundle.spec, bundle.file("lava_fixed"))
    elif "netx" in bundle.targets:
        from .netx import read_netx

        fixed = read_netx(bundle.spec, bundle.file("netx"))
    else:
        return None, None
    now = loihi_resources(fixed, LoihiLimits.load()).to_dict()
    if "loihi_resources" not in bundle.targets:
        return now, None
    with open(bundle.file("loihi_resources"), "rb") as f:
        data = f.read(MAX_RESOURCES_BYTES + 1)
    bundle.verify_bytes("loihi_resources", data)  # the bytes read are the ones the manifest lists
    try:
        recorded = json.loads(data) if len(data) <= MAX_RESOURCES_BYTES else None
    except (ValueError, UnicodeDecodeError):
        recorded = None
    return now, recorded == now


def _export_lava(spec: ActorSpec, fixed: FixedPointActor, obs: np.ndarray, tmp: Path, result: ExportResult,
                 n_lava_obs: int, scenario: str, eval_seeds: Sequence[int],
                 log: Callable[[str], object]) -> dict[str, Path]:
    """The Lava target: write the Loihi 2 fixed-point network, check float and fixed Lava networks
    against the reference, and report what quantisation changes (parity and the report go into
    ``result``).

    :param fixed: the quantised actor (``quantize_actor(spec)``)
    :param obs: (n, obs_dim) float32 scenario observations
    :param tmp: folder for the artefacts
    :return: the artefacts, target -> file (``lava_fixed``, ``quantization_report``)
    """
    from .quantization import layer_table, policy_effect, report_dict

    t0 = time.perf_counter()
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


def _export_netx(spec: ActorSpec, fixed: FixedPointActor, obs: np.ndarray, tmp: Path, result: ExportResult,
                 log: Callable[[str], object]) -> Path:
    """The netx target: write lava-dl's HDF5 file of the fixed-point network and check that netx
    runs it exactly as aolo's Lava fixed-point network (parity goes into ``result``).

    :param fixed: the quantised actor
    :param obs: (n, obs_dim) float32 observations run through both networks
    :return: the file
    """
    from .netx import write_netx

    t0 = time.perf_counter()
    path = write_netx(fixed, tmp / "actor_netx.h5")
    result.export_s["netx"] = time.perf_counter() - t0
    log(f"running the netx file in lava-dl's netx and aolo's Lava fixed-point network on {obs.shape[0]} "
        "observations ...")
    result.parity.append(check_netx(spec, fixed, path, obs))
    return path
