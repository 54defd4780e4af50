"""Loihi 2 fixed-point quantisation of a spiking actor and its bit-accurate numpy simulation."""

from __future__ import annotations

import numpy as np
import pytest

from aolo.runtime.actor_spec import (ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, Tanh)
from aolo.runtime.fixed_point import (CURRENT_DECAY_OFFSET_Q12, DEFAULT_WEIGHT_EXP, VOLTAGE_DECAY_OFFSET_Q12, FixedPointActor,
                                      FixedPointLayer, decay_frac_to_q12, decay_q12_to_frac,
                                      host_decode_action, host_encode_spikes, quantization_report, quantize_actor,
                                      quantize_layer, threshold_rel_error, weight_rel_rms_error)


def random_spiking_spec(seed: int = 0, obs_dim: int = 8, pop: int = 10, hidden: tuple[int, ...] = (64, 64),
                        act_dim: int = 2, out_pop: int = 10, timesteps: int = 5,
                        per_neuron: bool = True) -> ActorSpec:
    """A PopSAN-shaped actor with random weights scaled for 10-25% firing."""
    rng = np.random.default_rng(seed)
    nodes: list = [PopulationEncoder(mean=np.tile(np.linspace(-1, 1, pop), (obs_dim, 1)),
                                     std=np.full((obs_dim, pop), 0.3))]
    n_in = obs_dim * pop
    for n in (*hidden, act_dim * out_pop):
        nodes.append(Linear(rng.normal(0.0, 1.2 / np.sqrt(n_in), (n, n_in))))
        if per_neuron:
            nodes.append(CubaLIF(rng.uniform(0.5, 0.95, n), rng.uniform(0.6, 0.95, n), rng.uniform(0.8, 1.2, n)))
        else:
            nodes.append(CubaLIF(np.full(n, 0.8), np.full(n, 0.9), np.ones(n)))
        n_in = n
    nodes += [PopulationDecoder(rng.normal(0.0, 1.0, (act_dim, out_pop)), rng.normal(0.0, 0.1, act_dim)), Tanh()]
    return ActorSpec("snn", obs_dim, act_dim, nodes, timesteps=timesteps)


def observations(n: int, obs_dim: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, obs_dim)).astype(np.float32)


# --- decay conversion ---------------------------------------------------------------------------
def test_decay_frac_to_q12_matches_hand_values():
    # 4096 * 0.2 = 819.2 -> 819; the current decay carries Loihi's +1 offset, the voltage decay none.
    assert decay_frac_to_q12(0.2, CURRENT_DECAY_OFFSET_Q12) == 818
    assert decay_frac_to_q12(0.2, VOLTAGE_DECAY_OFFSET_Q12) == 819
    # No decay: du cannot reach 0 (offset 1), clipped to 0; dv = 0 exactly.
    assert decay_frac_to_q12(0.0, CURRENT_DECAY_OFFSET_Q12) == 0
    assert decay_frac_to_q12(0.0, VOLTAGE_DECAY_OFFSET_Q12) == 0
    # Full decay: du = 4095 gives 4096/4096 with the offset; dv saturates at 4095.
    assert decay_frac_to_q12(1.0, CURRENT_DECAY_OFFSET_Q12) == 4095
    assert decay_frac_to_q12(1.0, VOLTAGE_DECAY_OFFSET_Q12) == 4095
    np.testing.assert_array_equal(decay_frac_to_q12(np.array([0.5, 0.25])), [2048, 1024])
    assert decay_q12_to_frac(818, CURRENT_DECAY_OFFSET_Q12) == 819 / 4096


def test_decay_q12_round_trip_is_within_half_a_step():
    frac = np.random.default_rng(0).uniform(1 / 4096, 4095 / 4096, 1000)
    for offset in (CURRENT_DECAY_OFFSET_Q12, VOLTAGE_DECAY_OFFSET_Q12):
        back = decay_q12_to_frac(decay_frac_to_q12(frac, offset), offset)
        assert np.max(np.abs(back - frac)) <= 0.5 / 4096 + 1e-15


def test_decay_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError):
        decay_frac_to_q12(1.5)
    with pytest.raises(ValueError):
        decay_frac_to_q12(np.array([0.1, -0.1]))


# --- quantisation -------------------------------------------------------------------------------
def test_hand_worked_layer_quantisation_with_the_exponent_search():
    # Largest weight 1.0 -> one int8 step is 1/127; 0.5 * 127 = 63.5 rounds (half to even) to 64.
    lin = Linear(np.array([[0.5, -0.25], [0.125, 1.0]]))
    lif = CubaLIF(alpha=np.array([0.5, 0.5]), beta=np.array([0.5, 0.5]), threshold=np.array([1.0, 1.0]))
    layer = quantize_layer(lin, lif, timesteps=1, weight_exp=None)
    np.testing.assert_array_equal(layer.weight_raw, [[64, -32], [16, 127]])
    assert layer.weight_step == pytest.approx(1 / 127)
    # Worst input per step: row 1, 2 * (16 + 127) = 286 << e << 6 must stay < 2^23 -> 2^e <= 458,
    # so e is capped at its maximum 7; vth = 1.0 * 2^(1 + 7) * 127 = 32512 fits 17 bits.
    assert layer.weight_exp == 7
    np.testing.assert_array_equal(layer.vth_raw, [32512, 32512])
    np.testing.assert_allclose(layer.threshold_float, [1.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(layer.du_q12, [2047, 2047])  # 2048 - offset 1
    np.testing.assert_array_equal(layer.dv_q12, [2048, 2048])
    np.testing.assert_array_equal(layer.dense_weights, [[128, -64], [32, 254]])


def test_weight_exp_is_the_largest_that_keeps_the_state_in_24_bits():
    # 64 inputs of weight 1.0 -> int8 127 -> Dense 254; all firing: 64 * 254 = 16256 per step,
    # << 6 = 1,040,384 * 2^e; with T = 1 and no decay carry-over that must stay <= 2^23 - 1,
    # so 2^e <= 8.06 -> e = 3, and vth = 1.0 * 2^4 * 127 = 2032.
    lin = Linear(np.ones((1, 64)))
    lif = CubaLIF(alpha=np.zeros(1), beta=np.zeros(1), threshold=np.ones(1))
    layer = quantize_layer(lin, lif, timesteps=1, weight_exp=None)
    assert layer.weight_exp == 3
    np.testing.assert_array_equal(layer.vth_raw, [2032])


def test_default_exponent_is_zero_the_one_netx_can_express():
    # Same layer as the hand-worked one: e = 0, so vth = rint(1.0 * 2^1 * 127) = 254 and the Dense
    # output is the plain integer sum of 2 * weight_raw.
    lin = Linear(np.array([[0.5, -0.25], [0.125, 1.0]]))
    lif = CubaLIF(alpha=np.array([0.5, 0.5]), beta=np.array([0.5, 0.5]), threshold=np.array([1.0, 1.0]))
    layer = quantize_layer(lin, lif, timesteps=1)
    assert layer.weight_exp == DEFAULT_WEIGHT_EXP == 0
    np.testing.assert_array_equal(layer.weight_raw, [[64, -32], [16, 127]])
    np.testing.assert_array_equal(layer.vth_raw, [254, 254])
    np.testing.assert_array_equal(layer.dense_activation(np.array([[1, 1]])), [[128 - 64, 32 + 254]])


def test_fixed_exponent_doubles_the_weight_step_until_the_state_fits():
    # 4,096 inputs of weight 1.0 -> 127 each, Dense 254: all firing gives 4096 * 254 << 6 = 66,584,576
    # per step, above 2^23 - 1 = 8,388,607. Doubling the step k times gives 127 / 2^k per weight
    # (rounded half to even): k = 3 -> 16, 4096 * 32 << 6 = 8,388,608, one too many; k = 4 -> 8 fits.
    lin = Linear(np.ones((1, 4096)))
    lif = CubaLIF(alpha=np.zeros(1), beta=np.zeros(1), threshold=np.ones(1))
    layer = quantize_layer(lin, lif, timesteps=1)
    assert layer.weight_exp == 0
    assert layer.weight_step == pytest.approx(16 / 127)
    np.testing.assert_array_equal(np.unique(layer.weight_raw), [8])
    np.testing.assert_array_equal(layer.vth_raw, [16])  # rint(1.0 * 2 / (16 / 127)) = rint(15.875)


def test_exponent_outside_loihis_range_is_refused():
    lin = Linear(np.ones((1, 2)))
    lif = CubaLIF(alpha=np.zeros(1), beta=np.zeros(1), threshold=np.ones(1))
    with pytest.raises(ValueError, match="weight_exp 9"):
        quantize_layer(lin, lif, timesteps=1, weight_exp=9)


def test_weights_use_the_full_int8_range_and_scales_match():
    spec = random_spiking_spec()
    fixed = quantize_actor(spec)
    for layer, (lin, lif) in zip(fixed.layers, spec.spiking_layers()):
        w = layer.weight_raw.astype(int)
        assert w.max() == 127 or w.min() == -128
        # Threshold and weights share one scale: theta_fix = (vth_raw << 6) * state_step.
        half_vth_step = 0.5 * 64 * layer.state_step
        assert np.all(np.abs(layer.threshold_float - lif.threshold) <= half_vth_step + 1e-12)
        np.testing.assert_allclose(layer.weight_float, lin.weight, atol=0.5 * layer.weight_step + 1e-9)


def test_quantisation_report_values():
    lin = Linear(np.array([[0.5, -0.25], [0.125, 1.0]]))
    lif = CubaLIF(alpha=np.array([0.8, 0.5]), beta=np.array([0.9, 0.5]), threshold=np.array([1.0, 0.3]))
    spec = ActorSpec("snn", 1, 1, [PopulationEncoder(np.zeros((1, 2)), np.ones((1, 2))), lin, lif,
                                   PopulationDecoder(np.ones((1, 2)), np.zeros(1)), Tanh()], timesteps=1)
    fixed = quantize_actor(spec, weight_exp=None)
    layer = fixed.layers[0]
    # Hand-worked weight error: W*127 = [63.5, -31.75, 15.875, 127] -> [64, -32, 16, 127].
    diff = np.array([64 / 127 - 0.5, -32 / 127 + 0.25, 16 / 127 - 0.125, 0.0])
    expected_rms = np.sqrt(np.sum(diff**2)) / np.sqrt(0.25 + 0.0625 + 0.015625 + 1.0)
    assert weight_rel_rms_error(lin.weight, layer) == pytest.approx(expected_rms, rel=1e-12)
    # e = 7: vth = rint(theta * 256 * 127) = [32512, rint(9753.6) = 9754]; theta_fix = vth / 32512.
    np.testing.assert_array_equal(layer.vth_raw, [32512, 9754])
    theta = float(np.float32(0.3))  # the spec stores float32
    expected_vth_err = abs(9754 / 32512 - theta) / theta
    np.testing.assert_allclose(threshold_rel_error(lif.threshold, layer), [0.0, expected_vth_err], rtol=1e-9)
    (report,) = quantization_report(fixed)
    assert report.weight_exp == 7
    assert report.weight_rel_rms_frac == pytest.approx(expected_rms, rel=1e-12)
    assert report.threshold_max_rel_frac == pytest.approx(expected_vth_err, rel=1e-9)
    # alpha 0.8: du = rint(0.2 * 4096) - 1 = 818 -> (4095 - 818)/4096; beta 0.9: dv = rint(409.6) = 410.
    assert report.alpha_max_abs_error == pytest.approx(abs(np.float32(0.8) - 3277 / 4096), abs=1e-12)
    assert report.beta_max_abs_error == pytest.approx(abs(np.float32(0.9) - 3686 / 4096), abs=1e-12)
    # Worst state: 286 * 2^7 * 2^6 = 2,342,912 for one step, / 2^23.
    assert report.state_headroom_frac == pytest.approx(286 * 2**13 / 2**23)


def test_random_actor_quantisation_is_close_and_overflow_free():
    spec = random_spiking_spec()
    fixed = quantize_actor(spec)
    for r, layer in zip(quantization_report(fixed), fixed.layers):
        assert r.weight_rel_rms_frac < 0.02
        # e = 0: the threshold is a whole number of vth steps, off by at most half of one
        assert r.threshold_max_rel_frac <= 0.5 / layer.vth_raw.min() + 1e-12
        assert r.alpha_max_abs_error <= 0.5 / 4096 + 1e-7
        assert r.beta_max_abs_error <= 0.5 / 4096 + 1e-7
        assert r.state_headroom_frac <= 1.0


def test_spiking_linear_with_bias_or_negative_threshold_is_rejected():
    lif = CubaLIF(np.full(2, 0.5), np.full(2, 0.5), np.ones(2))
    with pytest.raises(ValueError, match="bias"):
        quantize_layer(Linear(np.ones((2, 2)), bias=np.zeros(2)), lif, timesteps=1)
    with pytest.raises(ValueError, match="threshold"):
        quantize_layer(Linear(np.ones((2, 2))), CubaLIF(np.full(2, 0.5), np.full(2, 0.5), -np.ones(2)), 1)


def test_fixed_point_layer_rejects_out_of_range_integers():
    ok = dict(weight_raw=np.zeros((2, 3), np.int8), weight_exp=0, du_q12=np.zeros(2), dv_q12=np.zeros(2),
              vth_raw=np.ones(2), weight_step=1.0)
    FixedPointLayer(**ok)
    for field, bad in (("du_q12", np.full(2, 4096)), ("vth_raw", np.full(2, 2**17)), ("weight_exp", 8),
                       ("weight_raw", np.full((2, 3), 200))):
        with pytest.raises(ValueError):
            FixedPointLayer(**{**ok, field: bad})


# --- bit-accurate simulation ----------------------------------------------------------------------
def _lava_lif_scalar(u: int, v: int, a: int, du: int, dv: int, vth: int) -> tuple[int, int, bool]:
    """Lava 0.10 PyLifModelBitAcc for one neuron in plain Python integers (hand transcription)."""
    def decay(x: int, keep: int) -> int:
        p = x * keep
        return (1 if p > 0 else -1 if p < 0 else 0) * (abs(p) >> 12)

    u = decay(u, 4096 - (du + 1)) + (a << 6)
    if u > 2**23:
        u -= 2**24
    elif u <= -(2**23):
        u += 2**24
    v = min(max(decay(v, 4096 - dv) + u, -(2**23) + 1), 2**23 - 1)
    spike = v > (vth << 6)
    return u, (0 if spike else v), spike


def test_lif_step_wraps_current_and_saturates_voltage_like_lava():
    layer = FixedPointLayer(weight_raw=np.array([[127], [-128]], np.int8), weight_exp=7,
                            du_q12=np.array([0, 100]), dv_q12=np.array([0, 7]), vth_raw=np.array([131071, 5]),
                            weight_step=1.0)
    u = np.zeros((1, 2), np.int32)
    v = np.zeros((1, 2), np.int32)
    ref = [(0, 0), (0, 0)]
    wrapped = saturated = False
    for _ in range(12):
        a = layer.dense_activation(np.ones((1, 1)))
        s = layer.lif_step(u, v, a)
        for i in range(2):
            ui, vi, si = _lava_lif_scalar(*ref[i], int(a[0, i]), int(layer.du_q12[i]), int(layer.dv_q12[i]),
                                          int(layer.vth_raw[i]))
            wrapped |= (ui < 0) if i == 0 else (ui > 0)
            saturated |= abs(vi) == 2**23 - 1 or (si and i == 0)
            ref[i] = (ui, vi)
            assert (u[0, i], v[0, i], bool(s[0, i])) == (ui, vi, si)
    assert wrapped and saturated  # the sequence did exercise both hardware limits


def test_dense_activation_floors_for_negative_weight_exp():
    layer = FixedPointLayer(weight_raw=np.array([[3, -5]], np.int8), weight_exp=-2, du_q12=[0], dv_q12=[0],
                            vth_raw=[1], weight_step=1.0)
    # 2*3 - 2*5 = -4 -> -4 >> 2 = -1; 2*3 = 6 -> 1; -10 >> 2 = -3 (arithmetic shift floors).
    a = layer.dense_activation(np.array([[1, 1], [1, 0], [0, 1]]))
    np.testing.assert_array_equal(a[:, 0], [-1, 1, -3])


def test_host_io_reproduces_the_reference_encoder_and_decoder_exactly():
    spec = random_spiking_spec()
    obs = observations(50)
    action, trains = spec.forward_with_spikes(obs)
    np.testing.assert_array_equal(host_encode_spikes(spec, obs), trains[0])
    np.testing.assert_array_equal(host_decode_action(spec, trains[-1]), action)


def test_fixed_point_agrees_with_float_on_97_percent_of_spikes():
    spec = random_spiking_spec()
    fixed = quantize_actor(spec)
    obs = observations(300)
    _, ref = spec.forward_with_spikes(obs)
    action, got = fixed.forward_with_spikes(obs)
    assert action.shape == (300, 2) and np.all(np.abs(action) <= 1)
    np.testing.assert_array_equal(got[0], ref[0])
    same = sum(int((g == r).sum()) for g, r in zip(got[1:], ref[1:]))
    total = sum(r.size for r in ref[1:])
    assert same / total >= 0.97
    assert all(0.05 < r.mean() < 0.4 for r in ref[1:])  # the comparison is between active layers


def test_fixed_point_actor_checks_its_layers_against_the_spec():
    spec = random_spiking_spec()
    layers = quantize_actor(spec).layers
    with pytest.raises(ValueError):
        FixedPointActor(spec=spec, layers=layers[:-1])
    with pytest.raises(ValueError):
        quantize_actor(ActorSpec("ann", 1, 1, [Linear(np.ones((1, 1))), Tanh()]))
