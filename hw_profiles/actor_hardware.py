"""Hardware that runs the policy's actor: per-operation dynamic energy plus static power.

E_decision = e_synop * synops + e_neuron * neuron_updates + e_mac * MACs + P_static * latency
Neuromorphic chips are priced by synaptic operations and neuron updates, dense processors by MACs.
Fields that do not apply to a device are left out of its file.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from .profile import Profile
from .quantity import Quantity


class ActorHardwareProfile(Profile):
    """A device that can run the actor: neuromorphic (Loihi) or dense (GPU, CPU)."""

    TYPE: ClassVar[str] = "actor_hardware"
    DIMENSIONS: ClassVar[dict[str, str]] = {
        "energy_per_synaptic_op": "energy",
        "energy_per_neuron_update": "energy",
        "energy_per_mac": "energy",
        "static_power": "power",
        "latency_per_timestep": "time",
        "latency_per_decision": "time",
    }

    execution: Literal["neuromorphic", "dense"]
    energy_per_synaptic_op: Quantity | None = None
    energy_per_neuron_update: Quantity | None = None
    energy_per_mac: Quantity | None = None
    static_power: Quantity
    latency_per_timestep: Quantity | None = None
    latency_per_decision: Quantity | None = None

    @model_validator(mode="after")
    def _check_execution_fields(self) -> "ActorHardwareProfile":
        if self.execution == "neuromorphic":
            for f in ("energy_per_synaptic_op", "energy_per_neuron_update", "latency_per_timestep"):
                if getattr(self, f) is None:
                    raise ValueError(f"field {f!r}: required for neuromorphic hardware")
        else:
            for f in ("energy_per_mac", "latency_per_decision"):
                if getattr(self, f) is None:
                    raise ValueError(f"field {f!r}: required for dense hardware")
        return self
