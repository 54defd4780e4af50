"""The common shape of every hardware or grid profile: identity, version and sourced quantities.

A concrete profile type subclasses :class:`Profile`, declares each quantity field with its
dimension in ``DIMENSIONS`` and exposes SI values through ``si(field)``. Units are checked when the
profile is validated, so a wrong unit fails at load with the field named.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .quantity import Quantity, QuantitySeries


class Profile(BaseModel):
    """Fields every profile has; subclasses add sourced quantities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    DIMENSIONS: ClassVar[dict[str, str]] = {}
    TYPE: ClassVar[str] = ""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="unique id, e.g. 'llama2-13b-a100'")
    type: str = Field(description="profile type: llm_server, radio, actor_hardware or grid_zone")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$", description="semantic version of this profile")
    description: str = Field(min_length=3)

    @model_validator(mode="after")
    def _check_units_and_type(self) -> "Profile":
        if self.type != self.TYPE:
            raise ValueError(f"field 'type': expected {self.TYPE!r}, got {self.type!r}")
        for field, dimension in self.DIMENSIONS.items():
            q = getattr(self, field)
            if q is not None:
                q.to_si(dimension, field)  # raises naming the field
        return self

    def si(self, field: str) -> float:
        """Value of quantity `field` in the base unit of its dimension (J, W, s, g, ...)."""
        q = getattr(self, field)
        if q is None:
            raise ValueError(f"profile {self.name!r} has no value for {field!r}")
        return q.to_si(self.DIMENSIONS[field], field)

    def si_series(self, field: str) -> list[float]:
        q: QuantitySeries = getattr(self, field)
        return q.to_si(self.DIMENSIONS[field], field)

    def quantities(self) -> dict[str, Quantity | QuantitySeries]:
        """The sourced quantities of this profile, by field name (absent optional ones left out)."""
        return {f: getattr(self, f) for f in self.DIMENSIONS if getattr(self, f) is not None}
