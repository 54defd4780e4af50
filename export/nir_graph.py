"""The spiking actor as a NIR graph (Neuromorphic Intermediate Representation), built by hand.

snntorch's own NIR export fails with nir 1.0.8, so aolo writes the graph directly from the actor
spec: ``input -> linear_0 -> lif_0 -> linear_1 -> lif_1 -> ... -> output``. The graph's input is
the encoder's spike vector and its output the last layer's spikes. The population encoder and
decoder, which no NIR primitive expresses, are host-side stages (PopSAN ran them on Loihi's
embedded x86 cores): their parameters travel in the graph's metadata with T and dt, and the
metadata's ``host_encoder`` and ``host_decoder`` say what to compute.

NIR's CubaLIF is continuous in time (tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I).
Forward Euler with step dt gives aolo's discrete neuron (i = alpha i + x, v = beta v + i) exactly when
alpha = 1 - dt / tau_syn, beta = 1 - dt / tau_mem, w_in = tau_syn / dt = 1 / (1 - alpha),
r = tau_mem / dt = 1 / (1 - beta), v_leak = 0, v_reset = 0: :func:`decay_to_time_constant_s` is the
one place this conversion is made.

The step is ``DEFAULT_DT_S`` = 1e-4 s, the convention of the NIR paper's reference graphs and the
one snnTorch's importer assumes (``snntorch.import_nir`` fixes dt = 1e-4 and asserts
r == tau_mem / 1e-4 for a CubaLIF; w_in is then tau_syn / 1e-4). Importers that take dt as an
argument (Norse's ``from_nir(graph, dt=...)``, for example) must be given the graph's
``metadata["dt_s"]``; any dt gives the same discrete network when it is the one written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, Tanh

DEFAULT_DT_S = 1e-4
"""Time step the discrete decays are read against, s. Loihi's algorithmic timestep is unitless;
1e-4 s is what snnTorch's NIR importer assumes (``snntorch/import_nir.py``, snntorch 1.0), so the
graph loads there unchanged. Bundles written before used 1e-3 s; :func:`nir_to_spec` reads either."""

HOST_ENCODER_NOTE = (
    "host-side, before the graph: a[i*pop+j] = exp(-0.5 ((obs[i] - encoder_mean[i,j]) / encoder_std[i,j])^2); "
    "v_t = v_{t-1} + a; s_t = 1[v_t > encoder_vth]; v_t -= s_t * encoder_vth; t = 0..timesteps-1, v_{-1} = 0; "
    "s_t is the graph's input at step t (float32 throughout, exp in float64 rounded once to float32)"
)
HOST_DECODER_NOTE = (
    "host-side, after the graph: rate = (sum_t s_t) / timesteps of the output, grouped act_dim x pop; "
    "mean[k] = sum_j decoder_weight[k,j] rate[k*pop+j] + decoder_bias[k]; action = tanh(mean) in [-1, 1]; "
    "every neuron's state is zero before a decision's first step"
)


def decay_to_time_constant_s(decay: np.ndarray, dt_s: float) -> np.ndarray:
    """Continuous time constant of a discrete per-step decay: tau = dt / (1 - decay), s.

    :param decay: (n,) retained fraction per step (alpha or beta), in [0, 1)
    :param dt_s: the step the graph is read with, s
    :return: (n,) float64 time constants, s
    """
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
        "host_encoder": HOST_ENCODER_NOTE, "host_decoder": HOST_DECODER_NOTE,
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
    """Read a NIR graph file, refusing one that links or points outside itself.

    :raises ValueError: the file is not a self-contained HDF5 file (named)
    """
    import nir

    from .hdf5_check import check_self_contained_hdf5

    check_self_contained_hdf5(path)
    return nir.read(path)


def snntorch_spike_trains(graph, input_spikes: np.ndarray) -> list[np.ndarray]:
    """Run a NIR graph through snnTorch's own importer and return every layer's spikes.

    The graph is what another user of the file gets: ``snntorch.import_nir.import_from_nir``
    builds a ``torch.fx`` module of ``torch.nn.Linear`` and ``snntorch.Synaptic`` layers (it needs
    ``nirtorch``), which is stepped once per timestep from a zero state. Nothing of aolo's takes
    part but the hooks that read each ``lif_k`` module's output.

    :param graph: a ``nir.NIRGraph`` written by :func:`spec_to_nir` (it is changed by the importer;
        pass a freshly read one)
    :param input_spikes: (T, batch, n_in) {0, 1}, the host encoder's spikes
    :return: per spiking layer in order, (T, batch, n_k) float32 {0, 1}
    """
    import contextlib
    import io

    import snntorch.utils
    import torch
    from snntorch.import_nir import import_from_nir

    n_layers = sum(1 for name in graph.nodes if name.startswith("lif_"))
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints progress lines
        module = import_from_nir(graph)
    modules = dict(module.named_modules())
    steps = input_spikes.shape[0]
    trains: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
    hooks = [modules[f"lif_{k}"].register_forward_hook(
        lambda _m, _i, out, k=k: trains[k].append(np.asarray(out.detach().numpy(), np.float32)))
        for k in range(n_layers)]
    try:
        snntorch.utils.reset(module)
        state = None
        with torch.no_grad():
            for t in range(steps):
                x = torch.from_numpy(np.ascontiguousarray(input_spikes[t], dtype=np.float32))
                _, state = module(x) if state is None else module(x, state)
    finally:
        for h in hooks:
            h.remove()
    return [np.stack(tr) for tr in trains]
