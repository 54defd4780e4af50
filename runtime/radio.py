"""Downlink of one LLM answer: link budget, Shannon rate, HARQ under block Rayleigh fading.

    SNR = P g |h|^2 / N,   N = k T B F (thermal noise plus noise figure over the bandwidth)
    R = B log2(1 + SNR)                                                  [bit/s]
    payload D = kappa * bits_per_token                                   [bit]

A try succeeds when SNR >= SNR_min; a failed try is retransmitted with fresh fading, up to K tries;
failure of all K is an outage. A successful try lasts D / R(SNR) + overhead; a failed one lasts
D / R(SNR_min) + overhead: the scheduler never sends slower than the lowest rate it can decode, so a
failed block costs the time of that lowest rate (aolo's reading of the reference model, which leaves
the airtime of a failed try open).

Power control, closed form. With Rayleigh fading |h|^2 ~ Exp(1), one try fails with probability
1 - exp(-SNR_min N / (P g)), so K tries all fail with (1 - exp(-SNR_min N / (P g)))^K. The smallest
power meeting an outage target eps is  P_out = SNR_min N / (g * -ln(1 - eps^(1/K))).  The smallest
power meeting a time budget T at the mean SNR is  P_dl = N / g * (2^(D / (B T)) - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aolo.hw_profiles import RadioProfile


def db_to_linear(x_db: np.ndarray | float) -> np.ndarray | float:
    """Decibels to a linear power ratio."""
    return 10.0 ** (np.asarray(x_db) / 10.0)


def linear_to_db(x: np.ndarray | float) -> np.ndarray | float:
    """Linear power ratio to decibels."""
    return 10.0 * np.log10(x)


@dataclass(frozen=True)
class LinkParams:
    """Downlink constants in SI units.

    :param bandwidth_hz: bandwidth given to one answer, Hz
    :param noise_w: noise power over that bandwidth including the UE noise figure, W
    :param snr_min_linear: lowest decodable SNR (linear)
    :param harq_max_tries: K, tries before an outage
    :param per_try_overhead_s: fixed time per try (scheduling, ACK), s
    :param p_min_w: lowest transmit power, W
    :param p_max_w: highest transmit power, W
    :param pathloss_intercept_db: A in PL = A + B log10(d / km), dB
    :param pathloss_slope_db: B, dB per decade of distance
    :param shadowing_std_db: log-normal shadowing standard deviation, dB
    :param min_distance_m: closest user distance, m
    :param cell_radius_m: farthest user distance, m
    """

    bandwidth_hz: float
    noise_w: float
    snr_min_linear: float
    harq_max_tries: int
    per_try_overhead_s: float
    p_min_w: float
    p_max_w: float
    pathloss_intercept_db: float
    pathloss_slope_db: float
    shadowing_std_db: float
    min_distance_m: float
    cell_radius_m: float

    @classmethod
    def from_profile(cls, radio: RadioProfile) -> "LinkParams":
        return cls(
            bandwidth_hz=radio.si("bandwidth"),
            noise_w=radio.noise_power_w,
            snr_min_linear=float(db_to_linear(radio.si("snr_min"))),
            harq_max_tries=int(radio.si("harq_max_tries")),
            per_try_overhead_s=radio.si("per_try_overhead"),
            p_min_w=radio.si("p_min"),
            p_max_w=radio.si("p_max"),
            pathloss_intercept_db=radio.si("pathloss_intercept"),
            pathloss_slope_db=radio.si("pathloss_slope"),
            shadowing_std_db=radio.si("shadowing_std"),
            min_distance_m=radio.si("min_distance"),
            cell_radius_m=radio.si("cell_radius"),
        )

    def pathloss_db(self, distance_m: np.ndarray | float) -> np.ndarray:
        """Mean path loss at `distance_m`, dB (3GPP TR 36.814 form)."""
        return self.pathloss_intercept_db + self.pathloss_slope_db * np.log10(np.asarray(distance_m) / 1000.0)

    def sample_gain_db(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Large-scale gain (negative path loss plus shadowing) of `n` users uniform in the cell area, dB."""
        r2 = rng.uniform(self.min_distance_m**2, self.cell_radius_m**2, size=n)
        return -self.pathloss_db(np.sqrt(r2)) + rng.normal(0.0, self.shadowing_std_db, size=n)


def shannon_rate_bps(bandwidth_hz: float, snr_linear: np.ndarray | float) -> np.ndarray:
    """Shannon capacity B log2(1 + SNR), bit/s."""
    return bandwidth_hz * np.log2(1.0 + np.asarray(snr_linear))


@dataclass(frozen=True)
class Transmission:
    """Outcome of sending answers, each field (n,).

    :param airtime_s: time on air over all tries, s
    :param tries: tries used (1..K)
    :param outage: True when all K tries failed
    """

    airtime_s: np.ndarray
    tries: np.ndarray
    outage: np.ndarray


def transmit(
    link: LinkParams,
    payload_bits: np.ndarray,
    tx_power_w: np.ndarray,
    gain_linear: np.ndarray,
    fading_power: np.ndarray,
) -> Transmission:
    """HARQ downlink of a batch of answers under given fading draws.

    :param payload_bits: (n,) bits to send
    :param tx_power_w: (n,) transmit power, W
    :param gain_linear: (n,) large-scale channel gain (linear, < 1)
    :param fading_power: (n, K) |h|^2 per try, Exp(1) for Rayleigh
    :return: airtime, tries and outage of each answer
    """
    snr = (tx_power_w * gain_linear / link.noise_w)[:, None] * fading_power  # (n, K)
    ok = snr >= link.snr_min_linear
    any_ok = ok.any(axis=1)
    first_ok = np.where(any_ok, ok.argmax(axis=1), link.harq_max_tries - 1)
    tries = first_ok + 1
    payload = np.asarray(payload_bits, dtype=np.float64)
    slow_try_s = payload / shannon_rate_bps(link.bandwidth_hz, link.snr_min_linear) + link.per_try_overhead_s
    last_snr = snr[np.arange(snr.shape[0]), first_ok]
    last_try_s = np.where(any_ok, payload / shannon_rate_bps(link.bandwidth_hz, last_snr) + link.per_try_overhead_s, slow_try_s)
    airtime = (tries - 1) * slow_try_s + last_try_s
    return Transmission(airtime_s=airtime, tries=tries, outage=~any_ok)


def min_power_for_outage_w(link: LinkParams, gain_linear: np.ndarray, outage_target_frac: float) -> np.ndarray:
    """Smallest power whose K-try Rayleigh outage probability is <= `outage_target_frac`, W (unclipped)."""
    per_try_failure = outage_target_frac ** (1.0 / link.harq_max_tries)
    return link.snr_min_linear * link.noise_w / (np.asarray(gain_linear) * -np.log1p(-per_try_failure))


def min_power_for_deadline_w(link: LinkParams, gain_linear: np.ndarray, payload_bits: np.ndarray, budget_s: np.ndarray) -> np.ndarray:
    """Smallest power sending `payload_bits` within `budget_s` at the mean SNR, W (unclipped; inf when budget <= overhead)."""
    usable_s = np.asarray(budget_s, dtype=np.float64) - link.per_try_overhead_s
    with np.errstate(divide="ignore", over="ignore"):
        needed_snr = np.where(usable_s > 0, np.exp2(np.asarray(payload_bits) / (link.bandwidth_hz * np.maximum(usable_s, 1e-12))) - 1.0, np.inf)
    return link.noise_w / np.asarray(gain_linear) * needed_snr


def min_power_w(link: LinkParams, gain_linear: np.ndarray, payload_bits: np.ndarray, budget_s: np.ndarray, outage_target_frac: float) -> np.ndarray:
    """Closed-form power that meets both the outage target and the deadline, clipped to [P_min, P_max], W."""
    p = np.maximum(min_power_for_outage_w(link, gain_linear, outage_target_frac),
                   min_power_for_deadline_w(link, gain_linear, payload_bits, budget_s))
    return np.clip(p, link.p_min_w, link.p_max_w)
