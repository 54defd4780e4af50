"""PopSAN: the population-coded spiking actor network of SDRL (Tang et al., CoRL 2020, "Deep
Reinforcement Learning with Population-Coded Spiking Neural Network for Continuous Control").

    obs -> PopulationEncoder -> [Linear (no bias) -> CubaLIF] * (n_hidden + 1) -> PopulationDecoder

run for ``timesteps`` steps. The deterministic path computes exactly the node equations of
:mod:`aolo.runtime.actor_spec` (same operations, same order, float32), so that
:func:`aolo.train.actor_export.actor_spec_from_policy` is an exact export:

* encoder: ``z = (obs - mean) / std``; ``a = exp(-0.5 z z)``; ``v += a``; ``s = 1[v > vth]``;
  ``v -= s vth`` with ``vth = 0.999`` (PopSAN's deterministic regular spikes). Gradient through
  the spike: straight-through (identity), as PopSAN's ``PseudoEncoderSpikeRegular``.
* hidden and output populations: ``snntorch.Synaptic(reset_mechanism="zero", reset_delay=False)``,
  ``i = alpha i + x``; ``v = beta v + i``; ``s = 1[v > threshold]``; ``v = 0 where s``. PopSAN's
  neuron (``volt = volt * VDECAY * (1 - spike) + current``) is the same recursion. Layers have no
  bias so that they map onto Lava ``Dense``; PopSAN's ``nn.Linear`` layers have one.
* decoder: ``rate = sum_t s_t / T`` of the output populations, grouped (act_dim, pop_per_act_dim);
  ``mean[k] = sum_j w[k, j] rate[k, j] + b[k]`` (PopSAN's grouped ``Conv1d``). The squashing tanh
  is SB3's, outside this module.
"""

from __future__ import annotations

import math
from typing import Any

import snntorch
import torch
from snntorch import surrogate
from torch import nn

__all__ = ["PopSANConfig", "PopSAN", "PopulationEncoder", "PopulationDecoder", "ENCODER_VTH", "cuba_lif_step", "heaviside"]

from .popsan_config import ENCODER_VTH, PopSANConfig


class _RegularSpike(torch.autograd.Function):
    """``1[v > vth]`` forward, identity backward (PopSAN ``PseudoEncoderSpikeRegular``)."""

    @staticmethod
    def forward(ctx: Any, volt: torch.Tensor, vth: torch.Tensor) -> torch.Tensor:
        return (volt > vth).to(volt.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_out, None


class PopulationEncoder(nn.Module):
    """Gaussian receptive fields with learnable ``mean``, ``std``: (obs_dim, pop) float32, driving
    deterministic regular spikes.

    :param obs_dim: observation size
    :param pop: neurons per observation dimension
    :param mean_range: initial means, evenly spaced over this range
    :param std_init: initial width, same for every neuron
    """

    def __init__(self, obs_dim: int, pop: int, mean_range: tuple[float, float], std_init: float) -> None:
        super().__init__()
        lo, hi = mean_range
        means = torch.linspace(lo, hi, pop) if pop > 1 else torch.full((1,), (lo + hi) / 2)
        self.mean = nn.Parameter(means.repeat(obs_dim, 1).float())
        self.std = nn.Parameter(torch.full((obs_dim, pop), float(std_init)))
        self.register_buffer("vth", torch.tensor(ENCODER_VTH, dtype=torch.float32))

    @property
    def n_out(self) -> int:
        return self.mean.numel()

    def stimulus(self, obs: torch.Tensor) -> torch.Tensor:
        """Receptive-field activation.

        :param obs: (batch, obs_dim) float32
        :return: (batch, obs_dim * pop) float32 in [0, 1]
        """
        z = (obs[:, :, None] - self.mean) / self.std
        # exp in float64, rounded once to float32: the correctly rounded value, which every
        # backend can reproduce bit for bit (float32 exp differs between libraries by an ulp,
        # enough to flip a regular spike whose voltage sits at vth).
        return torch.exp((-0.5 * z * z).double()).to(z.dtype).reshape(obs.shape[0], -1)

    def forward(self, obs: torch.Tensor, timesteps: int) -> list[torch.Tensor]:
        """Regular spike trains.

        :param obs: (batch, obs_dim) float32
        :return: ``timesteps`` tensors (batch, obs_dim * pop) {0,1}
        """
        stim = self.stimulus(obs)
        volt = torch.zeros_like(stim)
        spikes = []
        grad = torch.is_grad_enabled()
        for _ in range(timesteps):
            volt = volt + stim
            # without gradients, the Function's forward itself (its apply costs more than the step)
            s = _RegularSpike.apply(volt, self.vth) if grad else (volt > self.vth).to(volt.dtype)
            volt = volt - s * self.vth
            spikes.append(s)
        return spikes


class PopulationDecoder(nn.Module):
    """Per-action weighted sum of output spike rates, ``weight``: (act_dim, pop), ``bias``: (act_dim,).

    Initialised like PopSAN's ``Conv1d(act_dim, act_dim, pop, groups=act_dim)``: U(-1/sqrt(pop), 1/sqrt(pop)).
    """

    def __init__(self, act_dim: int, pop: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(pop)
        self.weight = nn.Parameter(torch.empty(act_dim, pop).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(act_dim).uniform_(-bound, bound))

    def forward(self, rate: torch.Tensor) -> torch.Tensor:
        """:param rate: (batch, act_dim * pop) float32 in [0, 1]
        :return: (batch, act_dim) float32, the pre-tanh action mean
        """
        act_dim, pop = self.weight.shape
        return (rate.reshape(-1, act_dim, pop) * self.weight).sum(-1) + self.bias


class PopSAN(nn.Module):
    """Population-coded spiking actor network: observation to pre-tanh action mean.

    :param obs_dim: observation size
    :param act_dim: action size
    :param config: shape and neuron constants
    """

    def __init__(self, obs_dim: int, act_dim: int, config: PopSANConfig | None = None) -> None:
        super().__init__()
        cfg = config or PopSANConfig()
        self.config = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.encoder = PopulationEncoder(obs_dim, cfg.pop_per_obs_dim, cfg.encoder_mean_range, cfg.encoder_std_init)
        sizes = [self.encoder.n_out, *cfg.hidden_sizes, act_dim * cfg.pop_per_act_dim]
        # No bias: spiking layers map onto Lava Dense (see runtime/actor_spec.py).
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out, bias=False) for n_in, n_out in zip(sizes, sizes[1:]))
        grad = surrogate.atan() if cfg.surrogate == "atan" else surrogate.fast_sigmoid()
        self.neurons = nn.ModuleList(
            snntorch.Synaptic(alpha=cfg.alpha, beta=cfg.beta, threshold=cfg.threshold, spike_grad=grad,
                              reset_mechanism="zero", reset_delay=False)
            for _ in self.layers
        )
        self.decoder = PopulationDecoder(act_dim, cfg.pop_per_act_dim)
        self.reference_neurons = False
        """Step the layers through snntorch's ``Synaptic`` modules (the reference) rather than
        :func:`cuba_lif_step` (the default, the same numbers faster); for tests."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """:param obs: (batch, obs_dim) float32
        :return: (batch, act_dim) float32, the pre-tanh action mean
        """
        return self.forward_with_spikes(obs)[0]

    def forward_with_spikes(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean plus every population's spike train (encoder first, then each CubaLIF layer).

        The layers step through :func:`cuba_lif_step`, snntorch's recursion without its per-call
        bookkeeping, or with :attr:`reference_neurons` through snntorch's ``Synaptic`` modules
        themselves; both give the same spikes, means and gradients bit for bit
        (``tests/test_popsan_actor.py``).

        :param obs: (batch, obs_dim) float32
        :return: mean (batch, act_dim) float32; spikes: list of (T, batch, n) {0,1} float32
        """
        steps = self.config.timesteps
        enc = self.encoder(obs, steps)
        trains: list[list[torch.Tensor]] = [enc] + [[] for _ in self.layers]
        state = [tuple(torch.zeros(obs.shape[0], lin.out_features, dtype=obs.dtype, device=obs.device)
                       for _ in range(2)) for lin in self.layers]
        if self.reference_neurons:
            for t in range(steps):
                s = enc[t]
                for k, (lin, lif) in enumerate(zip(self.layers, self.neurons)):
                    s, syn, mem = lif(lin(s), *state[k])
                    state[k] = (syn, mem)
                    trains[k + 1].append(s)
            for lif in self.neurons:
                lif.reset_mem()  # drop snntorch's references to this graph
        else:
            # without gradients, the surrogates' common forward, 1[x > 0] (snntorch's atan and
            # fast_sigmoid alike), saves an autograd Function call per layer and step
            fire = [lif.spike_grad if torch.is_grad_enabled() else heaviside for lif in self.neurons]
            consts = [(lif.alpha.clamp(0, 1), lif.beta.clamp(0, 1), lif.threshold, f)
                      for lif, f in zip(self.neurons, fire)]
            for t in range(steps):
                s = enc[t]
                for k, lin in enumerate(self.layers):
                    s, syn, mem = cuba_lif_step(lin(s), *state[k], *consts[k])
                    state[k] = (syn, mem)
                    trains[k + 1].append(s)
        # sum / T, not mean(): torch's mean multiplies by 1/T, which is not the spec's division.
        rate = torch.stack(trains[-1]).sum(0) / steps
        return self.decoder(rate), [torch.stack(tr) for tr in trains]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """``1[x > 0]`` as float: the forward pass of snntorch's surrogate spike functions."""
    return (x > 0).float()


def cuba_lif_step(current: torch.Tensor, syn: torch.Tensor, mem: torch.Tensor, alpha: torch.Tensor,
                  beta: torch.Tensor, threshold: torch.Tensor, spike_grad: Any) -> tuple[torch.Tensor, ...]:
    """One step of ``snntorch.Synaptic(reset_mechanism="zero", reset_delay=False)`` with graded
    spike factor 1, written out: ``syn = alpha syn + current``; ``mem = beta mem + syn``;
    ``spk = spike_grad(mem - threshold)``; ``mem = mem - spk mem``.

    Written by hand because snntorch's module spends most of a step on bookkeeping (state stored
    as module attributes, shape checks, a second surrogate call for the reset signal, the reset
    branch recomputed), about two thirds of SDRL's training time. It leaves out snntorch's reset
    signal ``1[mem_before > threshold]``, which is always 0 here: every step ends with the
    membrane at or below the threshold (a neuron above it spikes and is zeroed), and the state
    starts at 0. With that term 0, snntorch's extra operations add exact zeros to the values and
    the gradients, so this step is the module's to the bit; ``spike_grad`` is the module's own
    surrogate, so the backward pass is too.

    :param current: (batch, n) float32, the layer's input current
    :param syn: (batch, n) float32, synaptic current after the previous step
    :param mem: (batch, n) float32, membrane voltage after the previous step
    :param alpha: synaptic decay, 0-d, clamped to [0, 1]
    :param beta: membrane decay, 0-d, clamped to [0, 1]
    :param threshold: firing threshold, 0-d
    :param spike_grad: the neuron's spike function (Heaviside forward, surrogate backward)
    :return: spikes (batch, n) {0,1}, syn, mem (after the reset)
    """
    syn = alpha * syn + current
    mem = beta * mem + syn
    spk = spike_grad(mem - threshold)
    return spk, syn, mem - spk * mem
