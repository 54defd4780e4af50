"""Grid zone: an embedded diurnal carbon-intensity profile, used when no trace file is given.

CI(h) for UTC hour h in 0..23 is the mean over a year of the hourly intensity at that hour.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from .profile import Profile
from .quantity import Quantity, QuantitySeries


class GridZoneProfile(Profile):
    """One electricity zone (Electricity Maps zone id) and its diurnal carbon intensity."""

    TYPE: ClassVar[str] = "grid_zone"
    DIMENSIONS: ClassVar[dict[str, str]] = {
        "ci_by_utc_hour": "carbon_intensity",
        "ci_annual_min": "carbon_intensity",
        "ci_annual_mean": "carbon_intensity",
        "ci_annual_max": "carbon_intensity",
    }

    zone_id: str
    zone_name: str
    year: int
    basis: str  # "direct" or "lca": which Electricity Maps column the figures come from
    ci_by_utc_hour: QuantitySeries
    ci_annual_min: Quantity
    ci_annual_mean: Quantity
    ci_annual_max: Quantity

    @model_validator(mode="after")
    def _check_24_hours(self) -> "GridZoneProfile":
        if len(self.ci_by_utc_hour.values) != 24:
            raise ValueError(
                f"field 'ci_by_utc_hour': needs 24 values (UTC hours 0..23), got {len(self.ci_by_utc_hour.values)}"
            )
        if self.basis not in ("direct", "lca"):
            raise ValueError(f"field 'basis': must be 'direct' or 'lca', got {self.basis!r}")
        return self

    @property
    def ci_by_utc_hour_g_per_kwh(self) -> list[float]:
        """24 hourly means, gCO2e/kWh, index = UTC hour."""
        return self.si_series("ci_by_utc_hour")
