"""Upper (and lower) bounds of every number a user or a base station hands the runtime.

Each bound is far beyond any real request or radio, so no honest input meets it, and tight enough
that no accepted value can make a product or a sum in the carbon model, the ledger's totals or the
observation overflow float64 or SQLite's integers. HTTP bodies (:mod:`aolo.runtime.service`), CLI
options (``aolo carbon estimate``) and profiles (``hw_profiles.quantity.SI_MAGNITUDE_MAX``) are
checked against these; an input outside gets a one-line error naming the field.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["ACTOR_ENERGY_J_MAX", "DISTANCE_M_MAX", "GRID_TRACE_HOURS_MAX", "INPUT_BOUNDS", "TIMESTAMP_RANGE_UTC",
           "TOKENS_MAX"]

TOKENS_MAX = 1_000_000
"""Prompt or answer length, tokens: above the longest context windows served (1M)."""
ACTOR_ENERGY_J_MAX = 1_000.0
"""Energy of one policy decision, J (a decision costs microjoules to millijoules)."""
DISTANCE_M_MAX = 100_000.0
"""Base station to user distance, m: 100 km."""

INPUT_BOUNDS: dict[str, tuple[float, float]] = {
    # field: (lowest, highest) accepted
    "prompt_tokens": (1, TOKENS_MAX),
    "output_tokens": (0, TOKENS_MAX),
    "deadline_s": (0, 86_400.0),  # s: one day
    "gain_db": (-250.0, 0.0),  # dB: a passive channel has no gain; -250 dB is beyond any cell edge
    "active_sessions": (0, 1_000_000),  # sessions at one BS
    "ci_g_per_kwh": (0, 5_000.0),  # gCO2e/kWh: about 4x the dirtiest grids (lignite, ~1,200)
    "inference_energy_j": (0, 1e8),  # J: ~28 kWh, hours of a multi-GPU server for one answer
    "inference_latency_s": (0, 86_400.0),  # s: one day
    "airtime_s": (0, 3_600.0),  # s: one hour on air
    "harq_tries": (0, 1_000),  # tries
    "tx_power_w": (0, 1_000.0),  # W: above any macro BS chain (40-80 W)
}
"""Telemetry and outcome fields of the service and the gateway."""

TIMESTAMP_RANGE_UTC = (datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
"""Request timestamps, [from, to): anything else is a client's clock or encoding error (and year 1
or 9999 overflows date arithmetic)."""

GRID_TRACE_HOURS_MAX = 10 * 8_766
"""Span of a grid carbon-intensity trace, hours: ten years of 365.25 days (Electricity Maps sells
hourly history from 2021, the Sprout traces are one year each). A trace is one float64 per hour
from its first row to its last, so two rows years apart would otherwise become millions of
interpolated hours (0.7 MB at this bound)."""
