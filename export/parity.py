"""Parity of every export target against the actor it came from.

Each check runs the target on the same observations as its reference and returns a
:class:`ParityResult`: the largest action difference, the share of equal spikes, and whether it
meets its criterion. Observations are representative: drawn from the scenario's own simulator.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aolo.runtime.actor_spec import ActorSpec
from aolo.runtime.fixed_point import FixedPointActor

ACTION_TOLERANCE = 1e-5
FIXED_SPIKE_AGREEMENT_MIN_FRAC = 0.97


@dataclass(frozen=True)
class ParityResult:
    """One target against its reference.

    :param target: e.g. "onnx", "lava_float", "lava_fixed", "nir"
    :param reference: what it was compared with
    :param n_obs: observations compared
    :param max_abs_action_diff: largest |action difference| over all observations and dims
    :param spike_agreement_frac: share of equal spikes over every population and step (None: no spikes)
    :param criterion: the pass rule, in words
    :param passed: the rule holds
    :param seconds: wall time of the check
    """

    target: str
    reference: str
    n_obs: int
    max_abs_action_diff: float
    spike_agreement_frac: float | None
    criterion: str
    passed: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def scenario_observations(scenario_name: str, n: int, seed: int) -> np.ndarray:
    """``n`` observations a policy meets on the scenario, (n, obs_dim) float32.

    Drawn from ``n_bs`` base stations stepped with the class-aware LP (so the quality slack and the
    rest evolve as in service), one observation per BS per step.
    """
    from aolo.train.policies import LPPolicy
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import BatchSimulator, ServiceModel, observe

    model = ServiceModel(get_scenario(scenario_name))
    n_bs = min(64, n)
    sim = BatchSimulator(model, n_bs=n_bs, seed=seed)
    ctx = sim.reset(seed=seed)
    policy = LPPolicy(per_class=True)
    policy.reset(sim, seed)
    rows = []
    while sum(r.shape[0] for r in rows) < n:
        rows.append(observe(ctx))
        sim.step(*policy.decide(ctx, rows[-1]))
        ctx = sim.context
    return np.concatenate(rows)[:n]


def _spike_agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    equal = sum(float((x == y).sum()) for x, y in zip(a, b) if x is not None and y is not None)
    total = sum(float(x.size) for x, y in zip(a, b) if x is not None and y is not None)
    return equal / total if total else 1.0


def check_actions(target: str, reference: str, act: Callable[[np.ndarray], np.ndarray],
                  ref_act: Callable[[np.ndarray], np.ndarray], obs: np.ndarray,
                  tolerance: float = ACTION_TOLERANCE) -> ParityResult:
    """Actions of ``act`` against ``ref_act`` within ``tolerance``."""
    t0 = time.perf_counter()
    diff = float(np.max(np.abs(np.asarray(act(obs), np.float64) - np.asarray(ref_act(obs), np.float64))))
    return ParityResult(target, reference, obs.shape[0], diff, None, f"max |Δa| <= {tolerance:g}",
                        diff <= tolerance, time.perf_counter() - t0)


def check_lava_float(spec: ActorSpec, obs: np.ndarray) -> ParityResult:
    """One persistent Lava floating-point network against the numpy reference: spikes equal
    exactly (after the Dense delay shift, which the network undoes) and actions within 1e-5."""
    from aolo.runtime.backends.lava import LavaActorNetwork

    t0 = time.perf_counter()
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    with LavaActorNetwork(spec, "float", record_hidden=True) as net:
        action, spikes = net.decide(obs)
    agree = _spike_agreement(spikes, ref_spikes)
    diff = float(np.max(np.abs(action - ref_action)))
    return ParityResult("lava_float", "numpy reference", obs.shape[0], diff, agree,
                        "spikes equal, max |Δa| <= 1e-05", agree == 1.0 and diff <= ACTION_TOLERANCE,
                        time.perf_counter() - t0)


def check_lava_fixed(spec: ActorSpec, fixed: FixedPointActor, obs: np.ndarray) -> tuple[ParityResult, ParityResult]:
    """Lava's bit-accurate network against aolo's integer model (exact), and that model's spikes
    against the float reference (at least 97% equal)."""
    from aolo.runtime.backends.lava import LavaActorNetwork

    t0 = time.perf_counter()
    fx_action, fx_spikes = fixed.forward_with_spikes(obs)
    with LavaActorNetwork(spec, "fixed", record_hidden=True, fixed_point=fixed) as net:
        action, spikes = net.decide(obs)
    agree = _spike_agreement(spikes, fx_spikes)
    diff = float(np.max(np.abs(action - fx_action)))
    exact = ParityResult("lava_fixed", "numpy fixed-point model", obs.shape[0], diff, agree,
                         "spikes and actions equal", agree == 1.0 and diff == 0.0, time.perf_counter() - t0)
    t1 = time.perf_counter()
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    agree_float = _spike_agreement(fx_spikes[1:], ref_spikes[1:])
    vs_float = ParityResult("lava_fixed", "float reference", obs.shape[0], float(np.max(np.abs(fx_action - ref_action))),
                            agree_float, f"spike agreement >= {FIXED_SPIKE_AGREEMENT_MIN_FRAC:.0%}",
                            agree_float >= FIXED_SPIKE_AGREEMENT_MIN_FRAC, time.perf_counter() - t1)
    return exact, vs_float


def check_nir(spec: ActorSpec, path: Path, obs: np.ndarray) -> ParityResult:
    """The NIR file read back rebuilds an actor whose spikes equal the reference's."""
    from .nir_graph import nir_to_spec, read_nir

    t0 = time.perf_counter()
    rebuilt = nir_to_spec(read_nir(path))
    a, sa = rebuilt.forward_with_spikes(obs)
    b, sb = spec.forward_with_spikes(obs)
    agree = _spike_agreement(sa, sb)
    diff = float(np.max(np.abs(a - b)))
    return ParityResult("nir", "numpy reference", obs.shape[0], diff, agree, "spikes equal after the round trip",
                        agree == 1.0 and diff <= ACTION_TOLERANCE, time.perf_counter() - t0)


def check_nir_snntorch(spec: ActorSpec, path: Path, obs: np.ndarray) -> ParityResult:
    """The NIR file as snnTorch loads it (``snntorch.import_nir.import_from_nir``), run on the host
    encoder's spikes: every layer's spikes equal the reference's, and the actions after aolo's
    host decoder within 1e-5."""
    from aolo.runtime.fixed_point import host_decode_action, host_encode_spikes

    from .nir_graph import read_nir, snntorch_spike_trains

    t0 = time.perf_counter()
    trains = snntorch_spike_trains(read_nir(path), host_encode_spikes(spec, obs))
    action = host_decode_action(spec, trains[-1])
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    agree = _spike_agreement(trains, ref_spikes[1:])
    diff = float(np.max(np.abs(action - ref_action)))
    return ParityResult("nir_snntorch", "numpy reference", obs.shape[0], diff, agree,
                        f"spikes equal, max |Δa| <= {ACTION_TOLERANCE:g}", agree == 1.0 and diff <= ACTION_TOLERANCE,
                        time.perf_counter() - t0)


def check_netx(spec: ActorSpec, fixed: FixedPointActor, path: Path, obs: np.ndarray) -> ParityResult:
    """The netx file loaded by ``netx.hdf5.Network`` and run on ``Loihi2SimCfg`` with the
    bit-accurate models, against aolo's own Lava fixed-point network of ``fixed``: the file holds
    ``fixed``'s integers, and spikes and actions are equal."""
    from aolo.runtime.backends.lava import LavaActorNetwork
    from aolo.runtime.fixed_point import LAYER_ARRAYS, host_decode_action, host_encode_spikes

    from .netx import read_netx, run_netx

    t0 = time.perf_counter()
    in_file = read_netx(spec, path)
    same_integers = all(np.array_equal(getattr(a, name), getattr(b, name)) and a.weight_exp == b.weight_exp
                        for a, b in zip(in_file.layers, fixed.layers) for name in LAYER_ARRAYS)
    trains = run_netx(path, spec, host_encode_spikes(spec, obs))
    action = host_decode_action(spec, trains[-1])
    with LavaActorNetwork(spec, "fixed", record_hidden=True, fixed_point=fixed) as net:
        ref_action, ref_spikes = net.decide(obs)
    agree = _spike_agreement(trains, ref_spikes[1:])
    diff = float(np.max(np.abs(action - ref_action)))
    return ParityResult("netx", "aolo Lava fixed-point network", obs.shape[0], diff, agree,
                        "same integers, spikes and actions equal", same_integers and agree == 1.0 and diff == 0.0,
                        time.perf_counter() - t0)
