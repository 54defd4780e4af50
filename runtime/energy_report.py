"""``aolo energy``: actor energy per decision of a bundle on every hardware target, counted from
an actual run of the actor and priced with the hardware profiles; SNN against ANN side by side;
and with ``--measure``, measured on the hardware at hand where an energy counter is readable.

What is measured here and what is estimated is kept apart: op counts come from running the actor
(Lava for a spiking actor, so the spikes are the chip model's own), the CPU latency is measured
with ONNX Runtime on this machine, energy is measured only where a counter is readable (RAPL,
NVML, through Zeus: :mod:`.energy_counters`, :mod:`.energy_measure`), and every figure says
whether it is measured or estimated; where no counter is readable the reason is printed with
the estimate, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from aolo.hw_profiles import ActorHardwareProfile, load_profile

from .energy import (EnergyEstimate, OpCounts, applicable, bundle_op_counts, convention_energy_j, count_ops,
                     decision_latency_s, price)
from .energy_counters import CounterSearch
from .energy_measure import BatchEnergy

HARDWARE = ("loihi1", "loihi2", "a100", "jetson-tx2", "server-cpu")
POPSAN_LOIHI_VS_TX2_RATIO = 140.0
"""PopSAN (Tang et al., CoRL 2020): the spiking actor on Loihi used about 140x less energy per
inference than the same task's deep actor on a Jetson TX2."""


@dataclass
class BundleEnergy:
    """Energy of one bundle's decisions on each hardware target."""

    bundle: str
    algo: str
    kind: str
    counts: OpCounts
    counted_with: str
    n_obs: int
    cpu_latency_s: float | None
    estimates: dict[str, EnergyEstimate] = field(default_factory=dict)

    @property
    def convention_j(self) -> float:
        return convention_energy_j(self.counts)


def _observations(bundle, n_obs: int) -> np.ndarray:
    obs = bundle.scenario_observations()
    if obs is not None:
        return obs[:n_obs]
    raise ValueError(f"{bundle.path}: the bundle carries no representative observations (re-export it with aolo export)")


def measure_bundle(path: str | Path, hardware: tuple[str, ...] = HARDWARE, n_obs: int = 200,
                   use_lava: bool = True) -> BundleEnergy:
    """Run the bundle's actor on its representative observations, count, time and price it.

    :param n_obs: observations to run (spiking actors: through one persistent Lava network)
    :param use_lava: count spikes on Lava (the chip model); False uses the numpy reference,
        which export proved spike-identical
    :raises BundleError: an unusable bundle, or an observations file that is not a finite
        (n, obs_dim) float32 array (one line naming it)
    :raises ValueError: a bundle without the scenario's observations
    """
    from .backends import make_backend
    from .bundle import PolicyBundle

    bundle = PolicyBundle.load(path)
    spec = bundle.spec
    obs = _observations(bundle, n_obs)
    counted_with = "numpy reference"
    spikes = None
    if spec.kind == "snn" and use_lava:
        from .backends.lava import LavaActorNetwork

        with LavaActorNetwork(spec, "float", record_hidden=True) as net:
            _, spikes = net.decide(obs)
        counted_with = "Lava (Loihi2SimCfg, floating_pt)"
    counts = count_ops(spec, obs, spikes=spikes)
    cpu_latency = None
    if "onnx" in bundle.targets:
        backend = make_backend("onnx", bundle)
        try:
            cpu_latency = decision_latency_s(backend.decide, obs)[0]
        finally:
            backend.close()
    result = BundleEnergy(bundle=str(path), algo=bundle.manifest.algo, kind=spec.kind, counts=counts,
                          counted_with=counted_with, n_obs=len(obs), cpu_latency_s=cpu_latency)
    for name in hardware:
        hw = load_profile(name, ActorHardwareProfile)
        if not applicable(counts, hw):
            continue
        measured = cpu_latency if name == "server-cpu" else None
        result.estimates[name] = price(counts, hw, measured_latency_s=measured)
    return result


def counter_note(search: CounterSearch) -> str:
    """One line: the counters this machine exposes and what the figures that follow are; where
    none is readable, why, and that every figure is estimated."""
    if not search.counters:
        return (f"{search.note()} Every energy figure below is estimated (op counts x hardware profiles), "
                "not measured.")
    return f"{search.note()} Figures labelled measured come from these counters; every other one is estimated."


def energy_table(e: BundleEnergy):
    """Rich table of one bundle's energy per decision by hardware."""
    from rich.table import Table

    t = Table(title=f"actor energy per decision: {e.bundle} ({e.algo}, {e.kind}; counts from {e.counted_with} "
                    f"on {e.n_obs} scenario observations)")
    for col in ("hardware", "SynOps", "neuron updates", "MACs", "latency", "dynamic (J)", "static (J)", "total (J)",
                "kind"):
        t.add_column(col, justify="left" if col in ("hardware", "kind") else "right")
    for name, est in e.estimates.items():
        static = est.energy_j - est.dynamic_j
        kinds = sorted({term.kind for term in est.terms})
        t.add_row(name, f"{e.counts.synaptic_ops:.0f}" if e.kind == "snn" else "-",
                  f"{e.counts.neuron_updates:.0f}" if e.kind == "snn" else "-",
                  f"{e.counts.macs:.0f}", f"{est.latency_s * 1e6:.1f} us" + (" (measured)" if est.latency_measured else ""),
                  f"{est.dynamic_j:.3e}", f"{static:.3e}", f"{est.energy_j:.3e}",
                  "estimated (profile figures: " + ", ".join(kinds) + ")")
    t.caption = (f"per decision: {e.counts.spikes:.1f} spikes, {e.counts.synaptic_ops:.0f} SynOps, "
                 f"{e.counts.neuron_updates:.0f} neuron updates, {e.counts.macs:.0f} MACs; the SNN-paper convention "
                 f"(SynOps x 0.9 pJ or MACs x 4.6 pJ, no memory or static power) gives {e.convention_j:.3e} J")
    return t


def source_lines(e: BundleEnergy) -> list[str]:
    """Where every priced figure comes from, one line per hardware and term."""
    lines = []
    for name, est in e.estimates.items():
        lines += [f"{name} {term.name} [{term.kind}]: {term.source}" for term in est.terms]
    return lines


def compare_rows(snn: BundleEnergy, ann: BundleEnergy) -> list[tuple[str, float | None, float, float | None]]:
    """(hardware, SNN J, ANN J, ANN / SNN) per hardware; SNN None where it cannot run."""
    rows = []
    for name in HARDWARE:
        a = ann.estimates.get(name)
        s = snn.estimates.get(name)
        if a is None and s is None:
            continue
        rows.append((name, None if s is None else s.energy_j, None if a is None else a.energy_j,
                     None if (s is None or a is None) else a.energy_j / s.energy_j))
    return rows


def compare_table(snn: BundleEnergy, ann: BundleEnergy):
    """Rich table of SNN against ANN per hardware, with the PopSAN headline ratio."""
    from rich.table import Table

    t = Table(title=f"SNN ({snn.bundle}) against ANN ({ann.bundle}), energy per decision, estimated")
    for col in ("hardware", "SNN (J, estimated)", "ANN (J, estimated)", "ANN / SNN"):
        t.add_column(col, justify="right")
    for name, s, a, r in compare_rows(snn, ann):
        t.add_row(name, "n/a" if s is None else f"{s:.3e}", "n/a" if a is None else f"{a:.3e}",
                  "-" if r is None else f"{r:.1f}x")
    head = headline_ratio(snn, ann)
    if head is not None:
        t.caption = (f"SNN on Loihi 1 against ANN on Jetson TX2: {head:.0f}x less energy "
                     f"(PopSAN reported about {POPSAN_LOIHI_VS_TX2_RATIO:.0f}x); convention-only ratio "
                     f"{ann.convention_j / snn.convention_j:.1f}x")
    return t


def headline_ratio(snn: BundleEnergy, ann: BundleEnergy) -> float | None:
    """ANN on the Jetson TX2 over SNN on Loihi 1, PopSAN's comparison."""
    if "loihi1" in snn.estimates and "jetson-tx2" in ann.estimates:
        return ann.estimates["jetson-tx2"].energy_j / snn.estimates["loihi1"].energy_j
    return None


def plot_compare(snn: BundleEnergy, ann: BundleEnergy, path: str | Path) -> Path:
    """Bar chart, log scale: energy per decision per hardware, SNN beside ANN."""
    from aolo.figures import pyplot, save_figure

    plt = pyplot()

    rows = compare_rows(snn, ann)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    s_vals = [np.nan if s is None else s for _, s, _, _ in rows]
    a_vals = [np.nan if a is None else a for _, _, a, _ in rows]
    ax.bar(x - 0.2, s_vals, 0.4, label=f"SNN ({snn.algo})", color="#55a868")
    ax.bar(x + 0.2, a_vals, 0.4, label=f"ANN ({ann.algo})", color="#4c72b0")
    ax.set_xticks(x, [name for name, *_ in rows])
    ax.set_yscale("log")
    ax.set_ylabel("energy per decision (J, estimated)")
    ax.set_title("Actor energy per decision by hardware (op counts x profile figures + static power x latency)")
    ax.legend()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# aolo energy --measure: the bundle's actor on the hardware at hand
# ---------------------------------------------------------------------------------------------
MEASURE_BATCHES = (1, 256)
"""Batch sizes measured: one decision per call (a base station deciding each request as it comes)
and 256 (a batch of requests decided at once, as the gateway's decide batcher can)."""
GPU_PROFILE = "a100"
"""The actor-hardware profile priced beside a measurement on CUDA (the only GPU profile shipped:
its figures are an A100's, whatever GPU ran)."""


@dataclass
class MeasuredBundle:
    """``aolo energy --measure``: one bundle's actor measured on this machine.

    :param provider: the ONNX Runtime execution provider that ran it
    :param hardware: the profile of the estimate beside the measurement (server-cpu, or a100 on CUDA)
    :param search: the counters found, and why others are missing
    :param counters: names of the counters read (those of the device that ran the actor)
    :param batches: batch size -> measured energy (empty without a counter)
    :param estimates: batch size -> the op-count estimate on ``hardware`` with the latency measured
        at that batch
    """

    bundle: str
    algo: str
    kind: str
    provider: str
    hardware: str
    search: CounterSearch
    counters: list[str] = field(default_factory=list)
    batches: dict[int, BatchEnergy] = field(default_factory=dict)
    estimates: dict[int, EnergyEstimate] = field(default_factory=dict)
    repeats: int = 0
    window_s: float = 0.0
    idle_s: float = 0.0

    @property
    def measured(self) -> bool:
        return bool(self.batches)


def measure_bundle_energy(path: str | Path, batch_sizes: tuple[int, ...] = MEASURE_BATCHES, repeats: int = 5,
                          window_s: float = 1.0, idle_s: float = 1.0, search: Optional[CounterSearch] = None,
                          providers: Optional[list[str]] = None) -> MeasuredBundle:
    """Run the bundle's ONNX actor on this machine (CUDA when this onnxruntime build has it, else
    CPU) at each batch size, and measure its energy per decision where a counter is readable
    (:func:`aolo.runtime.energy_measure.measure_batch`: idle baseline just before, ``repeats``
    windows of ``window_s``); beside it, the op-count estimate on the same kind of hardware.

    :param search: counters to use (default: :func:`aolo.runtime.energy_counters.find_counters`)
    :param providers: ONNX Runtime providers (default: CUDA if built in, then CPU)
    :raises ValueError: a bundle without an ``onnx`` target or observations
    :raises BundleError: an unusable bundle
    """
    from .backends.onnx import OnnxBackend
    from .bundle import PolicyBundle
    from .energy_counters import find_counters
    from .energy_measure import measure_batch, time_batch

    bundle = PolicyBundle.load(path)
    if "onnx" not in bundle.targets:
        raise ValueError(f"{bundle.path}: --measure runs the bundle's ONNX actor, and this bundle has no onnx target")
    obs = bundle.recorded_observations()
    counts = bundle_op_counts(bundle) or count_ops(bundle.spec, obs)
    backend = OnnxBackend.load(bundle, providers=providers)
    try:
        on_gpu = backend.execution_provider != "CPUExecutionProvider"
        search = search if search is not None else find_counters()
        use = search.of("gpu", "cpu", "dram") if on_gpu else search.of("cpu", "dram")
        hardware = GPU_PROFILE if on_gpu else "server-cpu"
        hw = load_profile(hardware, ActorHardwareProfile)
        out = MeasuredBundle(bundle=str(path), algo=bundle.manifest.algo, kind=bundle.spec.kind,
                             provider=backend.execution_provider, hardware=hardware, search=search,
                             counters=[c.name for c in use], repeats=repeats, window_s=window_s, idle_s=idle_s)
        for b in batch_sizes:
            if use:
                out.batches[b] = measure_batch(backend.decide, obs, b, use, repeats=repeats, window_s=window_s,
                                               idle_s=idle_s)
                latency = out.batches[b].latency_s_per_decision
            else:
                latency = time_batch(backend.decide, obs, b, window_s=min(window_s, 0.5))
            out.estimates[b] = price(counts, hw, measured_latency_s=latency)
    finally:
        backend.close()
    return out


def measured_table(m: MeasuredBundle):
    """Rich table of ``aolo energy --measure``: per batch size, the measured energy per decision
    (mean ± std over repeats, min-max, idle power, by counter) beside the op-count estimate; or,
    without a counter, the estimate alone, labelled."""
    from rich.table import Table

    t = Table(title=f"energy per decision on this machine: {m.bundle} ({m.algo}, {m.kind}) on ONNX Runtime "
                    f"{m.provider}")
    for col in ("batch", "windows", "measured J/decision", "measured spread (min-max)", "idle power (measured)",
                "measured by counter (J/decision)", f"estimated on {m.hardware} (J/decision)"):
        t.add_column(col, justify="left" if col.startswith("measured by") else "right")
    for b, est in m.estimates.items():
        r = m.batches.get(b)
        if r is None:
            t.add_row(str(b), "-", "not measured", "-", "-", "-", f"{est.energy_j:.3e}")
            continue
        t.add_row(str(b), f"{len(r.windows)} x {r.decisions} decisions", f"{r.mean_j:.3e} ± {r.std_j:.1e}",
                  f"{r.min_j:.3e} - {r.max_j:.3e}", f"{r.idle.total_w:.2f} W",
                  ", ".join(f"{k} {v:.2e}" for k, v in r.by_counter_j().items()), f"{est.energy_j:.3e}")
    if m.measured:
        t.caption = (f"method: Zeus counters {', '.join(m.counters)}, read around {m.repeats} windows of about "
                     f"{m.window_s:g} s of decide calls per batch size; the idle power of each counter, measured "
                     f"over {m.idle_s:g} s just before, is subtracted (mean ± sample std over the windows); the "
                     f"estimate prices the op counts on the {m.hardware} profile with the latency measured here")
    else:
        t.caption = (f"not measured: {'; '.join(m.search.reasons) or 'no counter of the device that ran the actor'}. "
                     f"The estimate prices the op counts on the {m.hardware} profile with the latency measured here.")
    return t
