"""What-if carbon of one request from profiles alone: no simulator, the channel at its mean.

Used by ``aolo carbon estimate`` and by reports; the arithmetic is the shared carbon model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aolo.hw_profiles import LLMServerProfile, RadioProfile

from .carbon import CarbonBreakdown, CarbonParams, request_carbon
from .radio import LinkParams, transmit


@dataclass(frozen=True)
class RequestEstimate:
    """Inputs and outcome of one estimated request (SI units)."""

    inference_energy_j: float
    inference_latency_s: float
    airtime_s: float
    snr_db: float
    ci_g_per_kwh: float
    breakdown: CarbonBreakdown


def estimate_request(
    server: LLMServerProfile,
    radio: RadioProfile,
    ci_g_per_kwh: float,
    output_tokens: float,
    prompt_tokens: float = 50.0,
    tx_power_w: float | None = None,
    distance_m: float = 300.0,
    active_sessions: float = 10.0,
    actor_energy_j: float = 0.0,
    bits_per_token: float = 32.0,
    include_radio: bool = True,
) -> RequestEstimate:
    """Carbon of one request with the channel at its mean (path loss only, |h|^2 = 1, one try).

    :param ci_g_per_kwh: grid carbon intensity, gCO2e/kWh
    :param output_tokens: answer length, tokens
    :param prompt_tokens: prompt length, tokens
    :param tx_power_w: downlink power, W (default: the radio's P_max)
    :param distance_m: BS-user distance, m
    :param active_sessions: sessions sharing the BS's static power
    :param actor_energy_j: the policy's decision energy, J
    :param bits_per_token: downlink payload per token, bits
    """
    link = LinkParams.from_profile(radio)
    power = link.p_max_w if tx_power_w is None else float(tx_power_w)
    if not link.p_min_w <= power <= link.p_max_w:
        raise ValueError(f"tx_power_w: {power} W is outside the radio's range [{link.p_min_w}, {link.p_max_w}] W")
    if output_tokens < 0 or prompt_tokens < 0 or distance_m <= 0:
        raise ValueError("output_tokens and prompt_tokens must be >= 0 and distance_m > 0")
    e_inf = server.energy_per_input_token_j * prompt_tokens + server.energy_per_output_token_j * output_tokens
    tau_inf = server.latency_per_input_token_s * prompt_tokens + server.latency_per_output_token_s * output_tokens
    gain = 10.0 ** (-link.pathloss_db(distance_m) / 10.0)
    tx = transmit(link, np.array([output_tokens * bits_per_token]), np.array([power]), np.array([gain]),
                  np.ones((1, link.harq_max_tries)))
    params = CarbonParams.from_profiles(server, radio, include_radio=include_radio)
    breakdown = request_carbon(params, ci_g_per_kwh, e_inf, tau_inf, power, tx.airtime_s[0], active_sessions,
                               actor_energy_j)
    return RequestEstimate(inference_energy_j=e_inf, inference_latency_s=tau_inf, airtime_s=float(tx.airtime_s[0]),
                           snr_db=float(10 * np.log10(power * gain / link.noise_w)), ci_g_per_kwh=ci_g_per_kwh,
                           breakdown=breakdown)
