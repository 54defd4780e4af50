"""The spiking actor as a NIR graph (Neuromorphic Intermediate Representation), built by hand.

snntorch's own NIR export fails with nir 1.0.8, so aolo writes the graph directly from the actor
spec: ``input -> linear_0 -> lif_0 -> linear_1 -> lif_1 -> ... -> output``. The graph's input is
the encoder's spike vector and its output the last layer's spikes; the population encoder and
decoder, which NIR has no primitives for, travel in the graph's metadata with T.

NIR's CubaLIF is continuous in time (tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I).
Forward Euler with step dt gives aolo's discrete neuron (i = alpha i + x, v = beta v + i) exactly when
alpha = 1 - dt / tau_syn, beta = 1 - dt / tau_mem, w_in = 1 / (1 - alpha), r = 1 / (1 - beta),
v_leak = 0, v_reset = 0: :func:`decay_to_time_constant_s` is the one place this conversion is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, Tanh

DEFAULT_DT_S = 1e-3
"""Time step the discrete decays are read against, s (Loihi's algorithmic timestep is unitless;
1 ms is the convention of snntorch's and Lava's NIR bridges)."""


def decay_to_time_constant_s(decay: np.ndarray, dt_s: float) -> np.ndarray:
    """Continuous time constant of a discrete per-step decay: tau = dt / (1 - decay), s."""
    decay = np.asarray(decay, dtype=np.float64)
    if np.any(decay >= 1.0) or np.any(decay < 0.0):
        raise ValueError("decay must lie in [0, 1) to have a finite time constant")
    return dt_s / (1.0 - decay)


def time_constant_to_decay(tau_s: np.ndarray, dt_s: float) -> np.ndarray:
    """Inverse of :func:`decay_to_time_constant_s`: decay = 1 - dt / tau."""
    return 1.0 - dt_s / np.asarray(tau_s, dtype=np.float64)


def spec_to_nir(spec: ActorSpec, dt_s: float = DEFAULT_DT_S):
    """The spiking core of an SNN actor spec as a ``nir.NIRGraph`` (see the module docstring)."""
    import nir

    if spec.kind != "snn":
        raise ValueError("NIR export needs a spiking actor (kind 'snn')")
    enc, dec = spec.nodes[0], spec.nodes[-2]
    assert isinstance(enc, PopulationEncoder) and isinstance(dec, PopulationDecoder)
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([enc.n_out])})}
    edges, prev = [], "input"
    for k, (lin, lif) in enumerate(spec.spiking_layers()):
        tau_syn = decay_to_time_constant_s(lif.alpha, dt_s)
        tau_mem = decay_to_time_constant_s(lif.beta, dt_s)
        n = lif.threshold.shape[0]
        nodes[f"linear_{k}"] = nir.Linear(weight=lin.weight.astype(np.float64))
        nodes[f"lif_{k}"] = nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=1.0 / (1.0 - lif.beta.astype(np.float64)),
            v_leak=np.zeros(n), v_threshold=lif.threshold.astype(np.float64), v_reset=np.zeros(n),
            w_in=1.0 / (1.0 - lif.alpha.astype(np.float64)),
        )
        edges += [(prev, f"linear_{k}"), (f"linear_{k}", f"lif_{k}")]
        prev = f"lif_{k}"
    nodes["output"] = nir.Output(output_type={"output": np.array([spec.spiking_layers()[-1][1].threshold.shape[0]])})
    edges.append((prev, "output"))
    metadata = {
        "aolo_actor": "popsan", "dt_s": dt_s, "timesteps": spec.timesteps, "obs_dim": spec.obs_dim,
        "act_dim": spec.act_dim, "encoder_mean": enc.mean.astype(np.float64), "encoder_std": enc.std.astype(np.float64),
        "encoder_vth": enc.vth, "decoder_weight": dec.weight.astype(np.float64), "decoder_bias": dec.bias.astype(np.float64),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def nir_to_spec(graph) -> ActorSpec:
    """Rebuild the actor spec from a graph written by :func:`spec_to_nir`."""
    md = graph.metadata
    missing = [k for k in ("dt_s", "timesteps", "encoder_mean", "decoder_weight") if k not in md]
    if missing:
        raise ValueError(f"NIR graph: metadata lacks {', '.join(missing)}; not written by aolo")
    dt_s = float(np.asarray(md["dt_s"]))
    nodes: list = [PopulationEncoder(mean=md["encoder_mean"], std=md["encoder_std"], vth=float(np.asarray(md["encoder_vth"])))]
    k = 0
    while f"linear_{k}" in graph.nodes:
        lif = graph.nodes[f"lif_{k}"]
        nodes.append(Linear(weight=graph.nodes[f"linear_{k}"].weight))
        nodes.append(CubaLIF(alpha=time_constant_to_decay(lif.tau_syn, dt_s), beta=time_constant_to_decay(lif.tau_mem, dt_s),
                             threshold=lif.v_threshold))
        k += 1
    nodes += [PopulationDecoder(weight=md["decoder_weight"], bias=md["decoder_bias"]), Tanh()]
    return ActorSpec(kind="snn", obs_dim=int(np.asarray(md["obs_dim"])), act_dim=int(np.asarray(md["act_dim"])),
                     timesteps=int(np.asarray(md["timesteps"])), nodes=nodes)


def write_nir(spec: ActorSpec, path: str | Path, dt_s: float = DEFAULT_DT_S) -> Path:
    """Write the spec's NIR graph to an HDF5 file; returns the path."""
    import nir

    path = Path(path)
    nir.write(path, spec_to_nir(spec, dt_s))
    return path


def read_nir(path: str | Path):
    """Read a NIR graph file."""
    import nir

    return nir.read(path)
