"""The carbon model against arithmetic worked by hand from the equations in docs/model.md."""

import math

import numpy as np
import pytest

from aolo.hw_profiles import LLMServerProfile, RadioProfile, load_profile
from aolo.runtime.carbon import CarbonParams, joules_to_kwh, operational_carbon_g, request_carbon

PARAMS = CarbonParams(pue_frac=1.5, radio_static_power_w=130.0, radio_load_slope=4.7,
                      gpu_embodied_g_per_s=1e-4, bs_embodied_g_per_s=2e-3)


def test_joules_convert_to_kwh_and_carbon():
    assert joules_to_kwh(3.6e6) == 1.0
    assert operational_carbon_g(7.2e6, 250.0) == pytest.approx(500.0)


def test_inference_dominated_request_matches_hand_computation():
    b = request_carbon(PARAMS, ci_g_per_kwh=400.0, inference_energy_j=1000.0, inference_latency_s=5.0,
                       tx_power_w=10.0, airtime_s=0.1, active_sessions=10)
    # inference: 400 g/kWh * 1.5 * 1000 J / 3.6e6 J/kWh
    assert b.inference_g == pytest.approx(0.1666667, rel=1e-6)
    # radio: dynamic 4.7 * 10 W * 0.1 s = 4.7 J; static 130 W / 10 * 5.1 s = 66.3 J
    assert b.radio_dynamic_energy_j == pytest.approx(4.7)
    assert b.radio_static_energy_j == pytest.approx(66.3)
    assert b.radio_g == pytest.approx(400 * 71.0 / 3.6e6)
    assert b.embodied_gpu_g == pytest.approx(5e-4)
    assert b.embodied_bs_g == pytest.approx(2e-3 / 10 * 5.1)
    assert b.total_g == pytest.approx(0.1666667 + 0.0078889 + 5e-4 + 1.02e-3, rel=1e-5)


def test_radio_dominated_request_matches_hand_computation():
    b = request_carbon(PARAMS, ci_g_per_kwh=400.0, inference_energy_j=1.0, inference_latency_s=0.05,
                       tx_power_w=20.0, airtime_s=2.0, active_sessions=0)
    # dynamic 4.7 * 20 * 2 = 188 J; static 130 W * 2.05 s (a lone session pays all of P_0) = 266.5 J
    assert b.radio_g == pytest.approx(400 * 454.5 / 3.6e6)
    assert b.embodied_bs_g == pytest.approx(2e-3 * 2.05)
    assert b.radio_g > 10 * b.inference_g


def test_actor_and_embodied_terms_match_hand_computation():
    no_radio = CarbonParams(pue_frac=1.0, radio_static_power_w=130.0, radio_load_slope=4.7,
                            gpu_embodied_g_per_s=1e-4, bs_embodied_g_per_s=2e-3, include_radio=False)
    b = request_carbon(no_radio, ci_g_per_kwh=400.0, inference_energy_j=0.0, inference_latency_s=0.0,
                       tx_power_w=20.0, airtime_s=1.0, active_sessions=1, actor_energy_j=36.0)
    assert b.actor_g == pytest.approx(0.004)
    assert b.radio_g == 0.0 and b.embodied_bs_g == 0.0
    assert b.total_g == pytest.approx(0.004)
    clean = request_carbon(PARAMS, ci_g_per_kwh=0.0, inference_energy_j=500.0, inference_latency_s=3.0,
                           tx_power_w=1.0, airtime_s=0.0, active_sessions=1)
    assert clean.total_g == pytest.approx(1e-4 * 3.0 + 2e-3 * 3.0)


def test_batch_is_vectorised_and_components_sum_to_total():
    rng = np.random.default_rng(0)
    n = 1000
    b = request_carbon(PARAMS, rng.uniform(10, 500, n), rng.uniform(0, 2000, n), rng.uniform(0, 10, n),
                       rng.uniform(0.1, 20, n), rng.uniform(0, 0.5, n), rng.integers(0, 20, n), rng.uniform(0, 1e-3, n))
    assert b.total_g.shape == (n,)
    parts = sum(getattr(b, c) for c in b.COMPONENTS)
    np.testing.assert_allclose(parts, b.total_g)
    one = request_carbon(PARAMS, 123.0, 456.0, 2.0, 5.0, 0.01, 3)
    assert one.total_g.shape == ()


def test_params_from_profiles_use_profile_numbers():
    server = load_profile("llama2-13b-a100", LLMServerProfile)
    radio = load_profile("macro", RadioProfile)
    p = CarbonParams.from_profiles(server, radio)
    assert p.radio_static_power_w == 130.0 and p.radio_load_slope == 4.7
    assert p.pue_frac == pytest.approx(1.58)
    # 26,356.568 g over 5 years of 365.25 days
    assert p.gpu_embodied_g_per_s == pytest.approx(26356.568 / (5 * 365.25 * 86400))


def test_typical_13b_request_in_texas_matches_hand_computation():
    server = load_profile("llama2-13b-a100", LLMServerProfile)
    p = CarbonParams.from_profiles(server, load_profile("macro", RadioProfile))
    e_inf = 200 * 1.6387 * 3.6 + 50 * 0.0145 * 3.6  # 200 output, 50 prompt tokens, J
    b = request_carbon(p, 300.0, e_inf, 200 * 0.02377 + 50 * 0.00021, 1.0, 0.0, 1)
    assert b.inference_g == pytest.approx(300 * 1.58 * e_inf / 3.6e6)


def test_invalid_params_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="pue_frac"):
        CarbonParams(pue_frac=0.9, radio_static_power_w=1, radio_load_slope=1, gpu_embodied_g_per_s=0, bs_embodied_g_per_s=0)
    with pytest.raises(ValueError, match="radio_static_power_w"):
        CarbonParams(pue_frac=1.1, radio_static_power_w=-1, radio_load_slope=1, gpu_embodied_g_per_s=0, bs_embodied_g_per_s=0)


def test_carbon_estimate_refuses_unbounded_inputs_and_stays_finite_at_the_bounds():
    import re

    from typer.testing import CliRunner

    from aolo.cli import app
    from aolo.runtime import limits

    runner = CliRunner()
    for option in ("--output-tokens", "--prompt-tokens", "--distance-m", "--actor-energy-j", "--tx-power-w"):
        result = runner.invoke(app, ["carbon", "estimate", option, "1e308"])
        assert result.exit_code == 2 and option in result.output, (option, result.output)
    at_bounds = ["carbon", "estimate", "--output-tokens", str(limits.TOKENS_MAX), "--prompt-tokens",
                 str(limits.TOKENS_MAX), "--distance-m", str(limits.DISTANCE_M_MAX), "--sessions", "1",
                 "--actor-energy-j", str(limits.ACTOR_ENERGY_J_MAX)]
    result = runner.invoke(app, at_bounds, terminal_width=200)
    assert result.exit_code == 0, result.output
    total = float(re.search(r"total\s*│\s*│\s*([0-9.e+]+)", result.output).group(1))
    assert math.isfinite(total) and total > 0
