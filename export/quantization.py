"""What quantisation to Loihi's integers costs: per layer, and at the level of the policy.

Per layer: weight and threshold quantisation errors (from the fixed-point model) and the share of
spikes equal to the float network's. Policy level: carbon per request of the fixed-point actor
against the float actor on the evaluation scenario, same seeds (the numpy integer model stands in
for Lava here; it is bit-exact to Lava's fixed_pt models, which export checks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from aolo.runtime.actor_spec import ActorSpec
from aolo.runtime.fixed_point import FixedPointActor, quantization_report


@dataclass(frozen=True)
class LayerQuantization:
    """One spiking layer: quantisation errors and spike agreement with float."""

    layer: str
    weight_exp: int
    weight_rel_rms_frac: float
    threshold_max_rel_frac: float
    spike_agreement_frac: float
    float_rate_frac: float
    fixed_rate_frac: float


@dataclass(frozen=True)
class PolicyQuantization:
    """Carbon per request of the fixed-point actor against the float actor on the same seeds."""

    scenario: str
    seeds: list[int]
    float_carbon_g_per_request: float
    fixed_carbon_g_per_request: float
    float_quality_vs_base_frac: float
    fixed_quality_vs_base_frac: float

    @property
    def carbon_rel_diff_frac(self) -> float:
        return self.fixed_carbon_g_per_request / self.float_carbon_g_per_request - 1.0


def layer_table(spec: ActorSpec, fixed: FixedPointActor, obs: np.ndarray) -> list[LayerQuantization]:
    """Per spiking layer quantisation errors and spike agreement on ``obs``."""
    _, float_spikes = spec.forward_with_spikes(obs)
    _, fixed_spikes = fixed.forward_with_spikes(obs)
    rows = []
    for k, rep in enumerate(quantization_report(fixed)):
        f, q = float_spikes[k + 1], fixed_spikes[k + 1]
        rows.append(LayerQuantization(layer=f"lif_{k}", weight_exp=rep.weight_exp, weight_rel_rms_frac=rep.weight_rel_rms_frac,
                                      threshold_max_rel_frac=rep.threshold_max_rel_frac,
                                      spike_agreement_frac=float((f == q).mean()), float_rate_frac=float(f.mean()),
                                      fixed_rate_frac=float(q.mean())))
    return rows


def policy_effect(spec: ActorSpec, fixed: FixedPointActor, scenario_name: str, seeds: list[int],
                  n_bs: int = 4) -> PolicyQuantization:
    """Evaluate the float and the fixed-point actor on the scenario, paired on the same seeds."""
    from aolo.train.evaluate import evaluate_policies, summary_row
    from aolo.train.policies import ActorPolicy, BasePolicy
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel

    model = ServiceModel(get_scenario(scenario_name))
    base, f, q = evaluate_policies([BasePolicy(), ActorPolicy("float", spec.forward), ActorPolicy("fixed", fixed.forward)],
                                   model, seeds, n_bs=n_bs)
    return PolicyQuantization(scenario=scenario_name, seeds=list(seeds), float_carbon_g_per_request=f.carbon_mean_g(),
                              fixed_carbon_g_per_request=q.carbon_mean_g(),
                              float_quality_vs_base_frac=summary_row(f, base)["quality_vs_base_frac"],
                              fixed_quality_vs_base_frac=summary_row(q, base)["quality_vs_base_frac"])


def report_dict(layers: list[LayerQuantization], policy: PolicyQuantization | None) -> dict:
    """JSON-ready quantisation report."""
    out: dict = {"layers": [asdict(r) for r in layers]}
    if policy is not None:
        out["policy"] = {**asdict(policy), "carbon_rel_diff_frac": policy.carbon_rel_diff_frac}
    return out
