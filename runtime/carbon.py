"""The carbon model of one LLM request served over the air: the single source of truth.

Every consumer (the environment's reward, the reference policies, the runtime's ledger, the
reports) calls :func:`request_carbon`; nothing else computes carbon.

For request i, with grid carbon intensity CI_i (gCO2e/kWh):

    E_comm,i = Delta_p * P_i * T_air,i + (P_0 / max(1, L_i)) * tau_sess,i        [J]
    tau_sess,i = tau_inf,i + T_air,i                                             [s]
    C_i = CI_i / 3.6e6 * (PUE * E_inf,i + E_comm,i + E_act,i)
          + gamma_gpu * tau_inf,i + gamma_bs / max(1, L_i) * tau_sess,i            [gCO2e]

Symbols: E_inf inference energy at the GPU (J), tau_inf inference latency (s), P_i downlink
transmit power (W), T_air airtime over all HARQ tries (s), L_i active sessions at the BS, P_0 and
Delta_p the EARTH static power (W) and load slope (1) of a transceiver chain, E_act the actor's
decision energy (J), PUE the edge server site's power usage effectiveness, gamma embodied carbon
amortised over the lifetime (g/s). 3.6e6 J = 1 kWh.

Deviations from the reference system model (written down in docs/model.md): PUE multiplies the
server's inference energy only, since EARTH's P_0 and Delta_p already include the BS's power supply
and cooling losses (Auer et al., 2011) and a data-centre PUE on them would count cooling twice; and
the BS's embodied carbon is shared by occupancy like its static power (the BS serves L sessions at
once, while the batch-1 GPU serves one request at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from aolo.hw_profiles import LLMServerProfile, RadioProfile

J_PER_KWH = 3.6e6


def joules_to_kwh(energy_j: np.ndarray | float) -> np.ndarray | float:
    """Energy in J to kWh."""
    return energy_j / J_PER_KWH


def operational_carbon_g(energy_j: np.ndarray | float, ci_g_per_kwh: np.ndarray | float) -> np.ndarray | float:
    """Carbon of drawing `energy_j` from a grid at `ci_g_per_kwh`, gCO2e."""
    return ci_g_per_kwh * joules_to_kwh(energy_j)


@dataclass(frozen=True)
class CarbonParams:
    """The constants of the carbon model, in SI units, usually built from profiles.

    :param pue_frac: power usage effectiveness of the edge server site (>= 1)
    :param radio_static_power_w: EARTH P_0 of one transceiver chain, W
    :param radio_load_slope: EARTH Delta_p, W of input per W radiated
    :param gpu_embodied_g_per_s: embodied carbon of the LLM server per second of inference, g/s
    :param bs_embodied_g_per_s: embodied carbon of one BS transceiver chain per second, g/s (shared by its sessions)
    :param include_radio: False drops every radio term (dynamic, static share, BS embodied), as
        Sprout's computation-only set-up does
    """

    pue_frac: float
    radio_static_power_w: float
    radio_load_slope: float
    gpu_embodied_g_per_s: float
    bs_embodied_g_per_s: float
    include_radio: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, bool) and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"CarbonParams.{f.name} must be finite and >= 0, got {v}")
        if self.pue_frac < 1.0:
            raise ValueError(f"CarbonParams.pue_frac must be >= 1, got {self.pue_frac}")

    @classmethod
    def from_profiles(cls, server: LLMServerProfile, radio: RadioProfile, include_radio: bool = True) -> "CarbonParams":
        """Constants from an LLM-server profile and a radio profile."""
        return cls(
            pue_frac=server.pue_frac,
            radio_static_power_w=radio.si("p_0"),
            radio_load_slope=radio.si("delta_p"),
            gpu_embodied_g_per_s=server.embodied_g_per_s,
            bs_embodied_g_per_s=radio.embodied_g_per_s,
            include_radio=include_radio,
        )


@dataclass(frozen=True)
class CarbonBreakdown:
    """Per-request energy and carbon, each field (n,) float64 (or a scalar for one request).

    Energies in J, carbon in gCO2e. ``total_g`` = inference_g + radio_g + actor_g + embodied_gpu_g
    + embodied_bs_g.
    """

    inference_energy_j: np.ndarray
    radio_dynamic_energy_j: np.ndarray
    radio_static_energy_j: np.ndarray
    actor_energy_j: np.ndarray
    session_s: np.ndarray
    inference_g: np.ndarray
    radio_g: np.ndarray
    actor_g: np.ndarray
    embodied_gpu_g: np.ndarray
    embodied_bs_g: np.ndarray
    total_g: np.ndarray

    COMPONENTS = ("inference_g", "radio_g", "actor_g", "embodied_gpu_g", "embodied_bs_g")
    MODEL_KINDS = {"inference_g": "modelled", "radio_g": "modelled", "actor_g": "estimated",
                   "embodied_gpu_g": "modelled", "embodied_bs_g": "modelled", "total_g": "modelled + estimated"}
    """Each component's label when this model computes it from profiles (the simulator, ``aolo
    evaluate``, ``aolo carbon estimate``): inference from the server profile's per-token figures,
    radio from the radio profile's power model, embodied carbon amortised: modelled; the actor's
    op counts priced on a hardware profile: estimated. Where a client or a counter supplies an
    energy, the ledger row labels that part measured instead."""

    def mean(self) -> dict[str, float]:
        """Mean of every field over the batch, by field name."""
        return {f.name: float(np.mean(getattr(self, f.name))) for f in fields(self)}

    def sum(self) -> dict[str, float]:
        """Sum of every field over the batch, by field name."""
        return {f.name: float(np.sum(getattr(self, f.name))) for f in fields(self)}


def request_carbon(
    params: CarbonParams,
    ci_g_per_kwh: np.ndarray | float,
    inference_energy_j: np.ndarray | float,
    inference_latency_s: np.ndarray | float,
    tx_power_w: np.ndarray | float,
    airtime_s: np.ndarray | float,
    active_sessions: np.ndarray | float,
    actor_energy_j: np.ndarray | float = 0.0,
) -> CarbonBreakdown:
    """Carbon of each request in a batch; all array arguments broadcast to (n,).

    :param params: model constants
    :param ci_g_per_kwh: grid carbon intensity when the request is served, gCO2e/kWh
    :param inference_energy_j: GPU energy of generating the answer, J
    :param inference_latency_s: time to generate the answer, s
    :param tx_power_w: downlink transmit power, W
    :param airtime_s: downlink airtime over all HARQ tries, s
    :param active_sessions: sessions active at the BS when the request is served (L >= 0)
    :param actor_energy_j: energy of the policy's decision on its hardware, J
    :return: the per-request breakdown
    """
    ci = np.asarray(ci_g_per_kwh, dtype=np.float64)
    e_inf = np.asarray(inference_energy_j, dtype=np.float64)
    tau_inf = np.asarray(inference_latency_s, dtype=np.float64)
    e_act = np.asarray(actor_energy_j, dtype=np.float64)
    if params.include_radio:
        t_air = np.asarray(airtime_s, dtype=np.float64)
        tau_sess = tau_inf + t_air
        e_dyn = params.radio_load_slope * np.asarray(tx_power_w, dtype=np.float64) * t_air
        occupancy_share = 1.0 / np.maximum(1.0, np.asarray(active_sessions, dtype=np.float64))
        e_static = params.radio_static_power_w * occupancy_share * tau_sess
        bs_embodied = params.bs_embodied_g_per_s * occupancy_share * tau_sess
    else:
        tau_sess = tau_inf
        e_dyn = e_static = bs_embodied = np.zeros_like(tau_inf)
    inference_g = operational_carbon_g(params.pue_frac * e_inf, ci)
    radio_g = operational_carbon_g(e_dyn + e_static, ci)
    actor_g = operational_carbon_g(e_act, ci)
    embodied_gpu_g = params.gpu_embodied_g_per_s * tau_inf
    total_g = inference_g + radio_g + actor_g + embodied_gpu_g + bs_embodied
    shape = np.broadcast(ci, e_inf, tau_inf, e_act, e_dyn, e_static).shape

    def b(x: np.ndarray) -> np.ndarray:
        if not shape:  # one request priced from scalars (the gateway's path): a scalar, no broadcast
            return np.float64(x)
        return np.broadcast_to(x, shape).astype(np.float64)

    return CarbonBreakdown(
        inference_energy_j=b(e_inf), radio_dynamic_energy_j=b(e_dyn), radio_static_energy_j=b(e_static),
        actor_energy_j=b(e_act), session_s=b(tau_sess), inference_g=b(inference_g), radio_g=b(radio_g),
        actor_g=b(actor_g), embodied_gpu_g=b(embodied_gpu_g), embodied_bs_g=b(bs_embodied), total_g=b(total_g),
    )
