"""``aolo energy``: actor energy per decision of a bundle on every hardware target, counted from
an actual run of the actor and priced with the hardware profiles; SNN against ANN side by side.

What is measured here and what is estimated is kept apart: op counts come from running the actor
(Lava for a spiking actor, so the spikes are the chip model's own), the CPU latency is measured
with ONNX Runtime on this machine, energy is measured only where an energy counter exists (RAPL,
NVML), and every priced figure is labelled an estimate with its sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aolo.hw_profiles import ActorHardwareProfile, load_profile

from .energy import (EnergyEstimate, OpCounts, applicable, convention_energy_j, count_ops, decision_latency_s,
                     energy_counters, price, rapl_energy_per_decision_j)

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
    measured: dict[str, float] = field(default_factory=dict)  # counter name -> J per decision
    counters: dict[str, str] = field(default_factory=dict)

    @property
    def convention_j(self) -> float:
        return convention_energy_j(self.counts)


def _observations(bundle, n_obs: int) -> np.ndarray:
    if "observations" in bundle.targets:
        obs = np.load(bundle.file("observations"))
        return obs[:n_obs]
    raise ValueError(f"{bundle.path}: the bundle carries no representative observations (re-export it with aolo export)")


def measure_bundle(path: str | Path, hardware: tuple[str, ...] = HARDWARE, n_obs: int = 200,
                   use_lava: bool = True) -> BundleEnergy:
    """Run the bundle's actor on its representative observations, count, time and price it.

    :param n_obs: observations to run (spiking actors: through one persistent Lava network)
    :param use_lava: count spikes on Lava (the chip model); False uses the numpy reference,
        which export proved spike-identical
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
                          counted_with=counted_with, n_obs=len(obs), cpu_latency_s=cpu_latency,
                          counters=energy_counters())
    for name in hardware:
        hw = load_profile(name, ActorHardwareProfile)
        if not applicable(counts, hw):
            continue
        measured = cpu_latency if name == "server-cpu" else None
        result.estimates[name] = price(counts, hw, measured_latency_s=measured)
    for counter, where in result.counters.items():
        if counter.startswith("rapl:") and "onnx" in bundle.targets:
            backend = make_backend("onnx", bundle)
            try:
                result.measured[f"{counter} (CPU package, ONNX Runtime)"] = rapl_energy_per_decision_j(backend.decide, obs, where)
            finally:
                backend.close()
    return result


def counter_note(counters: dict[str, str]) -> str:
    """One line saying which energy counters exist, or plainly that none does."""
    if not counters:
        return ("No energy counter on this machine (no RAPL under /sys/class/powercap, no NVIDIA GPU through NVML): "
                "every energy figure below is an estimate from op counts and profiles, not a measurement.")
    return "Energy counters: " + ", ".join(f"{k} ({v})" for k, v in counters.items())


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
                  f"{est.dynamic_j:.3e}", f"{static:.3e}", f"{est.energy_j:.3e}", "estimate (" + ", ".join(kinds) + ")")
    for name, joules in e.measured.items():
        t.add_row(name, "", "", "", "", "", "", f"{joules:.3e}", "measured")
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

    t = Table(title=f"SNN ({snn.bundle}) against ANN ({ann.bundle}), energy per decision (estimates)")
    for col in ("hardware", "SNN (J)", "ANN (J)", "ANN / SNN"):
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
    ax.set_ylabel("energy per decision (J, estimate)")
    ax.set_title("Actor energy per decision by hardware (op counts x profile figures + static power x latency)")
    ax.legend()
    return save_figure(fig, path)
