"""The training-only reward, and the controller that steers its quality multiplier to a target quality.

The simulator's reward (``-C/C_ref - lambda_T late - lambda_Q deficit``) is what is measured; training
adds the action's part of a Lagrangian term for Sprout's average-quality constraint:

    r_train = scale * (r_sim + (lambda + kappa * deficit_before) * q)

with ``q`` the request's quality (1 if served at the judge's preferred level) and ``deficit_before``
the floor deficit of the rolling quality window when the request was decided.

A fixed ``lambda`` buys whatever quality it buys, a different amount per algorithm and seed. With a
target, :class:`QualityController` adapts ``lambda`` during training (integral control) until the
deterministic actor, the one that is evaluated and exported, serves the target quality against BASE
on the training requests. The replay buffer keeps ``r_sim``, ``q`` and ``deficit_before`` apart
(:class:`aolo.train.shaped_replay.ShapedReplayBuffer`) so that every sampled reward uses the current
multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RewardShaping", "QualityController", "MULTIPLIER_MAX"]

MULTIPLIER_MAX: float = 20.0
"""Upper clip of the adapted multiplier lambda (reward per unit of quality); far above any value
that training on the shipped scenarios reaches (about 2), so only a target no policy can meet hits it."""


@dataclass
class RewardShaping:
    """``r_train = reward_scale * (r_sim + (quality_bonus + deficit_bonus * deficit_before) * q)``.

    :param quality_bonus: lambda >= 0, reward per unit of quality (0 with deficit_bonus 0: no shaping)
    :param deficit_bonus: kappa >= 0, extra multiplier per unit of floor deficit before the request
    :param reward_scale: factor > 0 on every reward
    """

    quality_bonus: float = 0.0
    deficit_bonus: float = 0.0
    reward_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.quality_bonus < 0 or self.deficit_bonus < 0 or self.reward_scale <= 0:
            raise ValueError("RewardShaping: quality_bonus and deficit_bonus must be >= 0, reward_scale > 0")

    def reward(self, reward_sim: np.ndarray, quality: np.ndarray, deficit_before: np.ndarray) -> np.ndarray:
        """The training reward of requests, any shape (all three the same).

        :param reward_sim: the simulator's reward per request
        :param quality: the request's quality q in {0, 1}
        :param deficit_before: max(0, floor - Q_roll) when the request was decided, fraction
        :return: float32, same shape
        """
        reward = reward_sim
        if self.quality_bonus or self.deficit_bonus:
            reward = reward + (self.quality_bonus + self.deficit_bonus * deficit_before) * quality
        return (self.reward_scale * reward).astype(np.float32)


@dataclass
class QualityController:
    """Integral control of ``shaping.quality_bonus`` toward a target quality ratio.

    Each update takes a batch of training requests with the quality the *deterministic* actor's
    level would have served (``q_det``) and BASE's (``q0``), folds them into exponentially weighted
    sums (time constant ``window_requests``) and moves the multiplier by
    ``rate * n * (target - ratio)``, clipped to [0, MULTIPLIER_MAX], where
    ``ratio = sum q_det / sum q0``: below target, quality is bought dearer.

    :param target: target ratio of the deterministic actor's quality to BASE's (1.0: BASE's quality)
    :param rate: multiplier change per request per unit of ratio error
    :param window_requests: time constant of the ratio's running sums, requests
    """

    target: float
    rate: float
    window_requests: float = 10_000.0
    q_sum: float = 0.0
    q0_sum: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.target <= 2:
            raise ValueError(f"QualityController.target must be in (0, 2], got {self.target}")
        if not self.rate > 0 or not self.window_requests >= 1:
            raise ValueError("QualityController: rate must be > 0 and window_requests >= 1")

    @property
    def ratio(self) -> float:
        """Running quality ratio of the deterministic actor to BASE (nan before any request)."""
        return self.q_sum / self.q0_sum if self.q0_sum > 0 else float("nan")

    def update(self, shaping: RewardShaping, q_det: np.ndarray, q0: np.ndarray) -> None:
        """Fold in a batch of requests and move ``shaping.quality_bonus``.

        :param shaping: the shaping whose multiplier is adapted (changed in place)
        :param q_det: (n,) quality the deterministic actor's level serves, in {0, 1}
        :param q0: (n,) quality BASE serves, in {0, 1}
        """
        n = len(q_det)
        decay = float(np.exp(-n / self.window_requests))
        self.q_sum = decay * self.q_sum + float(np.sum(q_det))
        self.q0_sum = decay * self.q0_sum + float(np.sum(q0))
        if self.q0_sum > 0:
            step = self.rate * n * (self.target - self.ratio)
            shaping.quality_bonus = float(np.clip(shaping.quality_bonus + step, 0.0, MULTIPLIER_MAX))

    def state(self) -> dict[str, float]:
        """The running sums, for a checkpoint."""
        return {"q_sum": self.q_sum, "q0_sum": self.q0_sum}

    def load_state(self, state: dict[str, float]) -> None:
        """Inverse of :meth:`state`."""
        self.q_sum, self.q0_sum = float(state["q_sum"]), float(state["q0_sum"])
