"""Reference policies: the LP returns a valid mix that meets the floor, and the policies rank as
the model says they should."""

import numpy as np
import pytest

from aolo.train.evaluate import evaluate_policy, summary_row
from aolo.train.policies import REFERENCE_POLICIES, LPPolicy, OraclePolicy, calibrate, solve_level_mix
from aolo.train.scenario import get_scenario
from aolo.train.simulator import BatchSimulator, ServiceModel


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return ServiceModel(get_scenario("tiny"))


def test_lp_mix_is_a_probability_vector_that_meets_the_floor():
    cost = np.array([[1.0, 0.3, 0.2]])
    quality = np.array([[0.5, 0.3, 0.2]])
    x = solve_level_mix(cost, quality, np.ones(1), floor_frac=0.9)
    assert x.shape == (1, 3) and np.all(x >= 0) and x.sum() == pytest.approx(1.0)
    assert float(x[0] @ quality[0]) >= 0.9 * 0.5 - 1e-9
    assert float(x[0] @ cost[0]) < 1.0  # it saves against always-L0


def test_lp_picks_the_cheapest_level_when_the_floor_is_loose():
    x = solve_level_mix(np.array([[1.0, 0.3, 0.2]]), np.array([[0.2, 0.3, 0.5]]), np.ones(1), floor_frac=0.9)
    np.testing.assert_allclose(x, [[0, 0, 1]], atol=1e-9)


def test_class_aware_lp_meets_the_pooled_floor_and_costs_no_more_than_one_mix(model):
    stats = calibrate(model)
    cost = 300.0 * stats.carbon_per_ci + stats.carbon_fixed_g
    w = stats.class_mix
    per_class = solve_level_mix(cost, stats.preference, w, 0.95)
    one = solve_level_mix((w @ cost)[None], (w @ stats.preference)[None], np.ones(1), 0.95)
    assert np.allclose(per_class.sum(axis=1), 1.0)
    q_req = 0.95 * float(w @ stats.preference[:, 0])
    assert float(np.sum(w[:, None] * per_class * stats.preference)) >= q_req - 1e-9
    assert float(np.sum(w[:, None] * per_class * cost)) <= float(one[0] @ (w @ cost)) + 1e-12


def test_oracle_rounding_keeps_the_floor():
    x = np.array([[1.0, 0.0, 0.0], [0.0, 0.4, 0.6], [0.0, 0.0, 1.0]])
    quality = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    level = OraclePolicy._round(x, quality)
    assert level.tolist() == [0, 1, 2]


def test_policies_rank_as_expected_on_the_same_requests(model):
    seeds = [101, 102]
    res = {name: evaluate_policy(REFERENCE_POLICIES[name](), model, seeds, n_bs=4)
           for name in ("base", "co2-only", "sprout-lp", "class-aware-lp", "oracle")}
    c = {k: v.carbon_mean_g() for k, v in res.items()}
    assert c["oracle"] < c["class-aware-lp"] < c["sprout-lp"] < c["base"]
    assert c["co2-only"] < c["sprout-lp"]
    rows = {k: summary_row(v, res["base"]) for k, v in res.items()}
    assert rows["base"]["saving_vs_base_frac"] == 0.0 and rows["base"]["quality_vs_base_frac"] == 1.0
    # the LPs keep quality near the floor; CO2-only gives it up
    assert rows["sprout-lp"]["quality_vs_base_frac"] > 0.9
    assert rows["class-aware-lp"]["quality_vs_base_frac"] > 0.9
    assert rows["co2-only"]["quality_vs_base_frac"] < rows["class-aware-lp"]["quality_vs_base_frac"]
    assert rows["oracle"]["latency_violation_frac"] < rows["base"]["latency_violation_frac"]


def test_lp_policy_is_deterministic_under_a_seed(model):
    a = evaluate_policy(LPPolicy(per_class=True), model, [7], n_bs=2)
    b = evaluate_policy(LPPolicy(per_class=True), model, [7], n_bs=2)
    assert a.carbon_mean_g() == b.carbon_mean_g()


def test_lp_policy_draws_levels_from_its_hourly_mix(model):
    pol = LPPolicy(per_class=False)
    sim = BatchSimulator(model, n_bs=64, seed=3)
    ctx = sim.reset()
    pol.reset(sim, 3)
    counts, expected = np.zeros(3), np.zeros(3)
    for _ in range(100):
        level, power = pol.decide(ctx, None)
        counts += np.bincount(level, minlength=3)
        expected += sum(pol.mix_for_hour(int(h))[c] for h, c in zip(ctx.hour_index, ctx.task_class))
        assert np.all((power >= model.link.p_min_w) & (power <= model.link.p_max_w))
        sim.step(level, power)
        ctx = sim.context
    np.testing.assert_allclose(counts / counts.sum(), expected / expected.sum(), atol=0.03)


def test_policies_side_by_side_give_each_policy_exactly_its_own_evaluation(model):
    from aolo.train.evaluate import evaluate_policies
    from aolo.train.policies import ActorPolicy, ClassLagrangianPolicy

    def actor(obs: np.ndarray) -> np.ndarray:  # a fixed nonlinear actor: levels and powers vary with the input
        return np.tanh(obs[:, :2] * 3.0 - obs[:, 2:4])

    names = ["oracle", "class-aware-lp", "sprout-lp", "co2-only", "base", "random"]
    make = [REFERENCE_POLICIES[n] for n in names] + [lambda: ClassLagrangianPolicy(2.0), lambda: ActorPolicy("actor", actor)]
    together = evaluate_policies([m() for m in make], model, [501, 502], n_bs=3)
    for m, result in zip(make, together):
        alone = evaluate_policy(m(), model, [501, 502], n_bs=3)
        assert result.policy == alone.policy and result == alone, alone.policy  # every total, to the bit
