"""Learned runs beside the reference policies on the same seeds: the evaluation behind
``aolo compare`` and the pipeline's report, and its table.

Runs are grouped by algorithm and shown as mean ± std over runs; each policy is also compared with
the class-aware LP at its own quality (:mod:`aolo.train.frontier`), and SDRL with SAC through the
difference of those figures (:func:`comparison_gap`) and, because a run's excess also depends on
the quality it lands at, at a common quality (:func:`comparison_quality_adjusted_gap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from aolo.console import progress

from .evaluate import EvalResult, evaluate_policies, summary_row
from .frontier import Frontier, lp_frontier
from .policies import COMPARE_REFERENCES, REFERENCE_POLICIES
from .simulator import ServiceModel


@dataclass
class Comparison:
    """Everything evaluated on one set of seeds.

    :param groups: algorithm -> [(TrainedRun, EvalResult)], in the order the runs were given
    :param references: the :data:`COMPARE_REFERENCES` policies, best first
    :param frontier: the class-aware LP's quality-carbon frontier
    """

    groups: dict[str, list[tuple[Any, EvalResult]]]
    references: list[EvalResult]
    frontier: Frontier

    @property
    def base(self) -> EvalResult:
        return next(r for r in self.references if r.policy == "base")

    def excess_pct(self, results: Sequence[EvalResult]) -> np.ndarray:
        """(n,) each result's carbon excess over the LP at its own quality, percent; NaN outside
        the LP's quality range."""
        return 100.0 * np.array([self.frontier.excess_frac(r) for r in results], dtype=np.float64)


def compare_runs(model: ServiceModel, runs: Sequence[Any], seeds: Iterable[int], n_bs: int = 8,
                 cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> Comparison:
    """Evaluate trained runs (:class:`~aolo.train.run.TrainedRun`), the reference policies and the
    LP frontier on ``seeds`` x ``n_bs`` base stations x 1 day, with a progress bar.

    :param cache_dir: where the LP frontier is cached (:func:`aolo.train.frontier.lp_frontier`); None: no cache
    :param log: where to say that the cached frontier was used or set aside
    """
    seeds = list(seeds)
    groups: dict[str, list] = {}
    with progress() as bar:
        # side by side: each result is the policy's lone evaluation, for one simulation's cost
        results = evaluate_policies([REFERENCE_POLICIES[name]() for name in COMPARE_REFERENCES]
                                    + [run.policy() for run in runs], model, seeds, n_bs=n_bs, progress=bar)
        refs = results[:len(COMPARE_REFERENCES)]
        for run, res in zip(runs, results[len(COMPARE_REFERENCES):]):
            groups.setdefault(run.config.algo, []).append((run, res))
        lp_at_floor = refs[COMPARE_REFERENCES.index("class-aware-lp")]  # the frontier's margin 0
        frontier = lp_frontier(model, seeds, n_bs=n_bs, progress=bar, evaluated={0.0: lp_at_floor},
                               cache_dir=cache_dir, log=log)
    return Comparison(groups=groups, references=refs, frontier=frontier)


@dataclass(frozen=True)
class ExcessGap:
    """Difference of two algorithms' mean carbon excess over the LP at equal quality, in
    percentage points (``a`` minus ``b``: negative favours ``a``), with its uncertainty over runs."""

    a: str
    b: str
    diff_pct: float
    """mean excess of a's runs minus b's, percentage points"""
    se_pct: float
    """Welch standard error of the difference (``scipy.stats.ttest_ind(equal_var=False)``), percentage points"""
    ci_low_pct: float
    """lower end of the bootstrap 95% percentile interval (``scipy.stats.bootstrap``, runs resampled
    within each algorithm)"""
    ci_high_pct: float
    """upper end of the bootstrap 95% interval"""
    n_a: int
    n_b: int

    def describe(self) -> str:
        return (f"{self.a} - {self.b} at equal quality: {self.diff_pct:+.2f} points (Welch SE {self.se_pct:.2f}, "
                f"t {self.diff_pct / self.se_pct if self.se_pct > 0 else float('nan'):+.1f}; bootstrap 95% interval "
                f"{self.ci_low_pct:+.2f} to {self.ci_high_pct:+.2f}; {self.n_a} and {self.n_b} runs); "
                f"below 0 favours {self.a}")


def excess_gap(excess_a_pct: Sequence[float], excess_b_pct: Sequence[float], a: str = "sdrl", b: str = "sac",
               n_boot: int = 20_000, seed: int = 0) -> ExcessGap:
    """Gap between two sets of per-run excesses over the LP at equal quality.

    :param excess_a_pct: (n_a,) percent, one per run of ``a``
    :param excess_b_pct: (n_b,) percent, one per run of ``b``
    :param n_boot: bootstrap resamples
    :param seed: seed of the bootstrap
    :raises ValueError: unless each side has at least two finite values
    """
    from scipy import stats

    va, vb = np.asarray(excess_a_pct, dtype=np.float64), np.asarray(excess_b_pct, dtype=np.float64)
    for name, v in ((a, va), (b, vb)):
        if v.size < 2 or not np.isfinite(v).all():
            raise ValueError(f"excess_gap: {name} needs at least two runs inside the LP's range, got {v.tolist()}")
    welch = stats.ttest_ind(va, vb, equal_var=False)
    ci = welch.confidence_interval(0.95)  # diff +- t_0.975(df) * se: the standard error, read back
    se = float((ci.high - ci.low) / (2.0 * stats.t.ppf(0.975, welch.df)))
    boot = stats.bootstrap((va, vb), _difference_of_means, n_resamples=n_boot, confidence_level=0.95,
                           method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return ExcessGap(a=a, b=b, diff_pct=float(va.mean() - vb.mean()), se_pct=se,
                     ci_low_pct=float(boot.confidence_interval.low), ci_high_pct=float(boot.confidence_interval.high),
                     n_a=int(va.size), n_b=int(vb.size))


def _difference_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


def comparison_gap(result: Comparison, a: str = "sdrl", b: str = "sac") -> ExcessGap | None:
    """:func:`excess_gap` of two algorithms in a comparison; None unless both have at least two
    runs, all inside the LP's quality range."""
    excess = {algo: result.excess_pct([res for _, res in result.groups.get(algo, [])]) for algo in (a, b)}
    try:
        return excess_gap(excess[a], excess[b], a=a, b=b)
    except ValueError:
        return None


@dataclass(frozen=True)
class QualityAdjustedGap:
    """Two algorithms' difference in carbon excess over the LP at the same quality, from the least
    squares fit ``excess = c + slope * quality + diff * [run is a]`` over both algorithms' runs (one
    slope for both). The plain :class:`ExcessGap` compares means at whatever quality each
    algorithm's runs land; where the excess moves with quality, this one does not mix the two."""

    a: str
    b: str
    diff_pct: float
    """a's excess minus b's at equal quality, percentage points (negative favours a)"""
    se_pct: float
    """ordinary least-squares standard error of diff_pct, percentage points"""
    slope_pct_per_point: float
    """change of the excess per percentage point of quality vs BASE, percentage points"""
    slope_se_pct_per_point: float
    """its standard error"""
    mean_quality_pct: float
    """mean quality vs BASE over all runs, percent"""
    b_excess_at_mean_quality_pct: float
    """the fitted line of b at mean_quality_pct (a's is diff_pct higher), percent"""
    n_a: int
    n_b: int

    def fitted_excess_pct(self, algo: str, quality_pct: np.ndarray) -> np.ndarray:
        """The fitted line of ``algo`` (a or b) at ``quality_pct``, percent."""
        offset = {self.a: self.diff_pct, self.b: 0.0}[algo]
        return (self.b_excess_at_mean_quality_pct + offset
                + self.slope_pct_per_point * (np.asarray(quality_pct, dtype=np.float64) - self.mean_quality_pct))

    def describe(self) -> str:
        return (f"{self.a} - {self.b} at the same run quality (least squares over runs, one slope): "
                f"{self.diff_pct:+.2f} points (SE {self.se_pct:.2f}); the excess moves "
                f"{self.slope_pct_per_point:+.2f} ± {self.slope_se_pct_per_point:.2f} points per point of quality")


def quality_adjusted_gap(excess_a_pct: Sequence[float], quality_a_pct: Sequence[float],
                         excess_b_pct: Sequence[float], quality_b_pct: Sequence[float],
                         a: str = "sdrl", b: str = "sac") -> QualityAdjustedGap:
    """Fit ``excess = c + slope * quality + diff * [run is a]`` by least squares.

    :param excess_a_pct: (n_a,) percent, each run's excess over the LP at equal quality
    :param quality_a_pct: (n_a,) percent, each run's quality vs BASE
    :param excess_b_pct: (n_b,) percent
    :param quality_b_pct: (n_b,) percent
    :raises ValueError: unless each side has at least two finite runs, there are five runs in all
        (two degrees of freedom left for the error), and quality varies within the runs
    """
    ea, qa, eb, qb = (np.asarray(v, dtype=np.float64) for v in (excess_a_pct, quality_a_pct, excess_b_pct, quality_b_pct))
    for name, e, q in ((a, ea, qa), (b, eb, qb)):
        if e.shape != q.shape:
            raise ValueError(f"quality_adjusted_gap: {name} has {e.size} excesses but {q.size} qualities")
        if e.size < 2 or not (np.isfinite(e).all() and np.isfinite(q).all()):
            raise ValueError(f"quality_adjusted_gap: {name} needs at least two runs inside the LP's range, "
                             f"got {e.tolist()}")
    n = ea.size + eb.size
    if n < 5:
        raise ValueError(f"quality_adjusted_gap: needs at least 5 runs in all, got {n}")
    q = np.concatenate([qa, qb])
    if np.ptp(q) == 0:
        raise ValueError("quality_adjusted_gap: every run has the same quality; the slope is undefined")
    x = np.column_stack([np.ones(n), q - q.mean(), np.r_[np.ones(ea.size), np.zeros(eb.size)]])
    y = np.concatenate([ea, eb])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    cov = (resid @ resid / (n - 3)) * np.linalg.inv(x.T @ x)
    return QualityAdjustedGap(a=a, b=b, diff_pct=float(coef[2]), se_pct=float(np.sqrt(cov[2, 2])),
                              slope_pct_per_point=float(coef[1]), slope_se_pct_per_point=float(np.sqrt(cov[1, 1])),
                              mean_quality_pct=float(q.mean()), b_excess_at_mean_quality_pct=float(coef[0]),
                              n_a=int(ea.size), n_b=int(eb.size))


def comparison_quality_adjusted_gap(result: Comparison, a: str = "sdrl", b: str = "sac") -> QualityAdjustedGap | None:
    """:func:`quality_adjusted_gap` of two algorithms in a comparison; None where it cannot be fitted."""
    args = []
    for algo in (a, b):
        results = [res for _, res in result.groups.get(algo, [])]
        args += [result.excess_pct(results), [100.0 * r.quality_vs_base_frac for r in results]]
    try:
        return quality_adjusted_gap(*args, a=a, b=b)
    except ValueError:
        return None


def comparison_table(result: Comparison, title: str) -> Any:
    """A rich table: each algorithm's runs aggregated (mean ± std over runs of the per-run figure),
    then the reference policies (mean over seeds, [min, max] of the per-seed saving); the last
    column is each policy's carbon excess over the class-aware LP at its own quality."""
    from rich.table import Table

    base = result.base
    table = Table(title=title)
    for col in ("policy", "runs", "carbon g/req", "saving vs BASE", "quality vs BASE", "late/outage", "outage",
                "floor viol.", "vs LP at equal quality"):
        table.add_column(col, justify="left" if col == "policy" else "right")

    def excess(results: list[EvalResult]) -> str:
        v = result.excess_pct(results)
        if np.isnan(v).any():
            return "outside the LP's range"
        return f"{v.mean():+.1f}" + (f" ± {v.std(ddof=1):.1f}%" if len(v) > 1 else "%")

    pct = ("saving_vs_base_frac", "quality_vs_base_frac", "latency_violation_frac", "outage_frac",
           "floor_violation_frac")
    for algo, items in result.groups.items():
        rows = [summary_row(res, base) for _, res in items]

        def ms(key: str, scale: float = 100.0, fmt: str = ".1f") -> str:
            v = scale * np.array([r[key] for r in rows])
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            return f"{v.mean():{fmt}} ± {sd:{fmt}}"

        table.add_row(algo, str(len(rows)), ms("carbon_g_per_request", 1.0, ".4f"),
                      *[ms(k, 100.0, ".2f" if k in ("latency_violation_frac", "outage_frac") else ".1f") + "%"
                        for k in pct], excess([res for _, res in items]))
    for r in result.references:
        row = summary_row(r, base)
        table.add_row(r.policy, "-", f"{row['carbon_g_per_request']:.4f}",
                      f"{100 * row['saving_vs_base_frac']:.1f}% [{100 * row['saving_min_frac']:.1f}, "
                      f"{100 * row['saving_max_frac']:.1f}]",
                      f"{100 * row['quality_vs_base_frac']:.1f}%", f"{100 * row['latency_violation_frac']:.2f}%",
                      f"{100 * row['outage_frac']:.2f}%", f"{100 * row['floor_violation_frac']:.1f}%", excess([r]))
    return table
