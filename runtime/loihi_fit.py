"""Does a spiking actor fit one Loihi 2 chip? Cores, neurons and synapses per core, fan-in and
fan-out, weight and threshold bits, against the chip's published limits.

Rockpool's Xylo mapper does the same for SynSense's chip: it names the rule a network breaks.
Here the limits come from the hardware profile (``hw_profiles/data/actor_hardware/loihi2.toml``,
each with its source and kind) and the network is the bit-accurate fixed-point actor
(:mod:`aolo.runtime.fixed_point`), the integers a Lava or netx network puts on the chip.

Mapping model (the assumptions, so that a reader can disagree with them):

* The population encoder and decoder run on the host (or the chip's embedded x86 cores), so the
  chip holds the spiking layers only; the encoder's spikes arrive as the first layer's inputs.
* Each spiking layer is a dense ``Dense -> LIF`` pair (Lava's ``Dense``, no sparsity), and a layer
  is split over as few cores as its neurons need. Every core of a layer receives all of the
  layer's inputs, so a neuron's fan-in (the layer's input width) must fit one core's input axons;
  splitting cannot help there.
* A core's memory holds each of its neurons' incoming weights (``weight_bits`` each) and the two
  state variables of a CUBA neuron (current and voltage, ``state_bits`` each). Routing tables,
  synapse headers and microcode also use core memory and are not counted, so passing this check
  is necessary, not sufficient; Intel's compiler decides the final placement.
* A neuron sends one spike message per destination core: its core needs
  ``neurons x cores of the next layer`` output routes (one per neuron for the last layer, read by
  the host).

Every failure is one line naming the layer (or the network), the limit and the value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .fixed_point import STATE_BITS, FixedPointActor

__all__ = [
    "DEFAULT_CHIP_PROFILE",
    "LayerResources",
    "LoihiFitError",
    "LoihiLimits",
    "LoihiResources",
    "check_loihi_fit",
    "loihi_resources",
]

DEFAULT_CHIP_PROFILE = "loihi2"
"""The actor-hardware profile whose capacity the fit check uses by default."""


class LoihiFitError(ValueError):
    """The network does not fit the chip; the message is one line naming the layer, limit and value."""


@dataclass(frozen=True)
class LoihiLimits:
    """The capacity of one chip, in plain integers, from an actor-hardware profile.

    :param profile: profile name and version, e.g. ``loihi2 1.1.0``
    :param memory_per_core_bits: memory of one core, bits
    """

    profile: str
    cores_per_chip: int
    neurons_per_core: int
    memory_per_core_bits: int
    input_axons_per_core: int
    output_axons_per_core: int
    neurons_per_chip: int
    synapses_per_chip: int
    weight_bits: int
    threshold_bits: int
    state_bits: int

    @classmethod
    def from_profile(cls, profile: Any) -> "LoihiLimits":
        """:param profile: an ``ActorHardwareProfile`` that states its capacity
        :raises ValueError: the profile has no capacity fields"""
        if not getattr(profile, "has_capacity", False):
            raise ValueError(f"profile {profile.name!r}: no chip capacity (cores_per_chip, ...) to check against")
        values = {f: int(round(profile.si(f))) for f in profile.CAPACITY_FIELDS if f != "memory_per_core"}
        return cls(profile=f"{profile.name} {profile.version}", memory_per_core_bits=int(round(profile.si("memory_per_core"))),
                   **values)

    @classmethod
    def load(cls, name: str = DEFAULT_CHIP_PROFILE) -> "LoihiLimits":
        """The limits of an embedded profile (or a profile file path)."""
        from aolo.hw_profiles import ActorHardwareProfile, load_profile

        return cls.from_profile(load_profile(name, ActorHardwareProfile))


@dataclass(frozen=True)
class LayerResources:
    """What one spiking layer takes on the chip.

    :param layer: 0-based index of the ``(Linear, CubaLIF)`` pair
    :param name: ``linear_k -> lif_k``, as in the NIR graph
    :param n_in: inputs per neuron (the fan-in)
    :param neurons: neurons in the layer
    :param synapses: weights, ``n_in x neurons``
    :param cores: cores the layer is split over
    :param neurons_per_core: most neurons on one of its cores
    :param synapses_per_core: most weights on one of its cores
    :param memory_per_core_bits: most memory used on one of its cores (weights and state), bits
    :param fan_out: synapses each of its spikes drives (0 for the last layer: read by the host)
    :param output_axons_per_core: most output routes of one of its cores
    :param weight_bits: signed bits its weight mantissas need
    :param weight_exp: its Dense weight exponent
    :param threshold_bits: unsigned bits its largest threshold mantissa needs
    """

    layer: int
    name: str
    n_in: int
    neurons: int
    synapses: int
    cores: int
    neurons_per_core: int
    synapses_per_core: int
    memory_per_core_bits: int
    fan_out: int
    output_axons_per_core: int
    weight_bits: int
    weight_exp: int
    threshold_bits: int


@dataclass(frozen=True)
class LoihiResources:
    """The whole network on one chip: per-layer use, totals, and every limit it breaks.

    :param limits: the chip's capacity it was checked against
    :param layers: one entry per spiking layer
    :param violations: one line per broken limit, first the layers' then the network's
    """

    limits: LoihiLimits
    layers: list[LayerResources]
    violations: list[str] = field(default_factory=list)

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def synapses(self) -> int:
        return sum(layer.synapses for layer in self.layers)

    @property
    def fits(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: limits, layers, totals, ``fits`` and ``violations`` (``loihi_resources.json``)."""
        return {"chip": self.limits.profile, "fits": self.fits, "cores": self.cores, "neurons": self.neurons,
                "synapses": self.synapses, "violations": list(self.violations),
                "layers": [asdict(layer) for layer in self.layers], "limits": asdict(self.limits)}


def _signed_bits(values: np.ndarray) -> int:
    """Bits of a two's-complement integer that holds every value (1 for all zeros)."""
    lo, hi = int(values.min(initial=0)), int(values.max(initial=0))
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1


def loihi_resources(fixed: FixedPointActor, limits: LoihiLimits) -> LoihiResources:
    """The network's resource use on one chip and every limit it breaks (see the module docstring).

    :param fixed: the bit-accurate actor (its layers' integers)
    :param limits: the chip's capacity
    :return: the use; ``violations`` is empty when it fits
    """
    chip = limits.profile.split()[0]
    bits_per_neuron = [layer.n_in * limits.weight_bits + 2 * limits.state_bits for layer in fixed.layers]
    cores, per_core, violations = [], [], []
    for k, layer in enumerate(fixed.layers):
        by_memory = limits.memory_per_core_bits // bits_per_neuron[k]
        capacity = min(limits.neurons_per_core, by_memory)
        if capacity < 1:
            violations.append(f"{chip}: layer {k} (linear_{k} -> lif_{k}): one neuron needs {bits_per_neuron[k]} bits "
                              f"({layer.n_in} weights of {limits.weight_bits} bits and its state), more than "
                              f"memory_per_core {limits.memory_per_core_bits} bits")
            capacity = 1
        cores.append(math.ceil(layer.n_out / capacity))
        per_core.append(math.ceil(layer.n_out / cores[-1]))
    layers = []
    for k, layer in enumerate(fixed.layers):
        last = k == len(fixed.layers) - 1
        routes = per_core[k] * (1 if last else cores[k + 1])
        entry = LayerResources(
            layer=k, name=f"linear_{k} -> lif_{k}", n_in=layer.n_in, neurons=layer.n_out,
            synapses=layer.n_in * layer.n_out, cores=cores[k], neurons_per_core=per_core[k],
            synapses_per_core=per_core[k] * layer.n_in, memory_per_core_bits=per_core[k] * bits_per_neuron[k],
            fan_out=0 if last else fixed.layers[k + 1].n_out, output_axons_per_core=routes,
            weight_bits=_signed_bits(layer.weight_raw), weight_exp=layer.weight_exp,
            threshold_bits=max(int(layer.vth_raw.max(initial=0)).bit_length(), 1))
        layers.append(entry)
        where = f"{chip}: layer {k} ({entry.name})"
        for value, limit, what in (
                (entry.n_in, limits.input_axons_per_core, "fan-in {v} inputs exceeds input_axons_per_core {l}"),
                (routes, limits.output_axons_per_core, "fan-out needs {v} output routes per core, more than "
                                                        "output_axons_per_core {l}"),
                (entry.weight_bits, limits.weight_bits, "weights need {v} bits, more than weight_bits {l}"),
                (entry.threshold_bits, limits.threshold_bits, "threshold needs {v} bits, more than threshold_bits {l}")):
            if value > limit:
                violations.append(f"{where}: {what.format(v=value, l=limit)}")
    resources = LoihiResources(limits=limits, layers=layers, violations=violations)
    for value, limit, what in (
            (resources.cores, limits.cores_per_chip, "needs {v} cores, more than cores_per_chip {l}"),
            (resources.neurons, limits.neurons_per_chip, "has {v} neurons, more than neurons_per_chip {l}"),
            (resources.synapses, limits.synapses_per_chip, "has {v} synapses, more than synapses_per_chip {l}"),
            (STATE_BITS, limits.state_bits, "aolo's fixed-point model keeps {v}-bit state, more than state_bits {l}")):
        if value > limit:
            violations.append(f"{chip}: network: {what.format(v=value, l=limit)}")
    return resources


def check_loihi_fit(fixed: FixedPointActor, limits: LoihiLimits | None = None) -> LoihiResources:
    """:func:`loihi_resources`, raising on the first broken limit.

    :param limits: default: the ``loihi2`` profile's
    :raises LoihiFitError: one line naming the layer (or the network), the limit and the value
    """
    resources = loihi_resources(fixed, limits or LoihiLimits.load())
    if resources.violations:
        raise LoihiFitError(resources.violations[0])
    return resources
