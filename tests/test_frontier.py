"""The class-aware LP's quality-carbon frontier: the hull, interpolation, and the excess of a
policy over the LP at equal quality."""

import math

import numpy as np
import pytest

from aolo.train.evaluate import evaluate_policy
from aolo.train.frontier import Frontier, FrontierPoint, lp_frontier
from aolo.train.policies import REFERENCE_POLICIES, LPPolicy, solve_level_mix
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel

pytestmark = pytest.mark.xdist_group("test_frontier")  # one xdist worker: its module fixture evaluates a frontier once


def _pt(q: float, c: float) -> FrontierPoint:
    return FrontierPoint(margin=0.0, quality_vs_base_frac=q, carbon_g_per_request=c)


def test_hull_drops_points_above_the_line_and_interpolates_between_the_rest():
    f = Frontier.from_points([_pt(1.0, 0.05), _pt(0.9, 0.03), _pt(0.95, 0.045), _pt(1.1, 0.09)])
    assert [p.quality_vs_base_frac for p in f.hull] == [0.9, 1.0, 1.1]  # 0.95 lies above the 0.9-1.0 chord
    assert f.carbon_at(0.95) == pytest.approx(0.04)
    assert f.carbon_at(1.05) == pytest.approx(0.07)
    assert math.isnan(f.carbon_at(0.85)) and math.isnan(f.carbon_at(1.2))


def test_hull_starts_at_its_cheapest_point_and_needs_two_qualities():
    f = Frontier.from_points([_pt(0.8, 0.04), _pt(0.9, 0.03), _pt(1.0, 0.05)])
    assert f.quality_range == (0.9, 1.0)
    with pytest.raises(ValueError, match="two different qualities"):
        Frontier.from_points([_pt(0.9, 0.03), _pt(0.9, 0.04)])


def test_a_margin_out_of_reach_gives_the_best_quality_mix_not_always_l0():
    quality = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    x = solve_level_mix(np.ones((2, 3)), quality, np.array([0.5, 0.5]), floor_frac=5.0)
    np.testing.assert_array_equal(x, [[0, 1, 0], [1, 0, 0]])


@pytest.fixture(scope="session")
def tiny_frontier():
    model = ServiceModel(get_scenario("tiny"))
    return model, lp_frontier(model, [501], n_bs=4, margins=(-0.1, -0.05, 0.0, 0.05, 0.1))


def test_a_larger_margin_buys_quality_with_carbon(tiny_frontier):
    _, f = tiny_frontier
    q = [p.quality_vs_base_frac for p in f.points]
    c = [p.carbon_g_per_request for p in sorted(f.points, key=lambda p: p.margin)]
    assert q == sorted(q) and c == sorted(c) and q[-1] - q[0] > 0.1


def test_the_lp_without_margin_sits_on_its_frontier_and_base_is_far_above_it(tiny_frontier):
    model, f = tiny_frontier
    lp = evaluate_policy(LPPolicy(per_class=True), model, [501], n_bs=4)
    assert 0.0 <= f.excess_frac(lp) < 0.01  # a hull point or just above the hull
    base = evaluate_policy(REFERENCE_POLICIES["base"](), model, [501], n_bs=4)
    assert f.excess_frac(base) > 1.0  # always-L0 needs more than twice the LP's carbon for its quality


def test_a_margin_already_evaluated_is_taken_as_given_and_matches_a_fresh_evaluation(tiny_frontier):
    model, f = tiny_frontier
    lp = evaluate_policy(REFERENCE_POLICIES["class-aware-lp"](), model, [501], n_bs=4)
    given = lp_frontier(model, [501], n_bs=4, margins=(-0.1, -0.05, 0.0, 0.05, 0.1), evaluated={0.0: lp})
    assert given == f  # the reference LP is the frontier's margin 0, evaluated alike
    other = evaluate_policy(LPPolicy(per_class=True, quality_margin=0.1), model, [501], n_bs=4)
    taken = lp_frontier(model, [501], n_bs=4, margins=(-0.1, 0.0), evaluated={0.0: other})
    assert [p.quality_vs_base_frac for p in taken.points if p.margin == 0.0] == [other.quality_vs_base_frac]  # not re-run


def test_the_class_lagrangian_rule_runs_from_cheapest_to_best_quality_level(tiny_frontier):
    from aolo.train.policies import ClassLagrangianPolicy, calibrate
    from aolo.train.simulator import BatchSimulator, observe

    model, _ = tiny_frontier
    stats = calibrate(model)
    sim = BatchSimulator(model, n_bs=64, seed=501)
    ctx = sim.reset(seed=501)
    levels = {}
    for m in (0.0, 100.0):
        policy = ClassLagrangianPolicy(m)
        policy.reset(sim, 501)
        levels[m] = policy.decide(ctx, observe(ctx))[0]
    cost = ctx.ci_g_per_kwh[:, None] * stats.carbon_per_ci[ctx.task_class] + stats.carbon_fixed_g[ctx.task_class]
    np.testing.assert_array_equal(levels[0.0], cost.argmin(axis=1))
    np.testing.assert_array_equal(levels[100.0], stats.preference[ctx.task_class].argmax(axis=1))
    with pytest.raises(ValueError, match="multiplier"):
        ClassLagrangianPolicy(-1.0)


# --- every margin in one simulation, and the cache --------------------------------------------
def test_numpy_row_sums_add_each_row_as_numpy_sums_a_1d_array():
    from aolo.train.evaluate import numpy_row_sums

    rng = np.random.default_rng(0)
    for n in [*range(0, 40), 127, 128, 129, 255, 256, 257, 400]:
        x = rng.lognormal(0.0, 3.0, (5, n)) * rng.choice([-1.0, 1.0], (5, n))
        expected = np.array([row.sum() for row in x])
        np.testing.assert_array_equal(numpy_row_sums(x), expected)


def test_margins_evaluated_side_by_side_give_each_margin_exactly_its_own_evaluation(tiny_frontier):
    from aolo.train.evaluate import evaluate_policy_groups
    from aolo.train.frontier import LPMarginsPolicy

    model, _ = tiny_frontier
    margins = [-0.1, -0.035, 0.0, 0.12]
    names = [LPPolicy(per_class=True, quality_margin=m).name for m in margins]
    side_by_side = evaluate_policy_groups(LPMarginsPolicy(margins, n_bs=3), names, model, [501, 502], n_bs=3)
    for m, result in zip(margins, side_by_side):
        alone = evaluate_policy(LPPolicy(per_class=True, quality_margin=m), model, [501, 502], n_bs=3)
        assert result == alone  # every total of every seed, to the last bit
    assert len({r.carbon_mean_g() for r in side_by_side}) == len(margins)


def test_a_cached_frontier_is_reused_and_a_damaged_entry_is_computed_again(tiny_frontier, tmp_path):
    model, _ = tiny_frontier
    margins = (-0.1, 0.0, 0.1)
    said: list[str] = []
    fresh = lp_frontier(model, [501], n_bs=2, margins=margins, cache_dir=tmp_path, log=said.append)
    (entry,) = tmp_path.glob("lp_frontier-*.json")
    assert said == []
    assert lp_frontier(model, [501], n_bs=2, margins=margins, cache_dir=tmp_path, log=said.append) == fresh
    assert said == [f"LP frontier taken from the cache {entry}"]

    doc = entry.read_text()
    tampered = doc.replace(repr(fresh.points[1].carbon_g_per_request), repr(2 * fresh.points[1].carbon_g_per_request))
    for damage in (doc[: len(doc) // 2], tampered, "[]"):
        entry.write_text(damage)
        said.clear()
        assert lp_frontier(model, [501], n_bs=2, margins=margins, cache_dir=tmp_path, log=said.append) == fresh
        assert len(said) == 1 and "set aside" in said[0] and str(entry) in said[0]
    assert entry.read_text() == doc  # written again, whole

    other = lp_frontier(model, [501], n_bs=1, margins=margins, cache_dir=tmp_path, log=said.append)
    assert len(list(tmp_path.glob("lp_frontier-*.json"))) == 2 and other != fresh  # another key, another entry
