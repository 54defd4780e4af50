"""Upper (and lower) bounds of every number a user or a base station hands the runtime.

Each bound is far beyond any real request or radio, so no honest input meets it, and tight enough
that no accepted value can make a product or a sum in the carbon model, the ledger's totals or the
observation overflow float64 or SQLite's integers. HTTP bodies, CLI options and profiles are
checked against these; an input outside gets a one-line error naming the field.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = [
    "ACTIVE_SESSIONS_MAX",
    "ACTOR_ENERGY_J_MAX",
    "AIRTIME_S_MAX",
    "CI_G_PER_KWH_MAX",
    "DEADLINE_S_MAX",
    "DISTANCE_M_MAX",
    "GAIN_DB_MAX",
    "GAIN_DB_MIN",
    "HARQ_TRIES_MAX",
    "INFERENCE_ENERGY_J_MAX",
    "INFERENCE_LATENCY_S_MAX",
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "TOKENS_MAX",
    "TX_POWER_W_MAX",
]

TOKENS_MAX = 10_000_000
"""Prompt or answer length, tokens: ten times the longest context window offered today (1M)."""
DEADLINE_S_MAX = 86_400.0
"""Latency budget of one request, s: a day."""
GAIN_DB_MIN, GAIN_DB_MAX = -300.0, 0.0
"""Large-scale downlink gain, dB: a passive channel never amplifies; -300 dB is below any link."""
ACTIVE_SESSIONS_MAX = 1_000_000
"""Sessions active at one base station."""
CI_G_PER_KWH_MAX = 5_000.0
"""Grid carbon intensity, gCO2e/kWh: the dirtiest grids are about 1,200 (as hw_profiles' bound)."""
TX_POWER_W_MAX = 10_000.0
"""Downlink transmit power, W: a macro sector transmits 20-80 W."""
AIRTIME_S_MAX = 86_400.0
"""Downlink airtime of one answer over all HARQ tries, s."""
HARQ_TRIES_MAX = 1_000
"""HARQ tries of one answer (LTE and NR use at most a handful)."""
INFERENCE_ENERGY_J_MAX = 3.6e9
"""GPU energy of one answer, J: 1 MWh."""
INFERENCE_LATENCY_S_MAX = 86_400.0
"""Generation time of one answer, s: a day."""
ACTOR_ENERGY_J_MAX = 1_000.0
"""Energy of one policy decision, J (a decision costs microjoules to millijoules)."""
DISTANCE_M_MAX = 100_000.0
"""Base station to user distance, m: 100 km."""
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_MAX = datetime(2200, 1, 1, tzinfo=timezone.utc)
"""Request timestamps: anything else is a client's clock or encoding error (and year 1 or 9999
overflows date arithmetic)."""
