"""Energy of one actor decision: operations counted from the actual execution, priced with an
actor-hardware profile.

Counts per decision (means over the observations given):

* spiking actor on neuromorphic hardware: spikes per population; synaptic operations
  SynOps = sum over time steps of (spikes of a population x fan-out of its outgoing Linear); neuron
  updates = neurons x time steps of every LIF layer (Loihi updates every compartment each step);
* any actor on dense hardware (GPU, CPU): multiply-accumulates of every Linear, times T for an
  unrolled SNN, plus the encoder's and decoder's element work counted as MACs.

Pricing (``price``):  E = e_synop SynOps + e_neuron updates + e_mac MACs + P_static latency,
with latency the profile's per-decision (dense) or per-timestep x steps (neuromorphic) figure,
or a measured latency when given. Every figure carries the profile's source and kind, so an
estimate is never shown as a measurement. Measured energy, where a counter exists, is
:mod:`.energy_measure`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aolo.hw_profiles import ActorHardwareProfile

from .actor_spec import ActorSpec, Linear, PopulationDecoder, PopulationEncoder


@dataclass(frozen=True)
class LayerOps:
    """Operations of one population or layer per decision (means over observations)."""

    name: str
    neurons: int
    spikes: float
    synaptic_ops: float
    neuron_updates: float
    macs: float


@dataclass(frozen=True)
class OpCounts:
    """Operation counts of one decision of an actor.

    :param kind: 'snn' or 'ann'
    :param timesteps: T of the SNN (1 for an ANN)
    :param pipeline_steps: hardware time steps per decision (T plus one Dense delay per layer)
    :param layers: per population / layer counts
    """

    kind: str
    timesteps: int
    pipeline_steps: int
    layers: list[LayerOps] = field(default_factory=list)

    @property
    def synaptic_ops(self) -> float:
        return float(sum(layer.synaptic_ops for layer in self.layers))

    @property
    def neuron_updates(self) -> float:
        return float(sum(layer.neuron_updates for layer in self.layers))

    @property
    def macs(self) -> float:
        return float(sum(layer.macs for layer in self.layers))

    @property
    def spikes(self) -> float:
        return float(sum(layer.spikes for layer in self.layers))


def count_ops(spec: ActorSpec, obs: np.ndarray, spikes: list[np.ndarray] | None = None) -> OpCounts:
    """Count the operations of one decision, averaged over ``obs``.

    :param spec: the actor
    :param obs: (batch, obs_dim) float32 observations it decides on
    :param spikes: the spike trains of an actual run (encoder first, then each LIF layer, each
        (T, batch, n) in {0, 1}), e.g. from Lava; None runs the numpy reference to get them
    """
    if spec.kind == "ann":
        layers = [LayerOps(name=f"linear_{i}", neurons=n.weight.shape[0], spikes=0.0, synaptic_ops=0.0,
                           neuron_updates=0.0, macs=float(n.weight.size))
                  for i, n in enumerate(x for x in spec.nodes if isinstance(x, Linear))]
        return OpCounts(kind="ann", timesteps=1, pipeline_steps=1, layers=layers)
    if spikes is None:
        _, spikes = spec.forward_with_spikes(obs)
    enc = spec.nodes[0]
    dec = spec.nodes[-2]
    assert isinstance(enc, PopulationEncoder) and isinstance(dec, PopulationDecoder)
    pairs = spec.spiking_layers()
    T = spec.timesteps
    # spikes per decision of each population: sum over time, mean over the batch
    per_pop = [s.sum(axis=(0, 2)).mean() if s.ndim == 3 else float(s) for s in spikes]
    layers = [LayerOps(name="encoder", neurons=enc.n_out, spikes=float(per_pop[0]),
                       synaptic_ops=float(per_pop[0]) * pairs[0][0].weight.shape[0], neuron_updates=0.0,
                       macs=float(enc.n_out * T))]
    for k, (lin, lif) in enumerate(pairs):
        n = lif.threshold.shape[0]
        fan_out = pairs[k + 1][0].weight.shape[0] if k + 1 < len(pairs) else 0  # the last layer is read out
        layers.append(LayerOps(name=f"lif_{k}", neurons=n, spikes=float(per_pop[k + 1]),
                               synaptic_ops=float(per_pop[k + 1]) * fan_out, neuron_updates=float(n * T),
                               macs=float(lin.weight.size * T)))
    layers.append(LayerOps(name="decoder", neurons=dec.weight.shape[0], spikes=0.0, synaptic_ops=0.0,
                           neuron_updates=0.0, macs=float(dec.weight.size)))
    return OpCounts(kind="snn", timesteps=T, pipeline_steps=T + len(pairs), layers=layers)


@dataclass(frozen=True)
class EnergyTerm:
    """One priced term: count x unit energy (or static power x time), with where the figure comes from."""

    name: str
    energy_j: float
    source: str
    kind: str


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy of one decision on one device."""

    hardware: str
    latency_s: float
    latency_measured: bool
    terms: list[EnergyTerm]

    @property
    def energy_j(self) -> float:
        return float(sum(t.energy_j for t in self.terms))

    @property
    def dynamic_j(self) -> float:
        return float(sum(t.energy_j for t in self.terms if t.name != "static"))

    @property
    def is_estimate(self) -> bool:
        """True unless every term is a measurement (always true for a priced op count)."""
        return True


def applicable(counts: OpCounts, hw: ActorHardwareProfile) -> bool:
    """A neuromorphic chip runs only spiking actors; dense hardware runs both."""
    return hw.execution == "dense" or counts.kind == "snn"


def price(counts: OpCounts, hw: ActorHardwareProfile, measured_latency_s: float | None = None) -> EnergyEstimate:
    """Energy of one decision with ``counts`` on ``hw``.

    :param measured_latency_s: a measured decision latency, s, replacing the profile's figure in
        the static term
    :raises ValueError: an ANN on neuromorphic hardware
    """
    if not applicable(counts, hw):
        raise ValueError(f"{hw.name} is neuromorphic and cannot run an ANN actor")
    q = hw.quantities()
    terms = []
    if hw.execution == "neuromorphic":
        terms.append(EnergyTerm("synaptic_ops", counts.synaptic_ops * hw.si("energy_per_synaptic_op"),
                                q["energy_per_synaptic_op"].source, q["energy_per_synaptic_op"].kind))
        terms.append(EnergyTerm("neuron_updates", counts.neuron_updates * hw.si("energy_per_neuron_update"),
                                q["energy_per_neuron_update"].source, q["energy_per_neuron_update"].kind))
        latency = counts.pipeline_steps * hw.si("latency_per_timestep")
        latency_q = q["latency_per_timestep"]
    else:
        terms.append(EnergyTerm("macs", counts.macs * hw.si("energy_per_mac"), q["energy_per_mac"].source,
                                q["energy_per_mac"].kind))
        latency = hw.si("latency_per_decision")
        latency_q = q["latency_per_decision"]
    measured = measured_latency_s is not None
    if measured:
        latency = float(measured_latency_s)
    static_source = q["static_power"].source + ("; latency measured here" if measured else f"; latency: {latency_q.source}")
    terms.append(EnergyTerm("static", hw.si("static_power") * latency, static_source, q["static_power"].kind))
    return EnergyEstimate(hardware=hw.name, latency_s=latency, latency_measured=measured, terms=terms)


# ---------------------------------------------------------------------------------------------
# counts stored in a bundle, measured latency (energy counters: energy_counters, energy_measure)
# ---------------------------------------------------------------------------------------------
def op_counts_to_dict(counts: OpCounts) -> dict:
    """JSON-ready form of :class:`OpCounts` (the bundle manifest's ``op_counts``)."""
    return {"kind": counts.kind, "timesteps": counts.timesteps, "pipeline_steps": counts.pipeline_steps,
            "synaptic_ops": counts.synaptic_ops, "neuron_updates": counts.neuron_updates, "macs": counts.macs,
            "spikes": counts.spikes, "layers": [vars(layer) for layer in counts.layers]}


def op_counts_from_dict(d: dict) -> OpCounts:
    """Inverse of :func:`op_counts_to_dict`."""
    return OpCounts(kind=d["kind"], timesteps=int(d["timesteps"]), pipeline_steps=int(d["pipeline_steps"]),
                    layers=[LayerOps(**layer) for layer in d["layers"]])


def decision_latency_s(decide, obs: np.ndarray, repeats: int = 200) -> tuple[float, float]:
    """Median and 99th-percentile wall time of single decisions, s.

    :param decide: callable taking (1, obs_dim) float32
    :param obs: (n, obs_dim) observations, cycled through
    """
    import time

    for i in range(min(10, len(obs))):  # warm-up
        decide(obs[i : i + 1])
    times = np.empty(repeats)
    for i in range(repeats):
        row = obs[i % len(obs) : i % len(obs) + 1]
        t0 = time.perf_counter()
        decide(row)
        times[i] = time.perf_counter() - t0
    return float(np.median(times)), float(np.percentile(times, 99))


def convention_energy_j(counts: OpCounts) -> float:
    """The common SNN-paper figure (E_SNN = SynOps x 0.9 pJ, E_ANN = MACs x 4.6 pJ; Horowitz 2014,
    45 nm). It ignores memory traffic and static power: report it only beside a fuller estimate."""
    return counts.synaptic_ops * 0.9e-12 if counts.kind == "snn" else counts.macs * 4.6e-12


DEFAULT_ACTOR_HARDWARE = {"lava": "loihi2", "onnx": "server-cpu", "reference": "server-cpu"}
"""The hardware a backend stands for when the ledger charges actor energy: Lava simulates Loihi 2;
ONNX Runtime and the numpy reference run on the base station's CPU."""


def bundle_op_counts(bundle) -> OpCounts | None:
    """A bundle's op counts: the manifest's, else counted on its bundled observations, else (for an
    ANN, whose MACs need no observations) on a zero observation; None when none can be had.

    :raises BundleError: an observations file that is not a finite (n, obs_dim) float32 array
        (read by :meth:`aolo.runtime.bundle.PolicyBundle.scenario_observations`)
    """
    if bundle.manifest.op_counts.get("kind") in ("snn", "ann"):
        return op_counts_from_dict(bundle.manifest.op_counts)
    obs = bundle.scenario_observations()
    if obs is not None:
        return count_ops(bundle.spec, obs)
    if bundle.spec.kind == "ann":
        return count_ops(bundle.spec, np.zeros((1, bundle.spec.obs_dim), np.float32))
    return None


def charge_actor_energy(backend, bundle, hardware: str | None = None) -> str | None:
    """Set ``backend.energy_per_decision_j`` from the bundle's op counts priced on ``hardware``
    (default by backend: DEFAULT_ACTOR_HARDWARE); returns the hardware used, or None (and leaves
    the energy unknown) when the bundle gives no op counts."""
    from aolo.hw_profiles import load_profile

    counts = bundle_op_counts(bundle)
    if counts is None:
        return None
    hardware = hardware or DEFAULT_ACTOR_HARDWARE.get(backend.name, "server-cpu")
    backend.energy_per_decision_j = price(counts, load_profile(hardware, ActorHardwareProfile)).energy_j
    return hardware
