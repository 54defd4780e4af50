"""The deployed actor as plain data: a sequence of named nodes with numpy parameters.

This is the *what* that every backend runs (numpy reference here, ONNX Runtime, Lava) and that
export writes into a policy bundle. Spiking actors (SDRL, PopSAN style) are

    PopulationEncoder -> [Linear -> CubaLIF] * n -> PopulationDecoder -> Tanh

run for ``timesteps`` steps; ANN actors (SAC) are ``[Linear -> ReLU] * n -> Linear -> Tanh``.

Node equations (t = 0..T-1, all state zero at t = -1):

* PopulationEncoder, Gaussian receptive fields with deterministic regular spikes (PopSAN):
  ``a[i*n+j] = exp(-0.5 ((obs[i] - mean[i,j]) / std[i,j])^2)``;
  ``v_t = v_{t-1} + a``; ``s_t = 1[v_t > vth]``; ``v_t -= s_t * vth``.
* Linear: ``y = x @ weight.T (+ bias)``; spiking layers carry no bias so that they map exactly
  onto Lava's ``Dense`` (whose LIF bias enters the voltage, not the current).
* CubaLIF (snntorch ``Synaptic(reset_mechanism="zero", reset_delay=False)`` = Lava ``LIF``):
  ``i_t = alpha i_{t-1} + x_t``; ``v_t = beta v_{t-1} + i_t``; ``s_t = 1[v_t > threshold]``;
  ``v_t = 0 where s_t``. Lava: du = 1 - alpha, dv = 1 - beta, vth = threshold.
* PopulationDecoder: ``rate = mean_t s_t`` of the last layer, grouped ``act_dim x pop``;
  ``mean[k] = sum_j weight[k,j] rate[k*pop+j] + bias[k]``.
* Tanh squashes the mean to [-1, 1], the env's action range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np


# Bounds of a spec read from a file a user may have been handed: far above any policy aolo trains
# (T = 5, 32 x 32 hidden, 15 x 10 encoder neurons), low enough that nothing is allocated or run
# for minutes before the spec is refused.
MAX_TIMESTEPS = 1_000
MAX_NODES = 64
MAX_WIDTH = 65_536
MAX_PARAMETERS = 50_000_000


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


@dataclass(eq=False)
class PopulationEncoder:
    """Gaussian receptive fields; ``mean``, ``std``: (obs_dim, pop) float32; ``vth``: regular-spike threshold."""

    mean: np.ndarray
    std: np.ndarray
    vth: float = 0.999

    def __post_init__(self) -> None:
        self.mean, self.std = _arr(self.mean), _arr(self.std)
        if self.mean.ndim != 2 or self.mean.shape != self.std.shape:
            raise ValueError(f"PopulationEncoder: mean {self.mean.shape} and std {self.std.shape} must be equal 2-D shapes")
        if np.any(self.std <= 0):
            raise ValueError("PopulationEncoder: std must be > 0")

    @property
    def n_out(self) -> int:
        return int(self.mean.size)


@dataclass(eq=False)
class Linear:
    """``weight``: (out, in) float32; ``bias``: (out,) float32 or None."""

    weight: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.weight = _arr(self.weight)
        if self.weight.ndim != 2:
            raise ValueError(f"Linear: weight must be 2-D, got {self.weight.shape}")
        if self.bias is not None:
            self.bias = _arr(self.bias)
            if self.bias.shape != (self.weight.shape[0],):
                raise ValueError(f"Linear: bias {self.bias.shape} does not match weight {self.weight.shape}")


@dataclass(eq=False)
class CubaLIF:
    """Current-based LIF with zero reset; ``alpha``, ``beta``, ``threshold``: (n,) float32."""

    alpha: np.ndarray
    beta: np.ndarray
    threshold: np.ndarray

    def __post_init__(self) -> None:
        self.alpha, self.beta, self.threshold = _arr(self.alpha), _arr(self.beta), _arr(self.threshold)
        n = self.threshold.shape
        if self.alpha.shape != n or self.beta.shape != n or len(n) != 1:
            raise ValueError("CubaLIF: alpha, beta and threshold must be 1-D of equal length")
        if np.any((self.alpha < 0) | (self.alpha > 1) | (self.beta < 0) | (self.beta > 1)):
            raise ValueError("CubaLIF: alpha and beta are decays in [0, 1]")


@dataclass(eq=False)
class ReLU:
    """Elementwise max(x, 0)."""


@dataclass(eq=False)
class PopulationDecoder:
    """``weight``: (act_dim, pop) float32, ``bias``: (act_dim,) float32; reads spike rates."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        self.weight, self.bias = _arr(self.weight), _arr(self.bias)
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"PopulationDecoder: weight {self.weight.shape} / bias {self.bias.shape} mismatch")


@dataclass(eq=False)
class Tanh:
    """Elementwise tanh."""


Node = Union[PopulationEncoder, Linear, CubaLIF, ReLU, PopulationDecoder, Tanh]
NODE_TYPES: dict[str, type] = {c.__name__: c for c in (PopulationEncoder, Linear, CubaLIF, ReLU, PopulationDecoder, Tanh)}


@dataclass(eq=False)
class ActorSpec:
    """A deterministic actor: ``kind`` 'snn' or 'ann', its node sequence and, for SNNs, ``timesteps``.

    :param obs_dim: observation size the actor reads, (batch, obs_dim) float32
    :param act_dim: action size it writes, (batch, act_dim) float32 in [-1, 1]
    """

    kind: str
    obs_dim: int
    act_dim: int
    nodes: list[Node]
    timesteps: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("snn", "ann"):
            raise ValueError(f"ActorSpec: kind must be 'snn' or 'ann', got {self.kind!r}")
        for name, value, high in (("obs_dim", self.obs_dim, MAX_WIDTH), ("act_dim", self.act_dim, MAX_WIDTH),
                                  ("timesteps", self.timesteps, MAX_TIMESTEPS)):
            if not 1 <= value <= high:
                raise ValueError(f"ActorSpec: field {name!r} is {value}, must be in [1, {high}]")
        if not 2 <= len(self.nodes) <= MAX_NODES:
            raise ValueError(f"ActorSpec: field 'nodes' has {len(self.nodes)} nodes, must be 2 to {MAX_NODES}")
        _check_arrays(self.nodes)
        if self.kind == "snn":
            if not isinstance(self.nodes[0], PopulationEncoder) or not isinstance(self.nodes[-2], PopulationDecoder):
                raise ValueError("ActorSpec: an snn starts with PopulationEncoder and ends with PopulationDecoder, Tanh")
            if self.timesteps < 1:
                raise ValueError("ActorSpec: timesteps must be >= 1")
        if not isinstance(self.nodes[-1], Tanh):
            raise ValueError("ActorSpec: the last node must be Tanh")

    # --- structure -------------------------------------------------------------------------
    def spiking_layers(self) -> list[tuple[Linear, CubaLIF]]:
        """The (Linear, CubaLIF) pairs of an SNN in order; empty for an ANN."""
        return [(a, b) for a, b in zip(self.nodes, self.nodes[1:]) if isinstance(a, Linear) and isinstance(b, CubaLIF)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as nested lists) with a ``type`` key per node."""
        def node_dict(n: Node) -> dict[str, Any]:
            d: dict[str, Any] = {"type": type(n).__name__}
            for k, v in vars(n).items():
                d[k] = v.tolist() if isinstance(v, np.ndarray) else v
            return d
        return {"kind": self.kind, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "timesteps": self.timesteps, "nodes": [node_dict(n) for n in self.nodes],
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActorSpec":
        if not isinstance(d, dict) or not isinstance(d.get("nodes"), list):
            raise ValueError("ActorSpec: a JSON object with a 'nodes' list is needed")
        if len(d["nodes"]) > MAX_NODES:
            raise ValueError(f"ActorSpec: field 'nodes' has {len(d['nodes'])} nodes, more than {MAX_NODES}")
        nodes = []
        for i, nd in enumerate(d["nodes"]):
            nd = dict(nd)
            tname = nd.pop("type", None)
            if tname not in NODE_TYPES:
                raise ValueError(f"ActorSpec: node {i} has unknown type {tname!r}")
            nodes.append(NODE_TYPES[tname](**nd))
        return cls(kind=d["kind"], obs_dim=int(d["obs_dim"]), act_dim=int(d["act_dim"]),
                   timesteps=int(d.get("timesteps", 1)), nodes=nodes, metadata=dict(d.get("metadata", {})))

    # --- numpy reference -------------------------------------------------------------------
    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action. ``obs``: (batch, obs_dim) float32 -> (batch, act_dim) float32 in [-1, 1]."""
        return self.forward_with_spikes(obs)[0]

    def forward_with_spikes(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Action plus the spike trains of every spiking population.

        :return: action (batch, act_dim) float32; spikes: a list, encoder first then each CubaLIF
            layer, of (T, batch, n) float32 arrays in {0, 1} (empty for an ANN).
        """
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be (batch, {self.obs_dim}), got {obs.shape}")
        if self.kind == "ann":
            x = obs
            for n in self.nodes:
                x = _apply_static(n, x)
            return x.astype(np.float32), []
        return _run_snn(self, obs)


def _check_arrays(nodes: list[Node]) -> None:
    """Every parameter finite, no layer wider than MAX_WIDTH, at most MAX_PARAMETERS in all."""
    total = 0
    for i, node in enumerate(nodes):
        for name, value in vars(node).items():
            if not isinstance(value, np.ndarray):
                continue
            total += value.size
            if any(d > MAX_WIDTH for d in value.shape):
                raise ValueError(f"ActorSpec: field 'nodes[{i}].{name}' has shape {value.shape}, wider than {MAX_WIDTH}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"ActorSpec: field 'nodes[{i}].{name}' ({type(node).__name__}) is not finite")
        if total > MAX_PARAMETERS:
            raise ValueError(f"ActorSpec: more than {MAX_PARAMETERS} parameters")


def _apply_static(n: Node, x: np.ndarray) -> np.ndarray:
    if isinstance(n, Linear):
        y = x @ n.weight.T
        return y + n.bias if n.bias is not None else y
    if isinstance(n, ReLU):
        return np.maximum(x, 0.0)
    if isinstance(n, Tanh):
        return np.tanh(x)
    raise ValueError(f"{type(n).__name__} is not a static node")


def encoder_stimulus(enc: PopulationEncoder, obs: np.ndarray) -> np.ndarray:
    """Receptive-field activation, (batch, obs_dim * pop) float32 in [0, 1]."""
    z = (obs[:, :, None] - enc.mean[None]) / enc.std[None]
    # exp in float64, rounded once: numpy's float32 exp is not correctly rounded and would flip
    # an encoder spike now and then against torch and ONNX Runtime, which do the same as here
    return np.exp((-0.5 * z * z).astype(np.float64)).astype(np.float32).reshape(obs.shape[0], -1)


def _run_snn(spec: ActorSpec, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    enc = spec.nodes[0]
    assert isinstance(enc, PopulationEncoder)
    dec = spec.nodes[-2]
    assert isinstance(dec, PopulationDecoder)
    layers = spec.spiking_layers()
    batch, steps = obs.shape[0], spec.timesteps
    stim = encoder_stimulus(enc, obs)
    v_enc = np.zeros_like(stim)
    cur = [np.zeros((batch, lif.threshold.shape[0]), np.float32) for _, lif in layers]
    mem = [np.zeros_like(c) for c in cur]
    trains = [np.zeros((steps, batch, stim.shape[1]), np.float32)] + [np.zeros((steps,) + c.shape, np.float32) for c in cur]
    for t in range(steps):
        v_enc = v_enc + stim
        s = (v_enc > enc.vth).astype(np.float32)
        v_enc = v_enc - s * np.float32(enc.vth)
        trains[0][t] = s
        for k, (lin, lif) in enumerate(layers):
            x = s @ lin.weight.T
            cur[k] = lif.alpha * cur[k] + x
            mem[k] = lif.beta * mem[k] + cur[k]
            s = (mem[k] > lif.threshold).astype(np.float32)
            mem[k] = mem[k] * (1.0 - s)
            trains[k + 1][t] = s
    rate = trains[-1].mean(axis=0).reshape(batch, spec.act_dim, -1)
    mean = np.einsum("bkj,kj->bk", rate, dec.weight) + dec.bias
    return np.tanh(mean).astype(np.float32), trains
