"""An SB3 ``VecEnv`` over the numpy :class:`BatchSimulator`: ``n_envs`` base stations stepped at once.

SB3's off-policy loop wants its own ``VecEnv`` protocol (``reset() -> obs``, ``step_wait() -> obs,
rewards, dones, infos`` with per-env info dicts), not Gymnasium's vector API, so the simulator gets
this thin adapter instead of ``DummyVecEnv`` over ``n_envs`` single envs (one numpy step for all
BSs, see benchmarks/env_throughput.py).

Auto-reset follows SB3: when BS b's day ends, ``dones[b]`` is True, ``infos[b]["TimeLimit.truncated"]``
is True (the day is a time limit, never a terminal state, so the replay buffer bootstraps from it)
and ``infos[b]["terminal_observation"]`` is the state to bootstrap from. The service is continuing:
the state after a day's last request is the next day's first request, which the simulator has
already drawn, so ``terminal_observation`` equals the returned ``obs[b]``. (The rolling quality
window does restart with the day, as in :class:`aolo.train.env.LLMServiceEnv`.)

Every info dict carries the served request's facts for logging: ``carbon_g`` (gCO2e),
``latency_violation``, ``floor_violation``, ``floor_deficit``, ``quality``, ``quality_base``, ``level``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from aolo.runtime.policy_io import ACT_DIM, action_to_decision

from .env import action_space, observation_space
from .reward import TrainingReward
from .scenario import ScenarioConfig, get_scenario
from .simulator import BatchSimulator, ServiceModel, StepOutcome, observe

__all__ = ["ServiceVecEnv", "step_infos"]


def step_infos(out: StepOutcome) -> list[dict[str, Any]]:
    """One info dict per BS with the served request's facts, plain Python scalars.

    :param out: the simulator's outcome of one step, (n_bs,) arrays
    :return: n_bs dicts with ``carbon_g`` (g), ``latency_violation``, ``floor_violation`` (bool),
        ``floor_deficit``, ``quality``, ``quality_base`` (fractions), ``level`` (int)
    """
    cols = zip(out.carbon.total_g.tolist(), out.latency_violation.tolist(), out.floor_violation.tolist(),
               out.floor_deficit.tolist(), out.quality.tolist(), out.quality_base.tolist(), out.level.tolist())
    return [{"carbon_g": c, "latency_violation": lv, "floor_violation": fv, "floor_deficit": fd, "quality": q,
             "quality_base": q0, "level": lvl} for c, lv, fv, fd, q, q0, lvl in cols]


class ServiceVecEnv(VecEnv):
    """``n_envs`` edge base stations as one SB3 ``VecEnv``; one step serves one request per BS.

    Spaces are those of :class:`aolo.train.env.LLMServiceEnv`: observations ``Box(float32, (15,))``
    (docs/model.md section 6), actions ``Box(-1, 1, (2,), float32)`` (directive level, transmit power).
    The reward is the simulator's (:func:`aolo.train.reward.service_reward`), float32, plus the
    training-only terms of :attr:`training_reward` (:class:`aolo.train.reward.TrainingReward`) when
    ``quality_bonus`` or ``deficit_bonus`` is set.

    Seeding: ``seed(s)`` (called by SB3 with the model's seed) makes the next :meth:`reset` draw BS b's
    k-th day from ``default_rng([s, b, k])``, the simulator's rule; without it the seed is ``seed``.

    :param scenario: a :class:`ScenarioConfig` or a preset name
    :param n_envs: base stations stepped at once
    :param model: a prebuilt :class:`ServiceModel` of ``scenario`` (its calibration is reused)
    :param seed: simulator seed used when SB3 has not called :meth:`seed`
    :param quality_bonus: training-only lambda >= 0 (:class:`aolo.train.reward.TrainingReward`)
    :param deficit_bonus: training-only kappa >= 0 (:class:`aolo.train.reward.TrainingReward`)
    """

    render_mode = None

    def __init__(self, scenario: ScenarioConfig | str = "default", n_envs: int = 16,
                 model: ServiceModel | None = None, seed: int = 0, quality_bonus: float = 0.0,
                 deficit_bonus: float = 0.0) -> None:
        if n_envs < 1:
            raise ValueError(f"ServiceVecEnv: n_envs must be >= 1, got {n_envs}")
        self.training_reward = TrainingReward(float(quality_bonus), float(deficit_bonus))
        self._start_days: np.ndarray | None = None
        if model is None:
            model = ServiceModel(get_scenario(scenario) if isinstance(scenario, str) else scenario)
        self.model = model
        self.scenario = model.scenario
        self.sim = BatchSimulator(self.model, n_bs=n_envs, seed=seed)
        self._default_seed = int(seed)
        self._actions: np.ndarray | None = None
        super().__init__(n_envs, observation_space(), action_space())

    def _obs(self) -> np.ndarray:
        """(n_envs, OBS_DIM) float32 (clipped to the observation box by the contract)."""
        return observe(self.sim.context)

    # --- VecEnv protocol -------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Start a fresh day at every BS; :return: obs (n_envs, OBS_DIM) float32."""
        seed = self._seeds[0] if self._seeds[0] is not None else self._default_seed
        if self._start_days is None:
            self.sim.reset(seed=int(seed))
        else:  # resumed training: BS b's next day is its day start_days[b] of this seed
            self.sim.seed = int(seed)
            self.sim.episode_count[:] = self._start_days
            self._start_days = None
            self.sim.reset()
        self._reset_seeds()
        self._reset_options()
        return self._obs()

    def start_days_at(self, episode_count: np.ndarray) -> None:
        """Make the next :meth:`reset` continue the day sequence: BS b starts its day
        ``episode_count[b]`` (as saved in a checkpoint) instead of day 0.

        :param episode_count: (n_envs,) int, days already started per BS
        """
        counts = np.asarray(episode_count, dtype=np.int64)
        if counts.shape != (self.num_envs,):
            raise ValueError(f"ServiceVecEnv.start_days_at: expected ({self.num_envs},) counts, got {counts.shape}")
        self._start_days = counts.copy()

    def step_async(self, actions: np.ndarray) -> None:
        """:param actions: (n_envs, 2) in [-1, 1]"""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """:return: obs (n_envs, OBS_DIM) float32, rewards (n_envs,) float32, dones (n_envs,) bool
            (a BS's day ended), infos (n_envs dicts, see :func:`step_infos`)"""
        if self._actions is None:
            raise RuntimeError("ServiceVecEnv: step_async() must come before step_wait()")
        link = self.model.link
        level, power = action_to_decision(self._actions.reshape(self.num_envs, ACT_DIM), link.p_min_w, link.p_max_w)
        self._actions = None
        ctx = self.sim.context
        deficit_before = np.maximum(0.0, ctx.floor - ctx.quality_roll)
        out = self.sim.step(level, power)
        obs = self._obs()
        dones = out.episode_end.copy()
        infos = step_infos(out)
        for b in np.flatnonzero(dones):
            # Continuing service: the day's end is a time limit and the next state is the next
            # day's first request, already in obs[b] (the simulator resets the BS in step).
            infos[b]["terminal_observation"] = obs[b].copy()
            infos[b]["TimeLimit.truncated"] = True
        return obs, self.training_reward(out.reward, out.quality, deficit_before), dones, infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
