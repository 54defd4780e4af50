"""The reward, in one place: what the simulator measures for every request, and what training
adds to it.

The simulator's reward (docs/model.md section 6, Reward) is what evaluations measure:

    r_i = -C_i / C_ref - lambda_T [late or outage] - lambda_Q max(0, floor - Q_roll)

with ``C_ref`` BASE's mean carbon on a calibration day and ``lambda_T``, ``lambda_Q`` the scenario's
``latency_penalty`` and ``quality_penalty``. Training alone adds the action's part of a
Lagrangian term for Sprout's average-quality constraint:

    r_train = r_i + (lambda + kappa * deficit_before) * q_i

with ``q_i`` the request's quality (1 if served at the judge's preferred level) and
``deficit_before`` the floor deficit of the rolling window when the request was decided
(``TrainConfig.quality_bonus`` and ``deficit_bonus``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["service_reward", "TrainingReward"]


def service_reward(carbon_g: np.ndarray, carbon_ref_g: float, late: np.ndarray, deficit: np.ndarray,
                   latency_penalty: float, quality_penalty: float) -> np.ndarray:
    """The simulator's reward of served requests, any shape (arrays alike).

    :param carbon_g: the request's carbon, gCO2e
    :param carbon_ref_g: BASE's mean carbon per request on the calibration day, gCO2e
    :param late: the deadline was missed or the answer was an outage, {0, 1} or bool
    :param deficit: ``max(0, floor - Q_roll)`` after the request, fraction
    :param latency_penalty: lambda_T, reward per late request
    :param quality_penalty: lambda_Q, reward per unit of quality below the floor
    :return: float64, the shape of the inputs
    """
    return -carbon_g / carbon_ref_g - latency_penalty * late - quality_penalty * deficit


@dataclass(frozen=True)
class TrainingReward:
    """``r_train = r_sim + (quality_bonus + deficit_bonus * deficit_before) * q`` (training only).

    :param quality_bonus: lambda >= 0, reward per unit of quality
    :param deficit_bonus: kappa >= 0, extra multiplier per unit of floor deficit before the request
    """

    quality_bonus: float = 0.0
    deficit_bonus: float = 0.0

    def __post_init__(self) -> None:
        if self.quality_bonus < 0 or self.deficit_bonus < 0:
            raise ValueError("TrainingReward: quality_bonus and deficit_bonus must be >= 0")

    def __call__(self, reward_sim: np.ndarray, quality: np.ndarray, deficit_before: np.ndarray) -> np.ndarray:
        """The training reward of requests, any shape (all three alike).

        :param reward_sim: the simulator's reward (:func:`service_reward`)
        :param quality: the request's quality q in {0, 1}
        :param deficit_before: max(0, floor - Q_roll) when the request was decided, fraction
        :return: float32, the same shape
        """
        reward = reward_sim
        if self.quality_bonus or self.deficit_bonus:
            reward = reward + (self.quality_bonus + self.deficit_bonus * deficit_before) * quality
        return reward.astype(np.float32)
