"""Hardware that runs the policy's actor: per-operation dynamic energy plus static power.

E_decision = e_synop * synops + e_neuron * neuron_updates + e_mac * MACs + P_static * latency
Neuromorphic chips are priced by synaptic operations and neuron updates, dense processors by MACs.
Fields that do not apply to a device are left out of its file.

A neuromorphic chip may also state its capacity (cores, neurons and memory per core, axons, bit
widths); ``aolo.runtime.loihi_fit`` checks a spiking actor against them.
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
        # capacity of a neuromorphic chip (aolo.runtime.loihi_fit)
        "cores_per_chip": "count",
        "neurons_per_core": "count",
        "memory_per_core": "bits",
        "input_axons_per_core": "count",
        "output_axons_per_core": "count",
        "neurons_per_chip": "count",
        "synapses_per_chip": "count",
        "weight_bits": "bits",
        "threshold_bits": "bits",
        "state_bits": "bits",
    }
    CAPACITY_FIELDS: ClassVar[tuple[str, ...]] = (
        "cores_per_chip", "neurons_per_core", "memory_per_core", "input_axons_per_core", "output_axons_per_core",
        "neurons_per_chip", "synapses_per_chip", "weight_bits", "threshold_bits", "state_bits")

    execution: Literal["neuromorphic", "dense"]
    energy_per_synaptic_op: Quantity | None = None
    energy_per_neuron_update: Quantity | None = None
    energy_per_mac: Quantity | None = None
    static_power: Quantity
    latency_per_timestep: Quantity | None = None
    latency_per_decision: Quantity | None = None
    cores_per_chip: Quantity | None = None
    """Neuromorphic cores on one chip."""
    neurons_per_core: Quantity | None = None
    """Most neurons one core holds."""
    memory_per_core: Quantity | None = None
    """Memory of one core shared by synaptic weights and neuron state."""
    input_axons_per_core: Quantity | None = None
    """Distinct presynaptic sources one core can receive from (the fan-in of a neuron)."""
    output_axons_per_core: Quantity | None = None
    """Routes out of one core (neurons x destination cores)."""
    neurons_per_chip: Quantity | None = None
    synapses_per_chip: Quantity | None = None
    weight_bits: Quantity | None = None
    """Width of a synaptic weight's mantissa."""
    threshold_bits: Quantity | None = None
    """Width of a neuron's threshold mantissa."""
    state_bits: Quantity | None = None
    """Width of each neuron state variable (current, voltage)."""

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
        given = [f for f in self.CAPACITY_FIELDS if getattr(self, f) is not None]
        if given and len(given) != len(self.CAPACITY_FIELDS):
            missing = [f for f in self.CAPACITY_FIELDS if getattr(self, f) is None]
            raise ValueError(f"field {missing[0]!r}: a chip's capacity is given whole or not at all")
        return self

    @property
    def has_capacity(self) -> bool:
        """Whether the profile states the chip's capacity (the fields of ``CAPACITY_FIELDS``)."""
        return self.cores_per_chip is not None
