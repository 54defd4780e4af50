"""Downlink physics: Shannon rate, HARQ tries and outage, closed-form power control."""

import numpy as np
import pytest

from aolo.hw_profiles import RadioProfile, load_profile
from aolo.runtime.radio import (LinkParams, db_to_linear, min_power_for_deadline_w, min_power_for_outage_w,
                                min_power_w, shannon_rate_bps, transmit)

LINK = LinkParams.from_profile(load_profile("macro", RadioProfile))


def test_shannon_rate_of_snr_3_is_two_bits_per_hz():
    assert shannon_rate_bps(1e6, 3.0) == pytest.approx(2e6)


def test_first_try_success_costs_payload_over_rate_plus_overhead():
    gain = np.array([1e-10])
    fading = np.ones((1, LINK.harq_max_tries))
    tx = transmit(LINK, np.array([6400.0]), np.array([1.0]), gain, fading)
    snr = 1.0 * 1e-10 / LINK.noise_w
    assert tx.tries[0] == 1 and not tx.outage[0]
    assert tx.airtime_s[0] == pytest.approx(6400 / shannon_rate_bps(LINK.bandwidth_hz, snr) + 1e-3)


def test_harq_retries_on_deep_fade_and_declares_outage_after_k_tries():
    gain = np.array([1e-10, 1e-10])
    fading = np.array([[1e-9, 1e-9, 1.0, 1.0], [1e-9] * 4])  # first fades twice; second always
    tx = transmit(LINK, np.array([6400.0, 6400.0]), np.array([1.0, 1.0]), gain, fading)
    slow = 6400 / shannon_rate_bps(LINK.bandwidth_hz, LINK.snr_min_linear) + 1e-3
    assert tx.tries.tolist() == [3, 4]
    assert tx.outage.tolist() == [False, True]
    assert tx.airtime_s[1] == pytest.approx(4 * slow)
    assert tx.airtime_s[0] > 2 * slow


def test_min_power_for_outage_meets_target_under_rayleigh_fading():
    rng = np.random.default_rng(1)
    n = 200_000
    gain = np.full(n, db_to_linear(-125.0))
    p = min_power_for_outage_w(LINK, gain, 0.01)
    tx = transmit(LINK, np.full(n, 3200.0), p, gain, rng.exponential(1.0, (n, LINK.harq_max_tries)))
    assert tx.outage.mean() == pytest.approx(0.01, abs=0.002)


def test_min_power_for_deadline_meets_budget_at_mean_snr():
    gain = np.array([db_to_linear(-120.0)])
    payload, budget = np.array([1e6]), np.array([0.05])
    p = min_power_for_deadline_w(LINK, gain, payload, budget)
    rate = shannon_rate_bps(LINK.bandwidth_hz, p * gain / LINK.noise_w)
    assert payload[0] / rate[0] + LINK.per_try_overhead_s == pytest.approx(0.05)
    assert np.isinf(min_power_for_deadline_w(LINK, gain, payload, np.array([0.0]))[0])


def test_min_power_is_clipped_to_the_radio_range():
    far, near = db_to_linear(-160.0), db_to_linear(-60.0)
    p = min_power_w(LINK, np.array([far, near]), np.array([1e4, 1e4]), np.array([1.0, 1.0]), 0.01)
    assert p.tolist() == [LINK.p_max_w, LINK.p_min_w]


def test_sampled_gains_lie_in_the_path_loss_range():
    g = LINK.sample_gain_db(np.random.default_rng(0), 10_000)
    assert -LINK.pathloss_db(LINK.cell_radius_m) - 50 < g.mean() < -LINK.pathloss_db(LINK.min_distance_m)
