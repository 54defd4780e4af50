"""Reference policies: BASE, CO2-only, Sprout LP, class-aware LP, static mix, oracle, random,
and the adapter that turns a learned actor into a policy.

A policy is reset on a simulator and then asked, step after step, for the decision on each BS's
current request: ``decide(ctx, obs) -> (level (n_bs,) int, tx_power_w (n_bs,) W)``. Reference
policies read the request context; a learned actor reads only the observation.

The LP policies follow Sprout (Li et al., EMNLP 2024): once an hour, ``scipy.optimize.linprog``
picks the mix of directive levels that minimises expected carbon subject to the sliding quality
floor ``E[q] >= (1 - xi * CI_norm) * E[q_L0]``; each request's level is then drawn from the mix.
Their statistics (expected carbon and judge preference per class and level) come from a
calibration sample drawn with :data:`CALIBRATION_SEED`, never from evaluation seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from scipy.optimize import linprog

from aolo.runtime.radio import min_power_for_deadline_w, min_power_w

from aolo.runtime.policy_io import action_to_decision, quality_floor_frac

from .seeds import CALIBRATION_SEED
from .simulator import N_CLASSES, N_LEVELS, BatchSimulator, RequestContext, ServiceModel


class Policy(Protocol):
    """What the evaluator needs of a policy."""

    name: str

    def reset(self, sim: BatchSimulator, seed: int) -> None: ...

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


# ---------------------------------------------------------------------------------------------
# statistics the LP policies plan with
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelStats:
    """Per class and level means from a calibration sample, each (n_classes, n_levels).

    Expected carbon at hour h is ``ci_g_per_kwh(h) * carbon_per_ci + carbon_fixed_g`` (the model
    is linear in CI); ``preference`` is P(judge prefers level | class).
    """

    output_tokens: np.ndarray
    latency_s: np.ndarray
    carbon_per_ci: np.ndarray
    carbon_fixed_g: np.ndarray
    preference: np.ndarray
    class_mix: np.ndarray  # (n_classes,) calibration frequencies

    def expected_carbon_g(self, ci_g_per_kwh: float | np.ndarray, task_class: np.ndarray | None = None) -> np.ndarray:
        """Expected carbon per request at each level, g.

        :param ci_g_per_kwh: one carbon intensity (every class), or (n,) per request, gCO2e/kWh
        :param task_class: None, or (n,) the requests' classes
        :return: (n_classes, n_levels) for one CI, (n, n_levels) with ``task_class``
        """
        if task_class is None:
            return ci_g_per_kwh * self.carbon_per_ci + self.carbon_fixed_g
        return np.asarray(ci_g_per_kwh)[:, None] * self.carbon_per_ci[task_class] + self.carbon_fixed_g[task_class]


def calibrate(model: ServiceModel, n: int = 30_000) -> LevelStats:
    """Expected outcomes per class and level from ``n`` calibration requests served at the
    closed-form power (the LPs' own power rule)."""
    ep = model.sample_episode(np.random.default_rng(CALIBRATION_SEED))
    rng = np.random.default_rng(CALIBRATION_SEED + 1)
    task_class = rng.integers(0, N_CLASSES, size=n)
    req = model.requests.sample(rng, task_class)
    gain_db = model.link.sample_gain_db(rng, n)
    fading = rng.exponential(1.0, size=(n, model.link.harq_max_tries))
    sessions = np.full(n, float(np.mean(ep.active_sessions)))
    shape = (N_CLASSES, N_LEVELS)
    stats = {k: np.zeros(shape) for k in ("output_tokens", "latency_s", "carbon_per_ci", "carbon_fixed_g", "preference")}
    for lvl in range(N_LEVELS):
        level = np.full(n, lvl)
        rows = np.arange(n)
        payload = model.payload_bits(req.output_tokens[rows, lvl])
        power = min_power_w(model.link, 10 ** (gain_db / 10), payload,
                            req.deadline_s - req.inference_latency_s[rows, lvl], model.scenario.outage_target_frac)
        c1 = model.serve(req, level, power, gain_db, fading, sessions, np.ones(n))[0].total_g
        c0 = model.serve(req, level, power, gain_db, fading, sessions, np.zeros(n))[0].total_g
        for c in range(N_CLASSES):
            m = task_class == c
            stats["output_tokens"][c, lvl] = req.output_tokens[m, lvl].mean()
            stats["latency_s"][c, lvl] = req.inference_latency_s[m, lvl].mean()
            stats["carbon_per_ci"][c, lvl] = (c1[m] - c0[m]).mean()
            stats["carbon_fixed_g"][c, lvl] = c0[m].mean()
            stats["preference"][c, lvl] = (req.preferred_level[m] == lvl).mean()
    mix = model.workload.base_mix
    return LevelStats(class_mix=np.asarray(mix, dtype=np.float64), **stats)


def solve_level_mix(cost: np.ndarray, quality: np.ndarray, weight: np.ndarray, floor_frac: float) -> np.ndarray:
    """Sprout's LP: the level mix minimising expected carbon under the quality floor.

    :param cost: (groups, levels) expected carbon per request, g
    :param quality: (groups, levels) expected quality (judge preference)
    :param weight: (groups,) share of requests in each group (sums to 1)
    :param floor_frac: required quality as a fraction of always-L0's, (1 - xi * CI_norm)
    :return: (groups, levels) mix, each row a probability vector; one group is Sprout's
        class-agnostic LP, one group per class is the class-aware LP
    """
    g, lv = cost.shape
    c = (weight[:, None] * cost).ravel()
    a_ub = -(weight[:, None] * quality).ravel()[None, :]
    b_ub = np.array([-floor_frac * float(weight @ quality[:, 0]) + 1e-9])
    a_eq = np.kron(np.eye(g), np.ones((1, lv)))
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(g), bounds=(0, 1), method="highs")
    if res.status != 0:  # a floor above 1 (a quality margin) can be out of reach: the best quality there is
        x = np.zeros((g, lv))
        x[np.arange(g), quality.argmax(axis=1)] = 1.0
        return x
    x = np.clip(res.x.reshape(g, lv), 0.0, None)
    return x / x.sum(axis=1, keepdims=True)


def _closed_form_power(model: ServiceModel, ctx: RequestContext, level: np.ndarray, stats: LevelStats) -> np.ndarray:
    tokens = stats.output_tokens[ctx.task_class, level]
    budget = ctx.deadline_s - stats.latency_s[ctx.task_class, level]
    return min_power_w(model.link, 10 ** (ctx.gain_db / 10), model.payload_bits(tokens), budget,
                       model.scenario.outage_target_frac)


# ---------------------------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------------------------
class BasePolicy:
    """BASE: always L0 (no directive) at maximum power."""

    name = "base"

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.model = sim.model

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = ctx.task_class.shape[0]
        return np.zeros(n, dtype=np.int64), np.full(n, self.model.link.p_max_w)


class CO2OnlyPolicy:
    """CO2-only: always L2 at the smallest power that meets the deadline in expectation."""

    name = "co2-only"

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.model = sim.model
        self.stats = calibrate(sim.model)

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        level = np.full(ctx.task_class.shape[0], 2, dtype=np.int64)
        link = self.model.link
        tokens = self.stats.output_tokens[ctx.task_class, level]
        budget = ctx.deadline_s - self.stats.latency_s[ctx.task_class, level]
        p = min_power_for_deadline_w(link, 10 ** (ctx.gain_db / 10), self.model.payload_bits(tokens), budget)
        return level, np.clip(p, link.p_min_w, link.p_max_w)


class LPPolicy:
    """Sprout LP (``per_class=False``) or class-aware LP (``per_class=True``), re-solved hourly.

    The class mix the LP weighs is the calibration mix (Sprout profiles its workload offline);
    ``static=True`` solves once on annual means (the static-mix baseline). ``quality_margin`` m
    asks for more (m > 0) or less quality than the floor, ``1 - xi CI_norm + m``: the family of
    LPs over m traces the carbon the LP needs for each quality (:mod:`aolo.train.frontier`).
    """

    def __init__(self, per_class: bool, static: bool = False, quality_margin: float = 0.0) -> None:
        self.per_class = per_class
        self.static = static
        self.quality_margin = float(quality_margin)
        name = "static-mix" if static else ("class-aware-lp" if per_class else "sprout-lp")
        self.name = f"{name}{self.quality_margin:+.2f}" if self.quality_margin else name

    def reset(self, sim: BatchSimulator, seed: int, stats: LevelStats | None = None) -> None:
        """:param stats: ``calibrate(sim.model)`` when the caller has it already (it is the same
            for every seed), else None"""
        self.model = sim.model
        self.stats = calibrate(sim.model) if stats is None else stats
        self.rng = np.random.default_rng([seed, 7919])
        self._cache: dict[int, np.ndarray] = {}
        if self.static:
            ci = float(np.mean(self.model.grid.ci_g_per_kwh))
            self._static_mix = self._solve(ci, float(np.mean(self.model.ci_norm)))

    def _solve(self, ci_g_per_kwh: float, ci_norm: float) -> np.ndarray:
        s = self.stats
        cost = s.expected_carbon_g(ci_g_per_kwh)
        floor_frac = quality_floor_frac(ci_norm, self.model.scenario.quality_tolerance_xi) + self.quality_margin
        if self.per_class:
            return solve_level_mix(cost, s.preference, s.class_mix, floor_frac)
        w = s.class_mix
        mix = solve_level_mix((w @ cost)[None], (w @ s.preference)[None], np.ones(1), floor_frac)
        return np.repeat(mix, N_CLASSES, axis=0)

    def mix_for_hour(self, hour_index: int) -> np.ndarray:
        """(n_classes, n_levels) mix for a trace hour."""
        if self.static:
            return self._static_mix
        if hour_index not in self._cache:
            m = self.model
            self._cache[hour_index] = self._solve(float(m.grid.at_hours(np.array([hour_index]))[0]),
                                                  float(m.ci_norm[hour_index]))
        return self._cache[hour_index]

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.stack([self.mix_for_hour(int(h))[c] for h, c in zip(ctx.hour_index, ctx.task_class)])
        level = draw_levels(probs, self.rng.random(probs.shape[0]))
        return level, _closed_form_power(self.model, ctx, level, self.stats)


def draw_levels(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Levels drawn from per-request mixes by inverse CDF.

    :param probs: (n, n_levels) each row a probability vector
    :param uniform: (n,) draws from U[0, 1)
    :return: (n,) int64 levels
    """
    return (uniform[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1).astype(np.int64)


class ClassLagrangianPolicy:
    """The best class-only rule in expectation: per request, the level maximising
    ``multiplier * P(pref = level | class) - E[C | class, level, CI] / C_ref`` (one multiplier for
    the whole day), at the LP's closed-form power. It spends quality in the hours where carbon is
    cheap instead of meeting each hour's floor; the multiplier sets the quality it buys. A yardstick
    for what a learned actor that sees the class can gain over the LP, not a tuned controller.
    """

    def __init__(self, multiplier: float) -> None:
        if multiplier < 0:
            raise ValueError(f"ClassLagrangianPolicy: multiplier must be >= 0, got {multiplier}")
        self.multiplier = float(multiplier)
        self.name = f"class-lagrangian-{self.multiplier:g}"

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.model = sim.model
        self.stats = calibrate(sim.model)

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, c = self.stats, ctx.task_class
        carbon = s.expected_carbon_g(ctx.ci_g_per_kwh, c)
        level = np.argmax(self.multiplier * s.preference[c] - carbon / self.model.carbon_ref_g, axis=1)
        return level.astype(np.int64), _closed_form_power(self.model, ctx, level, self.stats)


class OraclePolicy:
    """Per-request oracle: knows every request's outcome at every level and its realised fading.

    For each BS's episode and each hour, it solves the LP over that hour's actual requests
    (minimise the hour's carbon subject to the hour's quality meeting the floor), rounds to one
    level per request, and transmits at the smallest power that succeeds on the first try within
    the deadline. A lower bound an online policy can approach, not a policy one can deploy.
    """

    name = "oracle"

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.sim = sim
        self.model = sim.model
        self._plans: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

    def _plan(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        sim, m = self.sim, self.model
        buf, req = sim.episode_stream(b)
        n = len(req)
        gain = 10 ** (buf["gain_db"] / 10)
        h1 = buf["fading_power"][:, 0]
        ci = m.grid.at_hours(buf["hour_index"])
        cost = np.zeros((n, N_LEVELS))
        power = np.zeros((n, N_LEVELS))
        for lvl in range(N_LEVELS):
            level = np.full(n, lvl)
            tokens = req.output_tokens[:, lvl]
            p_first_try = m.link.snr_min_linear * m.link.noise_w / (gain * h1)
            budget = req.deadline_s - req.inference_latency_s[:, lvl]
            p_deadline = min_power_for_deadline_w(m.link, gain * h1, m.payload_bits(tokens), budget)
            power[:, lvl] = np.clip(np.maximum(p_first_try, p_deadline), m.link.p_min_w, m.link.p_max_w)
            carbon, _, late = m.serve(req, level, power[:, lvl], buf["gain_db"], buf["fading_power"],
                                      buf["active_sessions"], ci)
            cost[:, lvl] = carbon.total_g / m.carbon_ref_g + m.scenario.latency_penalty * late
        quality = (req.preferred_level[:, None] == np.arange(N_LEVELS)[None]).astype(np.float64)
        levels = np.zeros(n, dtype=np.int64)
        for h in np.unique(buf["hour_index"]):
            idx = np.flatnonzero(buf["hour_index"] == h)
            floor_frac = quality_floor_frac(m.ci_norm[h], m.scenario.quality_tolerance_xi)
            x = solve_level_mix(cost[idx], quality[idx], np.full(idx.size, 1.0 / idx.size), floor_frac)
            levels[idx] = self._round(x, quality[idx])
        return levels, power[np.arange(n), levels]

    @staticmethod
    def _round(x: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """One level per request from an LP mix. A basic solution has at most one fractional row
        per coupling constraint; giving a fractional row the best-quality level in its support
        keeps the quality at or above the LP's, so the floor still holds."""
        level = x.argmax(axis=1)
        for i in np.flatnonzero(x.max(axis=1) < 1.0 - 1e-9):
            support = np.flatnonzero(x[i] > 1e-9)
            level[i] = support[np.argmax(quality[i, support])]
        return level

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sim = self.sim
        levels = np.zeros(sim.n_bs, dtype=np.int64)
        powers = np.zeros(sim.n_bs)
        for b in range(sim.n_bs):
            key = int(sim.episode_count[b])
            if b not in self._plans or self._plans[b][0] != key:
                self._plans[b] = (key, *self._plan(b))
            _, lv, pw = self._plans[b]
            levels[b], powers[b] = lv[sim.pos[b]], pw[sim.pos[b]]
        return levels, powers


class RandomPolicy:
    """Uniformly random actions in [-1, 1]^2."""

    name = "random"

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.model = sim.model
        self.rng = np.random.default_rng([seed, 104729])

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return action_to_decision(self.rng.uniform(-1, 1, size=(obs.shape[0], 2)), self.model.link.p_min_w, self.model.link.p_max_w)


class ActorPolicy:
    """A learned deterministic actor: ``act(obs (n, obs_dim) float32) -> action (n, 2) in [-1, 1]``."""

    def __init__(self, name: str, act: Callable[[np.ndarray], np.ndarray]) -> None:
        self.name = name
        self.act = act

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        self.model = sim.model

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return action_to_decision(self.act(obs), self.model.link.p_min_w, self.model.link.p_max_w)


REFERENCE_POLICIES: dict[str, Callable[[], Policy]] = {
    "base": BasePolicy,
    "co2-only": CO2OnlyPolicy,
    "sprout-lp": lambda: LPPolicy(per_class=False),
    "class-aware-lp": lambda: LPPolicy(per_class=True),
    "static-mix": lambda: LPPolicy(per_class=False, static=True),
    "oracle": OraclePolicy,
    "random": RandomPolicy,
}

COMPARE_REFERENCES = ("oracle", "class-aware-lp", "sprout-lp", "co2-only", "base")
"""The reference policies every comparison of learned actors shows, best first."""
