"""Scenario: everything that defines a simulated edge LLM service, as one frozen config.

Named presets (``SCENARIOS``) give the default scenario, a tiny one for tests, and the Sprout
reproduction mode. ``aolo evaluate --scenario NAME`` and ``aolo train --scenario NAME`` take them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from aolo.hw_profiles import DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE


@dataclass(frozen=True)
class ScenarioConfig:
    """An edge base station serving LLM requests over the downlink."""

    name: str = "default"
    """Scenario name, used in run directories and reports."""
    server_profile: str = DEFAULT_SERVER_PROFILE
    """LLM server profile (hw_profiles name or TOML path)."""
    radio_profile: str = DEFAULT_RADIO_PROFILE
    """Radio profile (hw_profiles name or TOML path)."""
    grid: str = DEFAULT_GRID_ZONE
    """Grid: an embedded zone (profile name or zone id) or an Electricity Maps CSV path."""
    grid_start_hour: int = 0
    """First hour of the episode, as an index into the grid trace (hours from its start)."""
    episode_hours: int = 24
    """Simulated hours per episode."""
    random_start_day: bool = False
    """Start each episode on a random day of the trace (seeded), for training across a year."""
    requests_csv: str | None = None
    """Sprout requests.csv for trace replay; None draws synthetic requests from embedded figures."""
    judgements_csv: str | None = None
    """Sprout judgements.csv (with requests_csv)."""
    workload_csv: str | None = None
    """Hourly job counts (e.g. Alibaba PAI) for arrivals and daily class-mix changes; None: embedded diurnal default."""
    base_rate_per_s: float = 0.05
    """Mean request arrival rate per base station, requests/s."""
    class_mix_concentration: float = 50.0
    """Dirichlet concentration of the daily class-mix change (larger = steadier)."""
    background_sessions: float = 10.0
    """Mean number of other active sessions at the BS (all traffic shares P_0), scaled by the diurnal load."""
    bits_per_token: float = 32.0
    """Downlink payload per output token, bits (text; a speech modality multiplies it)."""
    modality_factor: float = 1.0
    """Payload multiplier (1 for text; e.g. ~150 for synthesised speech)."""
    outage_target_frac: float = 0.01
    """Target outage probability for the closed-form power of the reference policies."""
    quality_tolerance_xi: float = 0.1
    """Sprout's tolerance xi: the quality floor is (1 - xi * CI_norm) * Q_base."""
    quality_window: int = 200
    """W, requests in the rolling quality window."""
    ci_norm: str = "trailing"
    """'trailing' (min/max over the past 7 days, no future data) or 'annual' (look-ahead; Sprout reproduction only)."""
    include_radio: bool = True
    """False drops every radio term from the carbon, as Sprout's computation-only set-up."""
    latency_penalty: float = 1.0
    """lambda_T: reward penalty of a deadline miss or outage."""
    quality_penalty: float = 10.0
    """lambda_Q: reward penalty per unit of quality below the floor."""
    actor_hardware: str | None = None
    """Actor hardware profile charged per decision (None: no actor energy in the reward)."""

    def __post_init__(self) -> None:
        if self.ci_norm not in ("trailing", "annual"):
            raise ValueError(f"scenario field 'ci_norm': must be 'trailing' or 'annual', got {self.ci_norm!r}")
        if (self.requests_csv is None) != (self.judgements_csv is None):
            raise ValueError("scenario fields 'requests_csv' and 'judgements_csv' go together")
        for f in ("episode_hours", "quality_window"):
            if getattr(self, f) < 1:
                raise ValueError(f"scenario field {f!r}: must be >= 1")
        for f in ("base_rate_per_s", "bits_per_token", "modality_factor", "class_mix_concentration"):
            if not getattr(self, f) > 0:
                raise ValueError(f"scenario field {f!r}: must be > 0")
        if not 0 < self.outage_target_frac < 1 or not 0 <= self.quality_tolerance_xi <= 1:
            raise ValueError("scenario fields 'outage_target_frac' in (0, 1) and 'quality_tolerance_xi' in [0, 1]")

    def with_(self, **changes: Any) -> "ScenarioConfig":
        """A copy with fields changed (validated)."""
        known = {f.name for f in fields(self)}
        for k in changes:
            if k not in known:
                raise ValueError(f"unknown scenario field {k!r}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SCENARIOS: dict[str, ScenarioConfig] = {
    "default": ScenarioConfig(),
    "tiny": ScenarioConfig(name="tiny", episode_hours=6, base_rate_per_s=0.02, quality_window=50),
    "sprout-repro": ScenarioConfig(
        name="sprout-repro", include_radio=False, ci_norm="annual", grid_start_hour=800,
        episode_hours=720, quality_tolerance_xi=0.1,
    ),
}


def get_scenario(name: str, **overrides: Any) -> ScenarioConfig:
    """A preset by name, with fields overridden.

    :raises ValueError: unknown preset (the message lists them) or unknown field.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return SCENARIOS[name].with_(**overrides) if overrides else SCENARIOS[name]
