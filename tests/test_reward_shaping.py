"""The training reward's shaping, the quality controller, the replay buffer that re-shapes sampled
rewards, and a run with a quality target (its multiplier moves, is checkpointed and resumed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from aolo.train.reward_shaping import MULTIPLIER_MAX, QualityController, RewardShaping
from aolo.train.run import STATE_FILE, read_evaluations
from aolo.train.sb3_vec_env import ServiceVecEnv
from aolo.train.shaped_replay import ShapedReplayBuffer
from aolo.train.train_config import TrainConfig
from aolo.train.training import train

torch.set_num_threads(1)


# --- shaping and controller --------------------------------------------------------------------
def test_shaping_adds_the_multiplier_times_quality_and_scales():
    shaping = RewardShaping(quality_bonus=2.0, deficit_bonus=5.0, reward_scale=0.5)
    r = shaping.reward(np.array([-0.3, -0.3, -0.1]), np.array([1.0, 0.0, 1.0]), np.array([0.0, 0.2, 0.1]))
    np.testing.assert_allclose(r, 0.5 * np.array([-0.3 + 2.0, -0.3, -0.1 + 2.5]), rtol=1e-6)
    assert r.dtype == np.float32
    with pytest.raises(ValueError, match="reward_scale > 0"):
        RewardShaping(reward_scale=0.0)


def test_the_controller_buys_quality_dearer_below_target_and_cheaper_above():
    below, above = RewardShaping(quality_bonus=2.0), RewardShaping(quality_bonus=2.0)
    c_below, c_above = QualityController(target=1.0, rate=1e-3), QualityController(target=1.0, rate=1e-3)
    q0 = np.ones(100)
    c_below.update(below, np.r_[np.ones(90), np.zeros(10)], q0)  # ratio 0.9
    c_above.update(above, np.ones(100), np.r_[np.ones(80), np.zeros(20)])  # ratio 1.25
    assert c_below.ratio == pytest.approx(0.9) and c_above.ratio == pytest.approx(1.25)
    assert below.quality_bonus == pytest.approx(2.0 + 1e-3 * 100 * 0.1)
    assert above.quality_bonus == pytest.approx(2.0 - 1e-3 * 100 * 0.25)


def test_the_controller_clips_the_multiplier_and_forgets_old_requests():
    shaping = RewardShaping(quality_bonus=0.01)
    c = QualityController(target=0.5, rate=1.0, window_requests=100)
    c.update(shaping, np.ones(10), np.ones(10))
    assert shaping.quality_bonus == 0.0  # never negative
    for _ in range(50):  # 500 requests of ratio 0.5 outweigh the first 10 of ratio 1
        c.update(shaping, np.r_[np.ones(5), np.zeros(5)], np.ones(10))
    assert c.ratio == pytest.approx(0.5, abs=0.01)
    c = QualityController(target=2.0, rate=1.0)
    c.update(shaping, np.zeros(10), np.ones(10))
    assert shaping.quality_bonus == MULTIPLIER_MAX


def test_the_controller_rejects_a_bad_target_or_rate_and_round_trips_its_state():
    with pytest.raises(ValueError, match="target must be in"):
        QualityController(target=0.0, rate=1e-3)
    with pytest.raises(ValueError, match="rate must be > 0"):
        QualityController(target=1.0, rate=0.0)
    c = QualityController(target=1.0, rate=1e-3)
    c.update(RewardShaping(), np.ones(7), np.ones(9))
    d = QualityController(target=1.0, rate=1e-3)
    d.load_state(json.loads(json.dumps(c.state())))
    assert d.ratio == c.ratio == pytest.approx(7 / 9)


# --- the replay buffer ------------------------------------------------------------------------
def _fill(buffer_cls, env: ServiceVecEnv, steps: int) -> ReplayBuffer:
    buf = buffer_cls(500, env.observation_space, env.action_space, device="cpu", n_envs=env.num_envs)
    obs = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        action = rng.uniform(-1, 1, (env.num_envs, 2)).astype(np.float32)
        new_obs, reward, done, infos = env.step(action)
        buf.add(obs, new_obs, action, reward, done, infos)
        obs = new_obs
    return buf


def test_the_shaped_buffer_samples_what_sb3s_buffer_samples_while_the_shaping_stays(tiny_model):
    def env():
        return ServiceVecEnv(tiny_model.scenario, n_envs=3, model=tiny_model, seed=5, quality_bonus=2.2,
                             deficit_bonus=5.0)

    shaped_env = env()
    plain, shaped = _fill(ReplayBuffer, env(), 300), _fill(ShapedReplayBuffer, shaped_env, 300)
    shaped.shaping = shaped_env.shaping
    np.random.seed(11)
    a = plain.sample(64)
    np.random.seed(11)
    b = shaped.sample(64)
    for x, y in zip(a, b):  # bit for bit: same rewards, same random draws
        assert (x is None and y is None) or torch.equal(x, y)


def test_the_shaped_buffer_reshapes_stored_rewards_with_the_current_multiplier(tiny_model):
    env = ServiceVecEnv(tiny_model.scenario, n_envs=2, model=tiny_model, seed=5, quality_bonus=2.0)
    buf = _fill(ShapedReplayBuffer, env, 200)
    with pytest.raises(RuntimeError, match="set .shaping"):
        buf.sample(8)
    buf.shaping = env.shaping
    env.shaping.quality_bonus = 3.0
    np.random.seed(0)
    samples = buf.sample(64)
    np.random.seed(0)  # SB3's draws: rows, then one env per row
    rows, envs = np.random.randint(0, buf.pos, size=64), np.random.randint(0, 2, size=64)
    r_sim, q = buf.parts["reward_sim"][rows, envs], buf.parts["quality"][rows, envs]
    assert q.any() and not q.all()
    np.testing.assert_array_equal(samples.rewards.numpy().ravel(), (r_sim + 3.0 * q).astype(np.float32))


def test_the_shaped_buffer_names_a_missing_reward_part():
    space = spaces.Box(-1, 1, (2,), dtype=np.float32)
    buf = ShapedReplayBuffer(10, space, space, device="cpu", n_envs=1)
    with pytest.raises(KeyError, match="'reward_sim'"):
        buf.add(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    assert buf.pos == 0  # nothing half-stored


# --- a run with a target -------------------------------------------------------------------
def test_a_quality_target_moves_the_multiplier_and_a_resume_continues_from_it(tmp_path: Path):
    # A target of 2x BASE's quality cannot be met, so the multiplier can only rise.
    config = TrainConfig(scenario="tiny", steps=1_600, n_envs=4, learning_starts=400, batch_size=64,
                         eval_every_steps=800, eval_n_bs=1, eval_seeds=(501,), log_every_steps=400,
                         out_dir=str(tmp_path), quality_bonus=1.0, quality_target=2.0, quality_target_rate=1e-3,
                         quality_target_start=0)
    run_dir = train(config, show_progress=False)
    state = json.loads((run_dir / STATE_FILE).read_text())
    evaluations = read_evaluations(run_dir)
    assert 1.0 < evaluations[0]["quality_bonus"] < evaluations[-1]["quality_bonus"] == state["quality_bonus"]
    assert state["quality_controller"]["q0_sum"] > 0
    train(config.with_(steps=2_000), resume=run_dir, show_progress=False)
    resumed = read_evaluations(run_dir)[-1]["quality_bonus"]
    assert resumed > state["quality_bonus"]
    # 400 more requests at error at most 2 cannot move it by more than 1e-3 * 400 * 2 from where it was
    assert resumed - state["quality_bonus"] <= 1e-3 * 400 * 2 + 1e-9


def test_a_quality_target_outside_its_range_is_refused_by_name():
    with pytest.raises(ValueError, match="quality_target must be in"):
        TrainConfig(quality_target=0.0)
    with pytest.raises(ValueError, match="quality_target_rate must be > 0"):
        TrainConfig(quality_target_rate=-1.0)
