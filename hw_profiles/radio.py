"""Base-station radio: EARTH load-dependent power model, link budget and HARQ settings.

P_in = P_0 + Delta_p * P_out per transceiver chain, 0 < P_out <= P_max (Auer et al., 2011).
Path loss PL(d) = A + B log10(d / km) dB with log-normal shadowing (3GPP TR 36.814).
"""

from __future__ import annotations

import math

from typing import ClassVar

from pydantic import model_validator

from .profile import Profile
from .quantity import Quantity


class RadioProfile(Profile):
    """One class of base station (macro, micro, pico) with its downlink link budget."""

    TYPE: ClassVar[str] = "radio"
    DIMENSIONS: ClassVar[dict[str, str]] = {
        "n_trx": "count",
        "p_max": "power",
        "p_min": "power",
        "p_0": "power",
        "delta_p": "ratio",
        "p_sleep": "power",
        "bandwidth": "frequency",
        "noise_psd": "power_spectral_density",
        "noise_figure": "decibel",
        "pathloss_intercept": "decibel",
        "pathloss_slope": "decibel",
        "shadowing_std": "decibel",
        "cell_radius": "distance",
        "min_distance": "distance",
        "snr_min": "decibel",
        "harq_max_tries": "count",
        "per_try_overhead": "time",
        "embodied_carbon": "carbon",
        "lifetime": "time",
    }

    n_trx: Quantity
    p_max: Quantity
    p_min: Quantity
    p_0: Quantity
    delta_p: Quantity
    p_sleep: Quantity | None = None
    bandwidth: Quantity
    noise_psd: Quantity
    noise_figure: Quantity
    pathloss_intercept: Quantity
    pathloss_slope: Quantity
    shadowing_std: Quantity
    cell_radius: Quantity
    min_distance: Quantity
    snr_min: Quantity
    harq_max_tries: Quantity
    per_try_overhead: Quantity
    embodied_carbon: Quantity
    lifetime: Quantity

    @model_validator(mode="after")
    def _check_power_range(self) -> "RadioProfile":
        if not 0.0 < self.si("p_min") <= self.si("p_max"):
            raise ValueError("field 'p_min': must be > 0 and <= p_max")
        if not 0.0 < self.si("min_distance") < self.si("cell_radius"):
            raise ValueError("field 'min_distance': must be > 0 and < cell_radius")
        if self.si("harq_max_tries") < 1:
            raise ValueError("field 'harq_max_tries': must be >= 1")
        return self

    @property
    def embodied_g_per_s(self) -> float:
        """Embodied carbon of the BS equipment amortised over its lifetime, g/s."""
        return self.si("embodied_carbon") / self.si("lifetime")

    @property
    def noise_power_w(self) -> float:
        """Thermal noise plus receiver noise figure over the bandwidth, W."""
        dbm = self.si("noise_psd") + self.si("noise_figure") + 10.0 * math.log10(self.si("bandwidth"))
        return 10.0 ** ((dbm - 30.0) / 10.0)
