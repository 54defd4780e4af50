"""Loihi 2 fixed-point form of a spiking actor, and a bit-accurate numpy simulation of it.

``quantize_actor`` turns the spiking layers of an :class:`~aolo.runtime.actor_spec.ActorSpec` into
the integer parameters of Lava's bit-accurate models (``lava.proc.dense.models.PyDenseModelBitAcc``
and ``lava.proc.lif.models.PyLifModelBitAcc``, lava-nc 0.10.0), and
:meth:`FixedPointActor.forward_with_spikes` reproduces their arithmetic operation for operation.
The population encoder and decoder stay on the host in float: the encoder makes the input spikes,
and the output layer's spike counts are decoded with the float :class:`PopulationDecoder`.

Integer dynamics of one layer (Lava's bit-accurate Dense then LIF; 12-bit decays, 24-bit state):

* Dense (``weights = 2 * weight_raw``, ``weight_exp = e``, ``num_weight_bits = 8``, mixed sign)::

      acc_t = sum_j (2 * weight_raw[i, j]) * s_j,t             (exact integer sum)
      a_t   = acc_t << e   if e > 0   else   acc_t >> -e          (arithmetic shift: floor)
      a_t   -> int32                                            (the a_out port is int32)

  Loihi stores a mixed-sign 8-bit weight as an 8-bit mantissa scaled by 2 (Lava's Dense docstring:
  ``w_scale = 8 - num_weight_bits + weight_exp + isMixed()``), so Lava's Dense is handed the even
  numbers ``2 * weight_raw`` in [-256, 254]; its clip to [-256, 255] and its truncation to even
  numbers then leave them unchanged.

* LIF (``du = du_q12``, ``dv = dv_q12``, ``vth = vth_raw``, ``bias = 0``)::

      x   = trunc0(u_{t-1} * (4096 - (du_q12 + 1)) / 4096) + (a_t << 6)     (int32)
      u_t = x - 2^24 if x > 2^23;  x + 2^24 if x <= -2^23;  else x          (24-bit wrap)
      v_t = clip(trunc0(v_{t-1} * (4096 - dv_q12) / 4096) + u_t, -(2^23 - 1), 2^23 - 1)
      s_t = 1[v_t > (vth_raw << 6)];   v_t = 0 where s_t

  ``trunc0(x / 4096)`` is ``sign(x) * (|x| >> 12)`` (rounds toward zero). Lava's wrap subtracts or
  adds 2^24 once, so a current that overshoots by more than 2^24 stays outside 24 bits; the
  simulation keeps that quirk (quantised actors never get near it). The current decay has a
  built-in offset of 1 (Loihi's ``ds_offset``), the voltage decay none (``dm_offset = 0``), so the
  retained fractions are ``alpha_fix = (4095 - du_q12) / 4096`` and ``beta_fix = (4096 - dv_q12) / 4096``.
  Synaptic input and threshold are both MSB-aligned by 6 bits.

Float equivalence. One integer unit of u and v stands for ``state_step = weight_step / 2^(7 + e)``
in float, where ``weight_step`` is the float weight of one ``weight_raw`` unit (a spike adds
``weight_raw * 2 * 2^e * 2^6`` units). The threshold therefore maps as
``vth_raw = round(threshold / (2^6 * state_step)) = round(threshold * 2^(1 + e) / weight_step)``,
so the integer network runs the float dynamics of ``spec`` up to the rounding of weights,
decays and thresholds. ``weight_step`` makes the largest weight magnitude use the full int8 range
(127 or -128), and neither u nor v may leave the 24-bit range during the ``T`` steps of a decision
for *any* input spikes, nor ``vth_raw`` its 17 bits.

The exponent. By default every layer gets ``e = 0`` (``DEFAULT_WEIGHT_EXP``): the Dense output is
then the exact integer sum of the even weights ``2 * weight_raw``, which is the only Dense that
lava-dl's netx format can describe (netx's reader derives the exponent from the file's weights,
``lava.lib.dl.netx.utils.optimize_weight_bits``, so that its Dense always sums the file's integers
exactly: a shift with ``e > 0`` would need weights beyond its [-256, 254], and the floor of
``e < 0`` cannot be written at all). Where ``e = 0`` would overflow the state or ``vth_raw``, the
weight step is doubled (one bit fewer of weight) until it fits. ``weight_exp=None`` instead
searches [-8, 7] for the largest exponent that fits, which gives the state and the threshold finer
resolution relative to one weight step, but a network that only Lava (not netx) can load.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, encoder_stimulus

__all__ = [
    "DECAY_UNITY_Q12",
    "CURRENT_DECAY_OFFSET_Q12",
    "VOLTAGE_DECAY_OFFSET_Q12",
    "STATE_BITS",
    "VTH_RAW_MAX",
    "WEIGHT_EXP_MIN",
    "WEIGHT_EXP_MAX",
    "DEFAULT_WEIGHT_EXP",
    "decay_frac_to_q12",
    "decay_q12_to_frac",
    "FixedPointLayer",
    "FixedPointActor",
    "quantize_layer",
    "quantize_actor",
    "weight_rel_rms_error",
    "threshold_rel_error",
    "LayerQuantizationReport",
    "quantization_report",
    "host_encode_spikes",
    "host_decode_action",
]

# --- Loihi / Lava constants (lava-nc 0.10.0, lava/proc/lif/models.py AbstractPyLifModelFixed) -----
DECAY_UNITY_Q12 = 4096
"""``2**decay_shift``: a 12-bit decay q multiplies the state by (4096 - q - offset) / 4096."""
CURRENT_DECAY_OFFSET_Q12 = 1
"""Loihi's 1-bit ``ds_offset`` added to du: du_q12 = 4095 decays the current completely."""
VOLTAGE_DECAY_OFFSET_Q12 = 0
"""Loihi's ``dm_offset`` added to dv (0 in Lava's model)."""
DECAY_Q12_MAX = 4095
"""du and dv are unsigned 12-bit."""
STATE_BITS = 24
"""u and v are signed 24-bit."""
STATE_MAX_RAW = 2 ** (STATE_BITS - 1)
"""``max_uv_val``: u beyond +-2^23 is wrapped by 2^24 (once), v saturates at +-(2^23 - 1)."""
ACT_SHIFT = 6
"""Synaptic input is left-shifted by 6 bits before it enters u (``act_shift``)."""
VTH_SHIFT = 6
"""The threshold is left-shifted by 6 bits before the comparison with v (``vth_shift``)."""
VTH_RAW_MAX = 2**17 - 1
"""vth is unsigned 17-bit (PyLifModelBitAcc docstring)."""
WEIGHT_RAW_MIN, WEIGHT_RAW_MAX = -128, 127
"""The signed 8-bit weight mantissa."""
MIXED_SIGN_WEIGHT_FACTOR = 2
"""Lava's Dense holds a mixed-sign 8-bit mantissa scaled by 2 (``isMixed()`` in ``w_scale``)."""
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
"""Range searched for the per-layer weight exponent (Loihi's signed 4-bit weight exponent)."""
DEFAULT_WEIGHT_EXP = 0
"""The exponent every layer gets unless asked otherwise: the one lava-dl's netx format can express
(see the module docstring), so that the bundle's Lava network and its netx file are one network."""
MAX_WEIGHT_STEP_DOUBLINGS = 7
"""With a fixed exponent, how often the weight step may be doubled to keep the state in range
(after 7 doublings an int8 weight has one bit left)."""


# ================================================================================================
# Decay conversion
# ================================================================================================
def decay_frac_to_q12(decay_frac: float | np.ndarray, offset_q12: int = 0) -> np.ndarray:
    """Lava's float decay to its 12-bit integer.

    A float decay is the fraction of the state lost per step (Lava's float ``du``/``dv``; for a
    snntorch ``Synaptic`` layer ``du = 1 - alpha``, ``dv = 1 - beta``). Lava's bit-accurate LIF
    multiplies the state by ``(4096 - (q12 + offset_q12)) / 4096``, so the nearest integer is
    ``q12 = clip(round(4096 * decay_frac) - offset_q12, 0, 4095)`` (round half to even).

    :param decay_frac: (n,) or scalar, fractions in [0, 1]
    :param offset_q12: ``CURRENT_DECAY_OFFSET_Q12`` (1) for du, ``VOLTAGE_DECAY_OFFSET_Q12`` (0) for dv
    :return: (n,) or scalar int32 in 0..4095
    """
    frac = np.asarray(decay_frac, dtype=np.float64)
    if np.any(~np.isfinite(frac)) or np.any((frac < 0.0) | (frac > 1.0)):
        raise ValueError(f"decay_frac must lie in [0, 1], got range [{frac.min()}, {frac.max()}]")
    q12 = np.rint(frac * DECAY_UNITY_Q12) - offset_q12
    return np.clip(q12, 0, DECAY_Q12_MAX).astype(np.int32)


def decay_q12_to_frac(decay_q12: int | np.ndarray, offset_q12: int = 0) -> np.ndarray:
    """The float decay a 12-bit decay realises: ``(q12 + offset_q12) / 4096``, float64."""
    return (np.asarray(decay_q12, dtype=np.float64) + offset_q12) / DECAY_UNITY_Q12


# ================================================================================================
# Fixed-point layer and actor
# ================================================================================================
@dataclass(eq=False)
class FixedPointLayer:
    """One ``Linear -> CubaLIF`` pair as Lava's bit-accurate Dense and LIF parameters.

    The integer dynamics are in the module docstring.

    :param weight_raw: (out, in) int8, the 8-bit weight mantissa; Lava's Dense gets
        ``dense_weights = 2 * weight_raw`` with ``weight_exp`` and ``num_weight_bits = 8``
    :param weight_exp: Dense weight exponent, in [-8, 7]
    :param du_q12: (out,) int32 in 0..4095, current decay (Lava fixed ``du``)
    :param dv_q12: (out,) int32 in 0..4095, voltage decay (Lava fixed ``dv``)
    :param vth_raw: (out,) int32 in 0..131071, threshold before Lava's ``<< 6``
    :param weight_step: float weight of one ``weight_raw`` unit (> 0)
    """

    weight_raw: np.ndarray
    weight_exp: int
    du_q12: np.ndarray
    dv_q12: np.ndarray
    vth_raw: np.ndarray
    weight_step: float

    def __post_init__(self) -> None:
        w = np.asarray(self.weight_raw)
        if (w.ndim != 2 or w.min(initial=0) < WEIGHT_RAW_MIN or w.max(initial=0) > WEIGHT_RAW_MAX
                or np.any(w != np.rint(w))):
            raise ValueError(f"FixedPointLayer: weight_raw must be 2-D integers in [-128, 127], got {w.shape} {w.dtype}")
        self.weight_raw = w.astype(np.int8)
        self.weight_exp = int(self.weight_exp)
        if not WEIGHT_EXP_MIN <= self.weight_exp <= WEIGHT_EXP_MAX:
            raise ValueError(f"FixedPointLayer: weight_exp {self.weight_exp} outside [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]")
        n = (w.shape[0],)
        for name, hi in (("du_q12", DECAY_Q12_MAX), ("dv_q12", DECAY_Q12_MAX), ("vth_raw", VTH_RAW_MAX)):
            a = np.broadcast_to(np.asarray(getattr(self, name)), n)
            if np.any(a < 0) or np.any(a > hi) or np.any(a != np.rint(a)):
                raise ValueError(f"FixedPointLayer: {name} must be integers in 0..{hi}")
            setattr(self, name, a.astype(np.int32))
        self.weight_step = float(self.weight_step)
        if not self.weight_step > 0:
            raise ValueError("FixedPointLayer: weight_step must be > 0")

    # --- shapes and Lava's view ----------------------------------------------------------------
    @property
    def n_in(self) -> int:
        return int(self.weight_raw.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight_raw.shape[0])

    @property
    def dense_weights(self) -> np.ndarray:
        """(out, in) int32, even values in [-256, 254]: what Lava's fixed-point Dense is given."""
        return self.weight_raw.astype(np.int32) * MIXED_SIGN_WEIGHT_FACTOR

    # --- float equivalents ---------------------------------------------------------------------
    @property
    def state_step(self) -> float:
        """Float value of one integer unit of u and v: ``weight_step / 2^(7 + weight_exp)``."""
        return self.weight_step / float(2.0 ** (1 + ACT_SHIFT + self.weight_exp))

    @property
    def weight_float(self) -> np.ndarray:
        """(out, in) float64, the weights the integers represent."""
        return self.weight_raw.astype(np.float64) * self.weight_step

    @property
    def threshold_float(self) -> np.ndarray:
        """(out,) float64, the thresholds the integers represent: ``(vth_raw << 6) * state_step``."""
        return (self.vth_raw.astype(np.float64) * 2.0**VTH_SHIFT) * self.state_step

    @property
    def alpha_fixed(self) -> np.ndarray:
        """(out,) float64, retained current fraction ``(4095 - du_q12) / 4096``."""
        return 1.0 - decay_q12_to_frac(self.du_q12, CURRENT_DECAY_OFFSET_Q12)

    @property
    def beta_fixed(self) -> np.ndarray:
        """(out,) float64, retained voltage fraction ``(4096 - dv_q12) / 4096``."""
        return 1.0 - decay_q12_to_frac(self.dv_q12, VOLTAGE_DECAY_OFFSET_Q12)

    # --- bit-accurate step ----------------------------------------------------------------------
    def dense_activation(self, spikes: np.ndarray) -> np.ndarray:
        """Lava's ``PyDenseModelBitAcc`` output for one step.

        :param spikes: (batch, in) {0, 1}
        :return: (batch, out) int32, the value the Dense sends on ``a_out``
        """
        acc = spikes.astype(bool).astype(np.int64) @ self.dense_weights.T.astype(np.int64)
        if self.weight_exp > 0:
            acc = np.left_shift(acc, self.weight_exp)
        else:
            acc = np.right_shift(acc, -self.weight_exp)
        # The a_out port is int32: the shared-memory channel stores int32 (wraps like numpy casting).
        return acc.astype(np.int32)

    def lif_step(self, u: np.ndarray, v: np.ndarray, activation_in: np.ndarray) -> np.ndarray:
        """One step of Lava's ``PyLifModelBitAcc`` (bias 0), updating ``u`` and ``v`` in place.

        Written as the same numpy operations on the same dtypes as lava-nc 0.10.0's
        ``AbstractPyLifModelFixed.subthr_dynamics`` so that wrap-around and saturation match.

        :param u: (batch, out) int32 current, updated in place
        :param v: (batch, out) int32 voltage, updated in place
        :param activation_in: (batch, out) int32 from :meth:`dense_activation`
        :return: (batch, out) bool spikes
        """
        # Current: decay rounds toward zero (sign * (|x| >> 12)) in int64, back to int32.
        decayed_curr = np.int64(u) * (DECAY_UNITY_Q12 - (self.du_q12 + CURRENT_DECAY_OFFSET_Q12))
        decayed_curr = np.sign(decayed_curr) * np.right_shift(np.abs(decayed_curr), 12)
        decayed_curr = np.int32(decayed_curr)
        # Hardware MSB-aligns the synaptic input by 6 bits.
        decayed_curr += np.left_shift(activation_in.astype(np.int32), ACT_SHIFT)
        # The 24-bit current register wraps around: Lava's two wheres, one +-2^24 correction.
        wrapped = np.where(decayed_curr > STATE_MAX_RAW, decayed_curr - 2 * STATE_MAX_RAW, decayed_curr)
        wrapped = np.where(wrapped <= -STATE_MAX_RAW, decayed_curr + 2 * STATE_MAX_RAW, wrapped)
        u[:] = wrapped
        # Voltage: same decay, then the 24-bit register saturates.
        decayed_volt = np.int64(v) * (DECAY_UNITY_Q12 - (self.dv_q12 + VOLTAGE_DECAY_OFFSET_Q12))
        decayed_volt = np.sign(decayed_volt) * np.right_shift(np.abs(decayed_volt), 12)
        decayed_volt = np.int32(decayed_volt)
        updated = decayed_volt + u
        v[:] = np.clip(updated, -np.int32(STATE_MAX_RAW) + 1, np.int32(STATE_MAX_RAW) - 1)
        spikes = v > np.left_shift(self.vth_raw, VTH_SHIFT)
        v[spikes] = 0
        return spikes


@dataclass(eq=False)
class FixedPointActor:
    """A spiking actor with Loihi 2 integer layers between a float encoder and decoder.

    :param spec: the float actor (its encoder, decoder and ``timesteps`` are used as they are)
    :param layers: one :class:`FixedPointLayer` per ``(Linear, CubaLIF)`` pair of ``spec``
    """

    spec: ActorSpec
    layers: list[FixedPointLayer] = field(default_factory=list)

    def __post_init__(self) -> None:
        pairs = self.spec.spiking_layers()
        if self.spec.kind != "snn" or len(pairs) != len(self.layers) or not self.layers:
            raise ValueError("FixedPointActor: needs an snn spec and one FixedPointLayer per spiking layer")
        n_in = self.spec.nodes[0].n_out
        for k, (layer, (lin, _)) in enumerate(zip(self.layers, pairs)):
            if layer.weight_raw.shape != lin.weight.shape or layer.n_in != n_in:
                raise ValueError(f"FixedPointActor: layer {k} weight_raw {layer.weight_raw.shape} does not match {lin.weight.shape}")
            n_in = layer.n_out

    @property
    def timesteps(self) -> int:
        return self.spec.timesteps

    def run_layers(self, input_spikes: np.ndarray) -> list[np.ndarray]:
        """Bit-accurate integer simulation of the spiking layers, state zero at t = -1.

        Aligned with ``spec.forward_with_spikes``: layer k at step t reads layer k-1 at step t (the
        one-step delay of each Lava Dense is removed).

        :param input_spikes: (T, batch, n_in) {0, 1}, the encoder's spikes
        :return: per layer, (T, batch, n_out) float32 spikes in {0, 1}
        """
        steps, batch = input_spikes.shape[:2]
        u = [np.zeros((batch, l.n_out), np.int32) for l in self.layers]
        v = [np.zeros((batch, l.n_out), np.int32) for l in self.layers]
        trains = [np.zeros((steps, batch, l.n_out), np.float32) for l in self.layers]
        for t in range(steps):
            s = input_spikes[t]
            for k, layer in enumerate(self.layers):
                s = layer.lif_step(u[k], v[k], layer.dense_activation(s))
                trains[k][t] = s
        return trains

    def forward_with_spikes(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Action and spike trains, in the layout of ``ActorSpec.forward_with_spikes``.

        :param obs: (batch, obs_dim) float32
        :return: action (batch, act_dim) float32 in [-1, 1]; spikes: encoder first then each layer,
            (T, batch, n) float32 in {0, 1}
        """
        enc_spikes = host_encode_spikes(self.spec, obs)
        trains = [enc_spikes] + self.run_layers(enc_spikes)
        return host_decode_action(self.spec, trains[-1]), trains

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action, (batch, obs_dim) float32 -> (batch, act_dim) float32."""
        return self.forward_with_spikes(obs)[0]


# ================================================================================================
# Quantisation
# ================================================================================================
def _weight_step(weight: np.ndarray) -> float:
    """Float weight of one int8 unit such that the largest magnitude uses the full int8 range."""
    w_max, w_min = float(weight.max(initial=0.0)), float(weight.min(initial=0.0))
    step = max(w_max / WEIGHT_RAW_MAX, w_min / WEIGHT_RAW_MIN)
    return step if step > 0 else 1.0


def _state_bound_raw(layer_weight_raw: np.ndarray, weight_exp: int, alpha_fix: np.ndarray,
                     beta_fix: np.ndarray, timesteps: int) -> float:
    """Largest |u| or |v| (integer units) any input spike pattern can reach within ``timesteps``."""
    w = layer_weight_raw.astype(np.int64) * MIXED_SIGN_WEIGHT_FACTOR
    acc_max = np.maximum(np.clip(w, 0, None).sum(axis=1), np.clip(-w, 0, None).sum(axis=1)).astype(np.float64)
    a_max = acc_max * 2.0**weight_exp + (1.0 if weight_exp < 0 else 0.0)  # a floor adds at most 1
    step_max = a_max * 2.0**ACT_SHIFT
    u_bound = np.zeros_like(step_max)
    v_bound = np.zeros_like(step_max)
    worst = 0.0
    for _ in range(timesteps):
        u_bound = alpha_fix * u_bound + step_max
        v_bound = beta_fix * v_bound + u_bound
        worst = max(worst, float(u_bound.max(initial=0.0)), float(v_bound.max(initial=0.0)))
    return worst


def quantize_layer(linear: Linear, lif: CubaLIF, timesteps: int,
                   weight_exp: int | None = DEFAULT_WEIGHT_EXP) -> FixedPointLayer:
    """Quantise one ``Linear -> CubaLIF`` pair (see the module docstring for the mapping).

    :param linear: weight (out, in) float32, no bias
    :param lif: alpha, beta, threshold (out,) float32, thresholds >= 0
    :param timesteps: steps per decision T, for the no-overflow bound
    :param weight_exp: the Dense exponent to use (default 0, netx-compatible; the weight step is
        doubled until the state and threshold fit), or None to search [-8, 7] for the largest
        exponent that fits with the full int8 weight range
    :raises ValueError: on a bias, a negative threshold, or when nothing keeps the state in range
    """
    if linear.bias is not None:
        raise ValueError("quantize_layer: a spiking Linear must have no bias")
    if np.any(lif.threshold < 0):
        raise ValueError("quantize_layer: Lava's vth is unsigned, thresholds must be >= 0")
    if weight_exp is not None and not WEIGHT_EXP_MIN <= weight_exp <= WEIGHT_EXP_MAX:
        raise ValueError(f"quantize_layer: weight_exp {weight_exp} outside [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]")
    weight = linear.weight.astype(np.float64)
    du_q12 = decay_frac_to_q12(1.0 - lif.alpha.astype(np.float64), CURRENT_DECAY_OFFSET_Q12)
    dv_q12 = decay_frac_to_q12(1.0 - lif.beta.astype(np.float64), VOLTAGE_DECAY_OFFSET_Q12)
    alpha_fix = 1.0 - decay_q12_to_frac(du_q12, CURRENT_DECAY_OFFSET_Q12)
    beta_fix = 1.0 - decay_q12_to_frac(dv_q12, VOLTAGE_DECAY_OFFSET_Q12)
    threshold = lif.threshold.astype(np.float64)
    if weight_exp is None:  # the largest exponent first, full weight range
        candidates = [(e, 0) for e in range(WEIGHT_EXP_MAX, WEIGHT_EXP_MIN - 1, -1)]
    else:  # the given exponent, the finest weight step first
        candidates = [(weight_exp, k) for k in range(MAX_WEIGHT_STEP_DOUBLINGS + 1)]
    for exp, doublings in candidates:
        step = _weight_step(weight) * 2.0**doublings
        weight_raw = np.clip(np.rint(weight / step), WEIGHT_RAW_MIN, WEIGHT_RAW_MAX).astype(np.int8)
        vth_raw = np.rint(threshold * 2.0 ** (1 + exp) / step)
        if vth_raw.max(initial=0) > VTH_RAW_MAX:
            continue
        if _state_bound_raw(weight_raw, exp, alpha_fix, beta_fix, timesteps) > STATE_MAX_RAW - 1:
            continue
        return FixedPointLayer(weight_raw=weight_raw, weight_exp=exp, du_q12=du_q12, dv_q12=dv_q12,
                               vth_raw=vth_raw.astype(np.int32), weight_step=step)
    what = ("no weight_exp in [-8, 7]" if weight_exp is None
            else f"weight_exp {weight_exp} with up to {MAX_WEIGHT_STEP_DOUBLINGS} doublings of the weight step")
    raise ValueError(f"quantize_layer: {what} keeps vth within 17 bits and u, v within 24 bits")


def quantize_actor(spec: ActorSpec, weight_exp: int | None = DEFAULT_WEIGHT_EXP) -> FixedPointActor:
    """Quantise every spiking layer of an SNN ``spec`` for Lava's bit-accurate (``fixed_pt``) models.

    :param spec: kind 'snn'
    :param weight_exp: see :func:`quantize_layer` (default 0: the network netx can load too)
    :return: the fixed-point actor; its encoder and decoder are ``spec``'s, in float
    """
    if spec.kind != "snn":
        raise ValueError(f"quantize_actor: only spiking actors have a fixed-point form, got kind {spec.kind!r}")
    layers = [quantize_layer(lin, lif, spec.timesteps, weight_exp) for lin, lif in spec.spiking_layers()]
    return FixedPointActor(spec=spec, layers=layers)


LAYER_ARRAYS = ("weight_raw", "du_q12", "dv_q12", "vth_raw")


def save_fixed_point(fixed: FixedPointActor, path: str | Path) -> Path:
    """Write the integer parameters of every layer to an ``.npz`` (the bundle's ``lava_fixed``)."""
    arrays: dict[str, np.ndarray] = {"n_layers": np.array(len(fixed.layers))}
    for k, layer in enumerate(fixed.layers):
        for name in LAYER_ARRAYS:
            arrays[f"layer{k}_{name}"] = getattr(layer, name)
        arrays[f"layer{k}_weight_exp"] = np.array(layer.weight_exp)
        arrays[f"layer{k}_weight_step"] = np.array(layer.weight_step)
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_fixed_point(spec: ActorSpec, path: str | Path) -> FixedPointActor:
    """Read an ``.npz`` written by :func:`save_fixed_point` for ``spec``.

    :raises ValueError: a missing array or a layer that does not fit ``spec`` (named)
    """
    n_spiking = len(spec.spiking_layers())
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["n_layers"]) != n_spiking:
                raise ValueError(f"{path}: field 'n_layers' is {int(z['n_layers'])}, the actor has {n_spiking} "
                                 "spiking layers")
            layers = [FixedPointLayer(**{name: z[f"layer{k}_{name}"] for name in LAYER_ARRAYS},
                                      weight_exp=int(z[f"layer{k}_weight_exp"]), weight_step=float(z[f"layer{k}_weight_step"]))
                      for k in range(n_spiking)]
    except KeyError as e:
        raise ValueError(f"{path}: missing array {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a fixed-point .npz file ({e})") from None
    return FixedPointActor(spec=spec, layers=layers)


# ================================================================================================
# Quantisation report
# ================================================================================================
def weight_rel_rms_error(weight: np.ndarray, layer: FixedPointLayer) -> float:
    """Relative RMS weight error ``||W - weight_raw * weight_step|| / ||W||`` (0 for all-zero W)."""
    w = np.asarray(weight, dtype=np.float64)
    norm = float(np.sqrt(np.sum(w * w)))
    if norm == 0.0:
        return 0.0
    diff = w - layer.weight_float
    return float(np.sqrt(np.sum(diff * diff)) / norm)


def threshold_rel_error(threshold: np.ndarray, layer: FixedPointLayer) -> np.ndarray:
    """Per-neuron relative threshold error ``|theta_fix - theta| / theta``, (out,) float64 (0 where theta = 0)."""
    theta = np.asarray(threshold, dtype=np.float64)
    err = np.abs(layer.threshold_float - theta)
    return np.divide(err, theta, out=np.zeros_like(err), where=theta > 0)


@dataclass(frozen=True)
class LayerQuantizationReport:
    """How far one fixed-point layer is from its float layer."""

    weight_exp: int
    """Dense weight exponent chosen."""
    weight_step: float
    """Float weight of one int8 unit."""
    weight_rel_rms_frac: float
    """Relative RMS weight error."""
    threshold_max_rel_frac: float
    """Largest per-neuron relative threshold error."""
    alpha_max_abs_error: float
    """Largest |alpha - (4095 - du_q12) / 4096|."""
    beta_max_abs_error: float
    """Largest |beta - (4096 - dv_q12) / 4096|."""
    state_headroom_frac: float
    """Worst-case |u| or |v| over a decision as a fraction of 2^23 (<= 1: no wrap, no saturation)."""


def quantization_report(fixed: FixedPointActor) -> list[LayerQuantizationReport]:
    """One :class:`LayerQuantizationReport` per spiking layer of ``fixed.spec``."""
    out = []
    for layer, (lin, lif) in zip(fixed.layers, fixed.spec.spiking_layers()):
        bound = _state_bound_raw(layer.weight_raw, layer.weight_exp, layer.alpha_fixed, layer.beta_fixed,
                                 fixed.timesteps)
        out.append(LayerQuantizationReport(
            weight_exp=layer.weight_exp,
            weight_step=layer.weight_step,
            weight_rel_rms_frac=weight_rel_rms_error(lin.weight, layer),
            threshold_max_rel_frac=float(threshold_rel_error(lif.threshold, layer).max(initial=0.0)),
            alpha_max_abs_error=float(np.abs(lif.alpha.astype(np.float64) - layer.alpha_fixed).max(initial=0.0)),
            beta_max_abs_error=float(np.abs(lif.beta.astype(np.float64) - layer.beta_fixed).max(initial=0.0)),
            state_headroom_frac=bound / STATE_MAX_RAW,
        ))
    return out


# ================================================================================================
# Host-side float I/O (encoder spikes in, decoded action out), identical to ActorSpec's reference
# ================================================================================================
def host_encode_spikes(spec: ActorSpec, obs: np.ndarray) -> np.ndarray:
    """The population encoder's regular spikes, the same float32 operations as ``ActorSpec``'s reference.

    :param obs: (batch, obs_dim) float32
    :return: (T, batch, obs_dim * pop) float32 in {0, 1}
    """
    enc = spec.nodes[0]
    if not isinstance(enc, PopulationEncoder):
        raise ValueError("host_encode_spikes: spec must start with a PopulationEncoder")
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != spec.obs_dim:
        raise ValueError(f"obs must be (batch, {spec.obs_dim}), got {obs.shape}")
    stim = encoder_stimulus(enc, obs)
    v_enc = np.zeros_like(stim)
    spikes = np.zeros((spec.timesteps,) + stim.shape, np.float32)
    for t in range(spec.timesteps):
        v_enc = v_enc + stim
        s = (v_enc > enc.vth).astype(np.float32)
        v_enc = v_enc - s * np.float32(enc.vth)
        spikes[t] = s
    return spikes


def host_decode_action(spec: ActorSpec, output_spikes: np.ndarray) -> np.ndarray:
    """Spike rates of the last layer through the float ``PopulationDecoder`` and tanh.

    :param output_spikes: (T, batch, act_dim * pop) {0, 1}
    :return: (batch, act_dim) float32 in [-1, 1]
    """
    dec = spec.nodes[-2]
    if not isinstance(dec, PopulationDecoder):
        raise ValueError("host_decode_action: spec must end with PopulationDecoder, Tanh")
    trains = np.asarray(output_spikes, dtype=np.float32)
    batch = trains.shape[1]
    rate = trains.mean(axis=0).reshape(batch, spec.act_dim, -1)
    mean = np.einsum("bkj,kj->bk", rate, dec.weight) + dec.bias
    return np.tanh(mean).astype(np.float32)
