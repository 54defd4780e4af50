"""The reward, defined in aolo.train.reward: the simulator's measured reward and the training-only
terms the vector env adds to it."""

from __future__ import annotations

import numpy as np
import pytest

from aolo.train.reward import TrainingReward, service_reward


def test_the_service_reward_charges_carbon_lateness_and_the_floor_deficit():
    r = service_reward(np.array([0.2, 0.1, 0.1]), 0.1, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.05]),
                       latency_penalty=1.0, quality_penalty=10.0)
    np.testing.assert_allclose(r, [-2.0, -2.0, -1.5])


def test_the_training_reward_adds_the_multiplier_times_quality_raised_by_the_deficit():
    reward = TrainingReward(quality_bonus=2.0, deficit_bonus=5.0)
    r = reward(np.array([-0.3, -0.3, -0.1]), np.array([1.0, 0.0, 1.0]), np.array([0.0, 0.2, 0.1]))
    np.testing.assert_allclose(r, [-0.3 + 2.0, -0.3, -0.1 + 2.5], rtol=1e-6)
    assert r.dtype == np.float32
    plain = TrainingReward()(np.array([-0.3]), np.array([1.0]), np.array([0.5]))
    assert plain.dtype == np.float32 and plain[0] == np.float32(-0.3)
    with pytest.raises(ValueError, match="must be >= 0"):
        TrainingReward(quality_bonus=-1.0)
