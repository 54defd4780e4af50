"""The environment: spaces, Gymnasium conformance, reward = carbon model, floor rule, HARQ outage,
determinism under a seed, and the vector env."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from aolo.runtime.carbon import request_carbon
from aolo.runtime.policy_io import OBS_DIM, action_to_decision, decision_to_action
from aolo.runtime.radio import transmit
from aolo.train.env import LLMServiceEnv, LLMServiceVectorEnv
from aolo.train.simulator import BatchSimulator, observe


def test_spaces_are_the_documented_boxes(tiny_model):
    env = LLMServiceEnv(model=tiny_model, scenario=tiny_model.scenario)
    assert env.action_space.shape == (2,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    assert env.observation_space.shape == (OBS_DIM,) == (15,)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_env_passes_gymnasium_check_env(tiny_model):
    check_env(LLMServiceEnv(model=tiny_model, scenario=tiny_model.scenario), skip_render_check=True)


def test_same_seed_gives_same_episode_and_different_seed_does_not(tiny_model):
    def rollout(seed):
        env = LLMServiceEnv(model=tiny_model, scenario=tiny_model.scenario)
        obs, _ = env.reset(seed=seed)
        rewards = []
        for _ in range(200):
            obs, r, term, trunc, _ = env.step(np.array([0.0, 0.5], dtype=np.float32))
            rewards.append(r)
        return np.array(rewards), obs
    a, oa = rollout(3)
    b, ob = rollout(3)
    c, _ = rollout(4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(a, c)


def test_action_bins_and_power_map_round_trip(tiny_model):
    link = tiny_model.link
    level, power = action_to_decision(np.array([[-1, -1], [-0.34, 0], [0, 1], [0.34, 0.5], [1, 1]]), link.p_min_w, link.p_max_w)
    assert level.tolist() == [0, 0, 1, 2, 2]
    assert power[0] == link.p_min_w and power[2] == link.p_max_w
    a = decision_to_action(np.array([0, 1, 2]), np.array([link.p_min_w, 5.0, link.p_max_w]), link.p_min_w, link.p_max_w)
    back_level, back_power = action_to_decision(a, link.p_min_w, link.p_max_w)
    assert back_level.tolist() == [0, 1, 2]
    np.testing.assert_allclose(back_power, [link.p_min_w, 5.0, link.p_max_w], rtol=1e-6)


def test_reward_equals_the_carbon_model_for_the_served_request(tiny_model):
    sim = BatchSimulator(tiny_model, n_bs=1, seed=11)
    ctx = sim.reset()
    level, power = np.array([1]), np.array([3.0])
    # hand-built: the same request through the shared radio and carbon functions
    link, s = tiny_model.link, tiny_model.scenario
    tokens = ctx.output_tokens[0, 1]
    tx = transmit(link, np.array([tokens * s.bits_per_token]), power, 10 ** (ctx.gain_db / 10), ctx.fading_power)
    expected = request_carbon(tiny_model.carbon_params, ctx.ci_g_per_kwh, ctx.inference_energy_j[0, 1],
                              ctx.inference_latency_s[0, 1], power, tx.airtime_s, ctx.active_sessions)
    late = (ctx.inference_latency_s[0, 1] + tx.airtime_s[0] > ctx.deadline_s[0]) or tx.outage[0]
    out = sim.step(level, power)
    assert out.carbon.total_g[0] == pytest.approx(float(expected.total_g[0]), rel=1e-12)
    q = float(ctx.preferred_level[0] == 1)
    q0 = float(ctx.preferred_level[0] == 0)
    deficit = max(0.0, (1 - s.quality_tolerance_xi * ctx.ci_norm[0]) * q0 - q)
    want = -expected.total_g[0] / tiny_model.carbon_ref_g - s.latency_penalty * late - s.quality_penalty * deficit
    assert out.reward[0] == pytest.approx(want, rel=1e-12)


def test_reward_of_base_is_about_minus_one_per_request(tiny_model):
    sim = BatchSimulator(tiny_model, n_bs=4, seed=5)
    sim.reset()
    carbon = []
    for _ in range(300):
        out = sim.step(np.zeros(4, dtype=np.int64), np.full(4, tiny_model.link.p_max_w))
        carbon.append(out.carbon.total_g)
    assert np.mean(carbon) / tiny_model.carbon_ref_g == pytest.approx(1.0, abs=0.15)


def test_floor_rule_follows_the_rolling_window(tiny_model):
    """Always choosing a level the judge did not prefer drives quality below the floor."""
    sim = BatchSimulator(tiny_model, n_bs=1, seed=2)
    ctx = sim.reset()
    w = tiny_model.scenario.quality_window
    violations, slacks = [], []
    for _ in range(w + 20):
        wrong = (ctx.preferred_level + 1) % 3
        out = sim.step(wrong, np.array([tiny_model.link.p_max_w]))
        violations.append(bool(out.floor_violation[0]))
        ctx = sim.context
        slacks.append(float(ctx.quality_slack[0]))
    assert not any(violations[: w - 1])  # not counted before the window is full
    assert all(violations[w:])
    assert slacks[-1] < 0
    # floor = (1 - xi * ci_norm) * rolling L0 quality
    q0 = ctx.quality_base_roll[0]
    assert ctx.floor[0] == pytest.approx((1 - 0.1 * ctx.ci_norm[0]) * q0)


def test_choosing_the_preferred_level_keeps_quality_at_or_above_base(tiny_model):
    sim = BatchSimulator(tiny_model, n_bs=1, seed=2)
    ctx = sim.reset()
    for _ in range(300):
        out = sim.step(ctx.preferred_level, np.array([tiny_model.link.p_max_w]))
        assert not out.floor_violation[0]
        ctx = sim.context


def test_deep_fade_on_every_try_is_an_outage_and_a_latency_violation(tiny_model):
    sim = BatchSimulator(tiny_model, n_bs=1, seed=9)
    sim.reset()
    sim._buf["fading_power"][0, 0, :] = 1e-12  # this request's four tries all fade
    sim._ctx = sim._context()
    out = sim.step(np.array([0]), np.array([tiny_model.link.p_max_w]))
    assert out.outage[0] and out.latency_violation[0] and out.tries[0] == tiny_model.link.harq_max_tries
    assert out.reward[0] <= -tiny_model.scenario.latency_penalty


def test_observation_is_built_from_the_context(tiny_model):
    sim = BatchSimulator(tiny_model, n_bs=3, seed=1)
    ctx = sim.reset()
    obs = observe(ctx)
    assert obs.shape == (3, OBS_DIM) and obs.dtype == np.float32
    assert np.all(obs[:, 4:10].sum(axis=1) == 1)
    np.testing.assert_allclose(obs[:, 0], ctx.ci_norm, rtol=1e-6)


def test_vector_env_steps_many_base_stations_and_autoresets(tiny_model):
    venv = LLMServiceVectorEnv(tiny_model.scenario, num_envs=8, model=tiny_model)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, OBS_DIM)
    truncated_any = False
    for _ in range(2000):
        obs, r, term, trunc, info = venv.step(np.zeros((8, 2), dtype=np.float32))
        assert r.shape == (8,) and not term.any()
        truncated_any |= bool(trunc.any())
    assert truncated_any  # tiny days (about 430 requests) end and restart
    assert venv.sim.episode_count.min() >= 2


def test_episode_streams_do_not_depend_on_the_actions(tiny_model):
    a = BatchSimulator(tiny_model, n_bs=2, seed=4)
    b = BatchSimulator(tiny_model, n_bs=2, seed=4)
    ca, cb = a.reset(), b.reset()
    for _ in range(50):
        np.testing.assert_array_equal(ca.output_tokens, cb.output_tokens)
        a.step(np.zeros(2, dtype=np.int64), np.full(2, 20.0))
        b.step(np.full(2, 2), np.full(2, 0.5))
        ca, cb = a.context, b.context
