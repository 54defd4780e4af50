"""Gymnasium environments over the batch simulator: one BS (:class:`LLMServiceEnv`) and many
(:class:`LLMServiceVectorEnv`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from .scenario import ScenarioConfig, get_scenario
from aolo.runtime.policy_io import ACT_DIM, OBS_HIGH, OBS_LOW, action_to_decision

from .simulator import BatchSimulator, ServiceModel, StepOutcome, observe


def observation_space() -> spaces.Box:
    """The policy's observation box, from the contract's bounds (``policy_io.OBSERVATION``)."""
    return spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)


def action_space() -> spaces.Box:
    """``Box(-1, 1, (2,), float32)``: SB3's action rescaling is then the identity."""
    return spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)


def outcome_info(out: StepOutcome, b: int) -> dict[str, Any]:
    """The per-request facts of BS b's step as plain floats, for info dicts and logs."""
    return {
        "carbon_g": float(out.carbon.total_g[b]),
        "level": int(out.level[b]),
        "tx_power_w": float(out.tx_power_w[b]),
        "latency_violation": bool(out.latency_violation[b]),
        "outage": bool(out.outage[b]),
        "quality": float(out.quality[b]),
        "quality_base": float(out.quality_base[b]),
        "floor_violation": bool(out.floor_violation[b]),
    }


class LLMServiceEnv(gym.Env):
    """An edge base station serving LLM requests; one step is one request.

    ## Description
    Each request has a task class, a prompt, a deadline and a downlink channel. The policy picks
    a generation directive level (Sprout's L0/L1/L2) and a transmit power; the request is served,
    its answer sent over a fading channel with HARQ, and its carbon computed by the shared model
    (``aolo.runtime.carbon``). See docs/model.md.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``

    | index | meaning | min | max |
    |---|---|---|---|
    | 0 | directive level: a < -1/3 -> L0, a < 1/3 -> L1, else L2 | -1 | 1 |
    | 1 | transmit power, affine to [P_min, P_max] W | -1 | 1 |

    ## Observation Space
    ``Box(float32, (OBS_DIM,))``: the fields of ``policy_io.OBSERVATION`` in order (docs/model.md
    has the table), each clipped to its bounds.

    ## Rewards
    ``r = -C / C_ref - lambda_T [deadline missed or outage] - lambda_Q max(0, floor - Q_roll)``,
    C in gCO2e, C_ref the BASE policy's mean carbon on a calibration episode; so about -1 per
    request for BASE, 0 at best, below -1 - lambda_T - lambda_Q at worst.

    ## Starting State
    A fresh day of requests drawn from the seed: arrivals, classes, outcomes, channels, load.

    ## Episode End
    The episode is truncated after ``episode_hours`` of simulated time; it never terminates.

    ## Arguments
    ``scenario``: a :class:`ScenarioConfig` or a preset name.

    ## Version History
    v0: first version.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: ScenarioConfig | str = "default", model: ServiceModel | None = None) -> None:
        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.model = model if model is not None else ServiceModel(self.scenario)
        self.sim = BatchSimulator(self.model, n_bs=1)
        self.observation_space = observation_space()
        self.action_space = action_space()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        sim_seed = int(self.np_random.integers(0, 2**31 - 1))
        ctx = self.sim.reset(seed=sim_seed)
        return observe(ctx)[0], {}

    def step(self, action: np.ndarray):
        link = self.model.link
        level, power = action_to_decision(np.asarray(action, dtype=np.float64).reshape(1, 2), link.p_min_w, link.p_max_w)
        out = self.sim.step(level, power)
        obs = observe(self.sim.context)[0]
        # truncated, not terminated: the day ends, the service goes on
        return obs, float(out.reward[0]), False, bool(out.episode_end[0]), outcome_info(out, 0)


class LLMServiceVectorEnv(VectorEnv):
    """``num_envs`` base stations stepped at once by the numpy batch simulator.

    Autoreset is same-step. The service is continuing: a day's end is bookkeeping, and the state
    after a day's last request is the next day's first request, so ``infos["final_obs"]`` (for the
    BSs whose day ended) equals the returned observation.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, scenario: ScenarioConfig | str = "default", num_envs: int = 16,
                 model: ServiceModel | None = None) -> None:
        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.model = model if model is not None else ServiceModel(self.scenario)
        self.num_envs = num_envs
        self.sim = BatchSimulator(self.model, n_bs=num_envs)
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = spaces.Box(np.tile(OBS_LOW, (num_envs, 1)), np.tile(OBS_HIGH, (num_envs, 1)), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(num_envs, 2), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        ctx = self.sim.reset(seed=0 if seed is None else int(seed))
        return observe(ctx), {}

    def step(self, actions: np.ndarray):
        level, power = action_to_decision(actions, self.model.link.p_min_w, self.model.link.p_max_w)
        out = self.sim.step(level, power)
        obs = observe(self.sim.context)
        infos: dict[str, Any] = {"carbon_g": out.carbon.total_g, "level": out.level,
                                 "latency_violation": out.latency_violation, "floor_violation": out.floor_violation}
        if out.episode_end.any():
            infos["final_obs"] = np.where(out.episode_end[:, None], obs, 0.0)
            infos["_final_obs"] = out.episode_end.copy()
        terminated = np.zeros(self.num_envs, dtype=bool)
        return obs, out.reward.astype(np.float64), terminated, out.episode_end.copy(), infos
