"""SB3's replay buffer with the training reward's parts kept apart, so that every sample uses the
current shaping (the quality multiplier moves during training when a quality target is set)."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from .reward_shaping import RewardShaping

__all__ = ["ShapedReplayBuffer", "REWARD_PARTS"]

REWARD_PARTS: tuple[str, ...] = ("reward_sim", "quality", "deficit_before")
"""Info keys of :class:`aolo.train.sb3_vec_env.ServiceVecEnv` that the buffer stores per transition."""


class ShapedReplayBuffer(ReplayBuffer):
    """:class:`ReplayBuffer` that also stores ``reward_sim``, ``quality`` and ``deficit_before``
    (float64, from the step's infos) and rewrites the rewards of the sampled rows with
    ``shaping.reward(...)`` before SB3 samples them. With a fixed shaping the rewritten rewards equal
    the stored ones bit for bit, and sampling draws the same random numbers as SB3's buffer.

    Set :attr:`shaping` (the env's) after the model is built or loaded; SB3 builds the buffer itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shaping: RewardShaping | None = None
        self.parts = {k: np.zeros((self.buffer_size, self.n_envs), dtype=np.float64) for k in REWARD_PARTS}

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        for key, column in self.parts.items():
            try:
                column[self.pos] = [info[key] for info in infos]
            except KeyError:
                raise KeyError(f"ShapedReplayBuffer: the step's infos lack {key!r}; the env must be a "
                               "ServiceVecEnv") from None
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ReplayBufferSamples:
        if self.shaping is None:
            raise RuntimeError("ShapedReplayBuffer: set .shaping (the env's RewardShaping) before sampling")
        self.rewards[batch_inds] = self.shaping.reward(*(self.parts[k][batch_inds] for k in REWARD_PARTS))
        return super()._get_samples(batch_inds, env)
