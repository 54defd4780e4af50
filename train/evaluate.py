"""Run a policy over a scenario and measure it: carbon per request with its breakdown, quality
against BASE, latency, outage and floor violations, and the level mix over the day.

Every policy is run on the same seeds, and a seed fixes every request, channel and load, so
savings against BASE are paired comparisons. Results per seed give the spread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Sequence

import numpy as np

from aolo.runtime.carbon import CarbonBreakdown

from .policies import Policy
from .simulator import N_LEVELS, BatchSimulator, RequestContext, ServiceModel, observe

COMPONENTS = CarbonBreakdown.COMPONENTS


@dataclass
class SeedResult:
    """Totals of one policy on one seed (sums, so seeds and runs can be pooled)."""

    seed: int
    n_requests: int
    carbon_sum_g: dict[str, float]
    quality_sum: float
    quality_base_sum: float
    latency_violations: int
    outages: int
    floor_violations: int
    floor_checked: int
    level_count_by_hour: list[list[int]]  # (24, 3)
    ci_sum_by_hour: list[float]  # (24,)
    requests_by_hour: list[int]  # (24,)

    @property
    def carbon_mean_g(self) -> float:
        return self.carbon_sum_g["total_g"] / self.n_requests

    @property
    def quality_vs_base_frac(self) -> float:
        return self.quality_sum / max(self.quality_base_sum, 1e-12)


@dataclass
class EvalResult:
    """One policy over several seeds."""

    policy: str
    scenario: str
    per_seed: list[SeedResult] = field(default_factory=list)

    def _pool(self, key: str) -> float:
        return float(sum(getattr(s, key) for s in self.per_seed))

    @property
    def n_requests(self) -> int:
        return int(self._pool("n_requests"))

    def carbon_mean_g(self, component: str = "total_g") -> float:
        """Mean carbon per request over all seeds, g."""
        return sum(s.carbon_sum_g[component] for s in self.per_seed) / self.n_requests

    @property
    def quality_vs_base_frac(self) -> float:
        return self._pool("quality_sum") / max(self._pool("quality_base_sum"), 1e-12)

    @property
    def latency_violation_frac(self) -> float:
        return self._pool("latency_violations") / self.n_requests

    @property
    def outage_frac(self) -> float:
        return self._pool("outages") / self.n_requests

    @property
    def floor_violation_frac(self) -> float:
        return self._pool("floor_violations") / max(self._pool("floor_checked"), 1.0)

    def level_mix_by_hour(self) -> np.ndarray:
        """(24, 3) share of each level per UTC hour of day."""
        counts = np.sum([s.level_count_by_hour for s in self.per_seed], axis=0).astype(np.float64)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    def ci_by_hour(self) -> np.ndarray:
        """(24,) mean carbon intensity seen per UTC hour of day, gCO2e/kWh."""
        ci = np.sum([s.ci_sum_by_hour for s in self.per_seed], axis=0)
        n = np.sum([s.requests_by_hour for s in self.per_seed], axis=0)
        return ci / np.maximum(n, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "scenario": self.scenario, "per_seed": [asdict(s) for s in self.per_seed]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        return cls(policy=d["policy"], scenario=d["scenario"], per_seed=[SeedResult(**s) for s in d["per_seed"]])


def run_seed(policy: Policy, model: ServiceModel, seed: int, n_bs: int = 8, days: int = 1,
             progress: Any = None, task: Any = None) -> SeedResult:
    """Run `policy` on `n_bs` base stations for `days` episodes each, all drawn from `seed`."""
    return run_seed_groups(policy, model, seed, n_bs=n_bs, n_groups=1, days=days, progress=progress, task=task)[0]


def run_seed_groups(policy: Policy, model: ServiceModel, seed: int, n_bs: int = 8, n_groups: int = 1,
                    days: int = 1, progress: Any = None, task: Any = None) -> list[SeedResult]:
    """Run `policy` on ``n_groups`` copies of the same `n_bs` base stations side by side, for
    `days` episodes each, all drawn from `seed`; one result per group.

    Group g is BS ``g * n_bs`` to ``(g + 1) * n_bs - 1`` of one simulator, and its BS i serves BS
    i's requests of :func:`run_seed` (random stream i). A policy that decides each group by its own
    rule (the LP at one quality margin per group, :mod:`aolo.train.frontier`) gets in one
    simulation what ``n_groups`` runs of :func:`run_seed` would give, number for number: every
    group's totals are summed exactly as :func:`run_seed` sums one run's (``tests/test_frontier.py``).

    :return: (n_groups,) results, in group order
    """
    n = n_bs * n_groups
    sim = BatchSimulator(model, n_bs=n, seed=seed, stream_of_bs=np.tile(np.arange(n_bs), n_groups))
    ctx = sim.reset(seed=seed)
    policy.reset(sim, seed)
    group = np.repeat(np.arange(n_groups), n_bs)
    carbon_keys = COMPONENTS + ("total_g",)
    carbon_sums = np.zeros((len(carbon_keys), n_groups))
    level_counts = np.zeros((n_groups, 24, N_LEVELS), dtype=np.int64)
    ci_sum = np.zeros((n_groups, 24))
    by_hour = np.zeros((n_groups, 24), dtype=np.int64)
    counts = np.zeros((n_groups, 5), dtype=np.int64)  # n, late, outage, floor, checked
    q_sums = np.zeros((n_groups, 2))  # quality, quality_base: sums of 0/1, exact in any order
    active = np.ones(n, dtype=bool)
    w = model.scenario.quality_window
    while active.any():
        counted = sim.episode_count <= days  # the BS is still in one of its first `days` episodes
        level, power = policy.decide(ctx, observe(ctx))
        hod = ctx.hour_of_day.astype(np.int64)
        n_before = sim._n.copy()
        out = sim.step(level, power)
        m = counted
        if n_groups > 1 and not (m.reshape(n_groups, n_bs) == m[:n_bs]).all():
            raise RuntimeError("run_seed_groups: the groups left lockstep (their base stations share random streams)")
        cols = np.flatnonzero(m[:n_bs])  # the groups move in lockstep: same days, same ends
        for k, c in enumerate(carbon_keys):
            carbon_sums[k] += numpy_row_sums(getattr(out.carbon, c).reshape(n_groups, n_bs)[:, cols])
        np.add.at(counts, group[m], np.column_stack([np.ones(int(m.sum()), dtype=np.int64), out.latency_violation[m],
                                                     out.outage[m], out.floor_violation[m], n_before[m] + 1 >= w]))
        np.add.at(q_sums, group[m], np.column_stack([out.quality[m], out.quality_base[m]]))
        np.add.at(level_counts, (group[m], hod[m], out.level[m]), 1)
        np.add.at(ci_sum, (group[m], hod[m]), out.ci_g_per_kwh[m])
        np.add.at(by_hour, (group[m], hod[m]), 1)
        active = sim.episode_count <= days
        ctx = sim.context
        if progress is not None:
            progress.advance(task, int(m.sum()))
    return [SeedResult(seed=seed, n_requests=int(counts[g, 0]),
                       carbon_sum_g={c: float(carbon_sums[k, g]) for k, c in enumerate(carbon_keys)},
                       quality_sum=float(q_sums[g, 0]), quality_base_sum=float(q_sums[g, 1]),
                       latency_violations=int(counts[g, 1]), outages=int(counts[g, 2]),
                       floor_violations=int(counts[g, 3]), floor_checked=int(counts[g, 4]),
                       level_count_by_hour=level_counts[g].tolist(), ci_sum_by_hour=ci_sum[g].tolist(),
                       requests_by_hour=by_hour[g].tolist())
            for g in range(n_groups)]


class _SimulatorPart:
    """Base stations ``start`` to ``start + n_bs - 1`` of a shared simulator, seen by a policy as a
    simulator of their own: the model, the seed, and per BS the day counter, position, length and
    episode stream (what the oracle reads)."""

    def __init__(self, sim: BatchSimulator, start: int, n_bs: int) -> None:
        self._sim, self._part, self.n_bs = sim, slice(start, start + n_bs), n_bs
        self.model, self.seed = sim.model, sim.seed

    @property
    def episode_count(self) -> np.ndarray:
        return self._sim.episode_count[self._part]

    @property
    def pos(self) -> np.ndarray:
        return self._sim.pos[self._part]

    @property
    def length(self) -> np.ndarray:
        return self._sim.length[self._part]

    def episode_stream(self, b: int) -> Any:
        return self._sim.episode_stream(self._part.start + b)


class PoliciesSideBySide:
    """Several policies on one simulator, policy g deciding group g of ``n_bs`` base stations
    (:func:`run_seed_groups`): each sees its group's context, observations and simulator part
    only, so it decides as it would alone on ``n_bs`` base stations, while the simulator, the
    requests and the observations are computed once for all of them.

    :param policies: one per group
    :param n_bs: base stations per group
    """

    name = "side-by-side"

    def __init__(self, policies: Sequence[Policy], n_bs: int) -> None:
        self.policies = list(policies)
        self.parts = [slice(g * n_bs, (g + 1) * n_bs) for g in range(len(self.policies))]

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        for policy, part in zip(self.policies, self.parts):
            policy.reset(_SimulatorPart(sim, part.start, part.stop - part.start), seed)  # type: ignore[arg-type]

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        levels, powers = [], []
        for policy, part in zip(self.policies, self.parts):
            part_ctx = RequestContext(**{f.name: getattr(ctx, f.name)[part] for f in fields(ctx)})
            level, power = policy.decide(part_ctx, obs[part])
            levels.append(np.asarray(level, dtype=np.int64))
            powers.append(np.asarray(power, dtype=np.float64))
        return np.concatenate(levels), np.concatenate(powers)


def evaluate_policies(policies: Sequence[Policy], model: ServiceModel, seeds: Iterable[int], n_bs: int = 8,
                      days: int = 1, progress: Any = None) -> list[EvalResult]:
    """Evaluate several policies on the same seeds side by side (:class:`PoliciesSideBySide`):
    each result equals :func:`evaluate_policy` of that policy alone, to the bit
    (``tests/test_reference_policies.py``), for one simulation's cost.

    :return: one result per policy, in order
    """
    policies = list(policies)
    return evaluate_policy_groups(PoliciesSideBySide(policies, n_bs), [p.name for p in policies], model, seeds,
                                  n_bs=n_bs, days=days, progress=progress)


def numpy_row_sums(x: np.ndarray) -> np.ndarray:
    """Each row's sum exactly as numpy sums a 1-d array (``x[g].sum()``), for all rows at once.

    Written out because ``x.sum(axis=1)`` adds a row's elements in another order than
    ``x[g].sum()`` (numpy's pairwise summation runs along contiguous 1-d data only), so its last
    bits differ, and a policy evaluated in a group (:func:`run_seed_groups`) must sum its carbon
    as :func:`run_seed` always has. This is numpy's ``pairwise_sum``: blocks of up to 128
    elements summed in eight interleaved partial sums, longer rows split in halves.
    ``tests/test_frontier.py`` checks it against numpy on random rows of every length up to 400.

    :param x: (rows, n) float64
    :return: (rows,) float64
    """
    rows, n = x.shape
    if n < 8:
        total = np.full(rows, -0.0)
        for i in range(n):
            total = total + x[:, i]
        return total
    if n <= 128:
        partial = x[:, :8].copy()
        i = 8
        while i < n - n % 8:
            partial += x[:, i:i + 8]
            i += 8
        total = (((partial[:, 0] + partial[:, 1]) + (partial[:, 2] + partial[:, 3]))
                 + ((partial[:, 4] + partial[:, 5]) + (partial[:, 6] + partial[:, 7])))
        for j in range(i, n):
            total = total + x[:, j]
        return total
    half = n // 2
    half -= half % 8
    return numpy_row_sums(x[:, :half]) + numpy_row_sums(x[:, half:])


def evaluate_policy(policy: Policy, model: ServiceModel, seeds: Iterable[int], n_bs: int = 8, days: int = 1,
                    progress: Any = None) -> EvalResult:
    """Run `policy` on every seed; see :func:`run_seed`."""
    return evaluate_policy_groups(policy, [policy.name], model, seeds, n_bs=n_bs, days=days, progress=progress)[0]


def evaluate_policy_groups(policy: Policy, names: Sequence[str], model: ServiceModel, seeds: Iterable[int],
                           n_bs: int = 8, days: int = 1, progress: Any = None) -> list[EvalResult]:
    """Run a policy that decides ``len(names)`` groups of `n_bs` base stations on every seed; see
    :func:`run_seed_groups`.

    :param names: the policy name of each group's result
    :return: one result per group, named by ``names``
    """
    results = [EvalResult(policy=name, scenario=model.scenario.name) for name in names]
    for seed in seeds:
        task = None
        if progress is not None:
            expected = model.scenario.base_rate_per_s * 3600 * model.scenario.episode_hours * n_bs * days * len(names)
            task = progress.add_task(f"{policy.name} seed {seed}", total=expected)
        for result, seed_result in zip(results, run_seed_groups(policy, model, seed, n_bs=n_bs, n_groups=len(names),
                                                                days=days, progress=progress, task=task)):
            result.per_seed.append(seed_result)
        if progress is not None:
            progress.update(task, completed=progress.tasks[task].total)
    return results


def savings_vs_base(result: EvalResult, base: EvalResult) -> np.ndarray:
    """Per-seed carbon saving against BASE on the same seeds, fractions (n_seeds,)."""
    base_by_seed = {s.seed: s.carbon_mean_g for s in base.per_seed}
    return np.array([1.0 - s.carbon_mean_g / base_by_seed[s.seed] for s in result.per_seed])


def summary_row(result: EvalResult, base: EvalResult) -> dict[str, float]:
    """The table row of one policy: means over seeds and the per-seed spread of the saving."""
    saving = savings_vs_base(result, base)
    quality = np.array([s.quality_vs_base_frac for s in result.per_seed])
    row = {
        "carbon_g_per_request": result.carbon_mean_g(),
        **{f"{c}_per_request": result.carbon_mean_g(c) for c in COMPONENTS},
        "saving_vs_base_frac": float(saving.mean()),
        "saving_min_frac": float(saving.min()),
        "saving_max_frac": float(saving.max()),
        "saving_std_frac": float(saving.std(ddof=1)) if len(saving) > 1 else 0.0,
        "quality_vs_base_frac": float(quality.mean()),
        "quality_min_frac": float(quality.min()),
        "quality_max_frac": float(quality.max()),
        "latency_violation_frac": result.latency_violation_frac,
        "outage_frac": result.outage_frac,
        "floor_violation_frac": result.floor_violation_frac,
        "n_requests": float(result.n_requests),
    }
    return row
