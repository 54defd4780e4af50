"""PopSAN's configuration, torch-free so that the CLI can build ``aolo train``'s options
without importing torch (the network itself is in :mod:`aolo.train.popsan`). What was screened
before these defaults were kept is in docs/model.md section 8."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from .config_errors import drop_removed_fields

__all__ = ["PopSANConfig", "ENCODER_VTH"]

ENCODER_VTH = 0.999
"""Regular-spike threshold of the encoder (PopSAN ``ENCODER_REGULAR_VTH``)."""


class PopSANConfig(BaseModel):
    """Shape and neuron constants of a PopSAN actor (Tang et al., CoRL 2020), sized for aolo's
    15-dimensional observation and 2 actions; an invalid value raises ``ValueError`` naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pop_per_obs_dim: PositiveInt = Field(10, description="encoder neurons per observation dimension")
    hidden_sizes: tuple[PositiveInt, ...] = Field((32, 32), min_length=1,
                                                  description="sizes of the hidden spiking (CubaLIF) layers")
    pop_per_act_dim: PositiveInt = Field(10, description="output neurons per action dimension")
    timesteps: PositiveInt = Field(5, description="simulation steps T per decision")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="synaptic-current decay per step")
    beta: float = Field(0.75, ge=0.0, le=1.0, description="membrane-voltage decay per step")
    threshold: float = Field(0.5, gt=0.0, description="firing threshold of the CubaLIF neurons")
    encoder_mean_range: tuple[float, float] = Field(
        (-3.0, 3.0), description="initial receptive-field means, spread evenly over this range of each input")
    encoder_std_init: float = Field(math.sqrt(0.15), gt=0.0, description="initial receptive-field width")
    surrogate: Literal["atan", "fast_sigmoid"] = Field(
        "atan", description="surrogate gradient of the spikes (snntorch): atan or fast_sigmoid")

    REMOVED: ClassVar[dict[str, Any]] = {"encoder_init": "range"}
    """Fields that older runs' configs (and SB3's saved policy arguments) may hold, with the one
    value this version reproduces."""

    @model_validator(mode="before")
    @classmethod
    def _drop_removed(cls, data: Any) -> Any:
        return drop_removed_fields(data, cls.REMOVED, "PopSANConfig")

    @classmethod
    def coerce(cls, value: "PopSANConfig | dict[str, Any] | None") -> "PopSANConfig":
        """A config from a config, a plain dict (as saved by SB3) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        raise ValueError(f"PopSANConfig: expected a PopSANConfig, dict or None, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values only, so a saved policy reloads without pickled code."""
        return self.model_dump(mode="json")
