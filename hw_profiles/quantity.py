"""A sourced physical quantity, as written in a profile, and its conversion to SI once at load.

A profile field looks like::

    [energy_per_output_token]
    value = 1.63
    unit = "mWh"
    source = "Sprout artifact (Li et al., EMNLP 2024), Llama-2-13B-chat, NVML GPU energy"
    kind = "measured"

``Quantity.to_si(dimension)`` returns the value in the SI (or domain) base unit of that dimension;
a unit that does not belong to the dimension is rejected, naming the field.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# "specification": a limit the maker publishes for a chip (cores, memory, bit widths)
Kind = Literal["measured", "simulated", "pre-silicon", "estimate", "derived", "standard", "specification"]

# factor that converts one unit into the base unit of its dimension
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "energy": {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9, "pJ": 1e-12,
               "Wh": 3600.0, "mWh": 3.6, "kWh": 3.6e6},
    "power": {"W": 1.0, "mW": 1e-3, "kW": 1e3},
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "h": 3600.0, "year": 365.25 * 86400.0},
    "carbon": {"g": 1.0, "kg": 1e3, "t": 1e6},
    "carbon_intensity": {"g/kWh": 1.0},
    "frequency": {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6},
    "ratio": {"1": 1.0, "%": 0.01},
    "decibel": {"dB": 1.0},
    "power_spectral_density": {"dBm/Hz": 1.0},
    "count": {"1": 1.0},
    "rate": {"1/s": 1.0},
    "bits": {"bit": 1.0, "byte": 8.0, "KiB": 8192.0},
    "distance": {"m": 1.0, "km": 1e3},
}

# logarithmic dimensions, where a negative number is meaningful (-174 dBm/Hz, -5 dB)
SIGNED_DIMENSIONS = frozenset({"decibel", "power_spectral_density"})

# Largest magnitude accepted per dimension, in the base unit. Each is far beyond any real device or
# grid (a 1 GW power plant, a 1 TWh energy, a century), and small enough that the carbon model's
# products and sums of profile quantities stay finite in float64: a profile is a file a user may
# have been handed, and 1e308 kW must be refused, not become infinity in SI units.
SI_MAGNITUDE_MAX: dict[str, float] = {
    "energy": 3.6e15,  # J, 1 TWh
    "power": 1e9,  # W
    "time": 100 * 365.25 * 86400.0,  # s, a century
    "carbon": 1e12,  # g, a million tonnes
    "carbon_intensity": 5000.0,  # g/kWh, above the dirtiest grid (about 1,200) with room to spare
    "frequency": 1e12,  # Hz
    "ratio": 1e6,
    "decibel": 1000.0,  # dB
    "power_spectral_density": 1000.0,  # dBm/Hz
    "count": 1e9,
    "rate": 1e9,  # 1/s
    "bits": 1e15,
    "distance": 1e8,  # m
}

BASE_UNIT = {dim: next(u for u, f in units.items() if f == 1.0) for dim, units in UNIT_FACTORS.items()}


class Quantity(BaseModel):
    """One number of a profile with its unit, its source and how it was obtained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float = Field(allow_inf_nan=False, description="the number, in `unit`; negative only for dB dimensions")
    unit: str = Field(description="one of the units of the field's dimension (see UNIT_FACTORS)")
    source: str = Field(min_length=3, description="where the number comes from")
    kind: Kind = Field(description="measured, simulated, pre-silicon, estimate, derived, standard or specification")
    note: str = ""

    def to_si(self, dimension: str, field: str = "?") -> float:
        """The value in the base unit of `dimension` (J, W, s, g, g/kWh, Hz, 1, dB, bit, m).

        :raises ValueError: the unit does not belong to the dimension; the message names `field`.
        """
        units = UNIT_FACTORS[dimension]
        if self.unit not in units:
            raise ValueError(
                f"field {field!r}: unit {self.unit!r} is not a {dimension} unit "
                f"(expected one of {', '.join(units)})"
            )
        return _checked_si(self.value, units[self.unit], dimension, field, self.unit)


class QuantitySeries(BaseModel):
    """A sequence of numbers of one unit and one source, e.g. a diurnal profile (24 values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[float] = Field(min_length=1)  # finite; checked against the dimension in to_si
    unit: str
    source: str = Field(min_length=3)
    kind: Kind
    note: str = ""

    def to_si(self, dimension: str, field: str = "?") -> list[float]:
        """The values in the base unit of `dimension`; rejects a foreign unit or a negative value."""
        units = UNIT_FACTORS[dimension]
        if self.unit not in units:
            raise ValueError(
                f"field {field!r}: unit {self.unit!r} is not a {dimension} unit "
                f"(expected one of {', '.join(units)})"
            )
        return [_checked_si(v, units[self.unit], dimension, f"{field}[{i}]", self.unit)
                for i, v in enumerate(self.values)]


def _checked_si(value: float, factor: float, dimension: str, field: str, unit: str) -> float:
    """``value * factor``, refused (naming the field) when negative outside dB dimensions, not
    finite, or beyond :data:`SI_MAGNITUDE_MAX`."""
    if not math.isfinite(value):
        raise ValueError(f"field {field!r}: value {value} is not finite")
    if value < 0 and dimension not in SIGNED_DIMENSIONS:
        raise ValueError(f"field {field!r}: value {value} is negative; a {dimension} must be >= 0")
    si = value * factor
    limit = SI_MAGNITUDE_MAX[dimension]
    if not abs(si) <= limit:
        raise ValueError(f"field {field!r}: {value:g} {unit} is beyond the largest accepted {dimension}, "
                         f"{limit:g} {BASE_UNIT[dimension]}")
    return si
