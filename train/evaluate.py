"""Run a policy over a scenario and measure it: carbon per request with its breakdown, quality
against BASE, latency, outage and floor violations, and the level mix over the day.

Every policy is run on the same seeds, and a seed fixes every request, channel and load, so
savings against BASE are paired comparisons. Results per seed give the spread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from aolo.runtime.carbon import CarbonBreakdown

from .policies import Policy
from .simulator import N_LEVELS, BatchSimulator, ServiceModel, observe

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
    sim = BatchSimulator(model, n_bs=n_bs, seed=seed)
    ctx = sim.reset(seed=seed)
    policy.reset(sim, seed)
    sums = {c: 0.0 for c in COMPONENTS + ("total_g",)}
    level_counts = np.zeros((24, N_LEVELS), dtype=np.int64)
    ci_sum = np.zeros(24)
    by_hour = np.zeros(24, dtype=np.int64)
    totals = dict(n=0, q=0.0, q0=0.0, late=0, outage=0, floor=0, checked=0)
    active = np.ones(n_bs, dtype=bool)
    w = model.scenario.quality_window
    while active.any():
        counted = sim.episode_count <= days  # the BS is still in one of its first `days` episodes
        level, power = policy.decide(ctx, observe(ctx))
        hod = ctx.hour_of_day.astype(np.int64)
        n_before = sim._n.copy()
        out = sim.step(level, power)
        m = counted
        for c in sums:
            sums[c] += float(getattr(out.carbon, c)[m].sum())
        totals["n"] += int(m.sum())
        totals["q"] += float(out.quality[m].sum())
        totals["q0"] += float(out.quality_base[m].sum())
        totals["late"] += int(out.latency_violation[m].sum())
        totals["outage"] += int(out.outage[m].sum())
        totals["floor"] += int(out.floor_violation[m].sum())
        totals["checked"] += int((m & (n_before + 1 >= w)).sum())
        np.add.at(level_counts, (hod[m], out.level[m]), 1)
        np.add.at(ci_sum, hod[m], out.ci_g_per_kwh[m])
        np.add.at(by_hour, hod[m], 1)
        active = sim.episode_count <= days
        ctx = sim.context
        if progress is not None:
            progress.advance(task, int(m.sum()))
    return SeedResult(seed=seed, n_requests=totals["n"], carbon_sum_g=sums, quality_sum=totals["q"],
                      quality_base_sum=totals["q0"], latency_violations=totals["late"], outages=totals["outage"],
                      floor_violations=totals["floor"], floor_checked=totals["checked"],
                      level_count_by_hour=level_counts.tolist(), ci_sum_by_hour=ci_sum.tolist(),
                      requests_by_hour=by_hour.tolist())


def evaluate_policy(policy: Policy, model: ServiceModel, seeds: Iterable[int], n_bs: int = 8, days: int = 1,
                    progress: Any = None) -> EvalResult:
    """Run `policy` on every seed; see :func:`run_seed`."""
    result = EvalResult(policy=policy.name, scenario=model.scenario.name)
    for seed in seeds:
        task = None
        if progress is not None:
            expected = model.scenario.base_rate_per_s * 3600 * model.scenario.episode_hours * n_bs * days
            task = progress.add_task(f"{policy.name} seed {seed}", total=expected)
        result.per_seed.append(run_seed(policy, model, seed, n_bs=n_bs, days=days, progress=progress, task=task))
        if progress is not None:
            progress.update(task, completed=progress.tasks[task].total)
    return result


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
