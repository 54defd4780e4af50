"""LLM serving hardware: energy and latency of prefill and decoding, and embodied carbon.

E_inf = e_pre * n_in + e_tok * kappa   [J];   tau_inf = t_pre * n_in + t_tok * kappa   [s]
embodied rate gamma_gpu = embodied_carbon / lifetime   [g/s]
"""

from __future__ import annotations

from typing import ClassVar

from .profile import Profile
from .quantity import Quantity


class LLMServerProfile(Profile):
    """An LLM on a GPU server, batch 1 (Sprout's measurement set-up)."""

    TYPE: ClassVar[str] = "llm_server"
    DIMENSIONS: ClassVar[dict[str, str]] = {
        "energy_per_output_token": "energy",
        "energy_per_input_token": "energy",
        "latency_per_output_token": "time",
        "latency_per_input_token": "time",
        "gpu_power": "power",
        "embodied_carbon": "carbon",
        "lifetime": "time",
        "pue": "ratio",
    }

    model: str
    gpu: str
    energy_per_output_token: Quantity
    energy_per_input_token: Quantity
    latency_per_output_token: Quantity
    latency_per_input_token: Quantity
    gpu_power: Quantity
    embodied_carbon: Quantity
    lifetime: Quantity
    pue: Quantity

    @property
    def energy_per_output_token_j(self) -> float:
        return self.si("energy_per_output_token")

    @property
    def energy_per_input_token_j(self) -> float:
        return self.si("energy_per_input_token")

    @property
    def latency_per_output_token_s(self) -> float:
        return self.si("latency_per_output_token")

    @property
    def latency_per_input_token_s(self) -> float:
        return self.si("latency_per_input_token")

    @property
    def embodied_g_per_s(self) -> float:
        """Embodied carbon amortised over the lifetime, g/s of use."""
        return self.si("embodied_carbon") / self.si("lifetime")

    @property
    def pue_frac(self) -> float:
        """Power usage effectiveness (>= 1, dimensionless)."""
        return self.si("pue")
