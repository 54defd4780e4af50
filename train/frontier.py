"""The class-aware LP's quality-carbon frontier, for comparing a policy with the LP at equal quality.

Quality costs carbon, so carbon per request alone favours whichever policy buys less quality. The
class-aware LP asked for a quality margin m above Sprout's floor, ``(1 - xi CI_norm + m)``, shows
how much carbon the LP needs for each quality; mixing two such LPs reaches any point between them,
so the frontier is the lower convex hull of the points. A policy's *excess over the LP at equal
quality* is its carbon divided by the frontier's carbon at the policy's quality, minus one:
negative means it beats the LP.

The frontier is evaluated on the same seeds and base stations as the policies it judges. It is a
reference curve, not a tuning step: nothing learned is chosen by it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .evaluate import EvalResult, evaluate_policy
from .policies import LPPolicy
from .simulator import ServiceModel

DEFAULT_MARGINS: tuple[float, ...] = tuple(round(-0.10 + 0.005 * i, 3) for i in range(45))
"""Quality margins m of the class-aware LP, -0.10 to +0.12 in steps of 0.005; on the default scenario
they span about 85-110% of BASE's quality. The hull of a coarser grid lies above the LP's true
frontier between its points: with steps of 0.02 it overstated the LP's carbon by up to 0.64% (at
104% quality; 0.19% on average over 92-108%) on the evaluation seeds, as much as the differences it
is there to measure; with 0.01, up to 0.26%."""


@dataclass(frozen=True)
class FrontierPoint:
    """The class-aware LP with one quality margin, pooled over the evaluation seeds."""

    margin: float
    quality_vs_base_frac: float
    carbon_g_per_request: float


@dataclass(frozen=True)
class Frontier:
    """The lower convex hull of LP points in (quality vs BASE, carbon per request g)."""

    points: tuple[FrontierPoint, ...]
    hull: tuple[FrontierPoint, ...]

    @classmethod
    def from_points(cls, points: Sequence[FrontierPoint]) -> "Frontier":
        """:raises ValueError: fewer than two points of different quality"""
        pts = sorted(points, key=lambda p: (p.quality_vs_base_frac, p.carbon_g_per_request))
        hull: list[FrontierPoint] = []
        for p in pts:  # Andrew's monotone chain, lower half
            while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
                hull.pop()
            if hull and hull[-1].quality_vs_base_frac == p.quality_vs_base_frac:
                continue  # same quality, more carbon
            hull.append(p)
        # the part that rises with quality: below its cheapest point a frontier never costs more
        cheapest = int(np.argmin([p.carbon_g_per_request for p in hull]))
        hull = hull[cheapest:]
        if len(hull) < 2:
            raise ValueError("Frontier: need LP points of at least two different qualities")
        return cls(points=tuple(pts), hull=tuple(hull))

    @property
    def quality_range(self) -> tuple[float, float]:
        return self.hull[0].quality_vs_base_frac, self.hull[-1].quality_vs_base_frac

    def carbon_at(self, quality_vs_base_frac: float) -> float:
        """Carbon per request (g) the LP needs for this quality; NaN outside the qualities the
        frontier spans (:attr:`quality_range`)."""
        q = np.array([p.quality_vs_base_frac for p in self.hull])
        c = np.array([p.carbon_g_per_request for p in self.hull])
        if not q[0] <= quality_vs_base_frac <= q[-1]:
            return float("nan")
        return float(np.interp(quality_vs_base_frac, q, c))

    def excess_frac(self, result: EvalResult) -> float:
        """``carbon / LP carbon at the same quality - 1`` for a policy's pooled result (NaN out of range)."""
        return result.carbon_mean_g() / self.carbon_at(result.quality_vs_base_frac) - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"points": [asdict(p) for p in self.points], "hull": [asdict(p) for p in self.hull]}


def _cross(o: FrontierPoint, a: FrontierPoint, b: FrontierPoint) -> float:
    return ((a.quality_vs_base_frac - o.quality_vs_base_frac) * (b.carbon_g_per_request - o.carbon_g_per_request)
            - (a.carbon_g_per_request - o.carbon_g_per_request) * (b.quality_vs_base_frac - o.quality_vs_base_frac))


def margin_results(model: ServiceModel, seeds: Iterable[int], n_bs: int, margins: Sequence[float],
                   progress: Any = None) -> list[EvalResult]:
    """The class-aware LP's result at each of ``margins`` on ``seeds`` x ``n_bs`` base stations
    (what :func:`lp_frontier` evaluates; :mod:`aolo.train.evaluation_fanout` runs it per seed and
    group of margins on Ray)."""
    seeds = list(seeds)
    return [evaluate_policy(LPPolicy(per_class=True, quality_margin=m), model, seeds, n_bs=n_bs, progress=progress)
            for m in margins]


def lp_frontier(model: ServiceModel, seeds: Iterable[int], n_bs: int = 8,
                margins: Sequence[float] = DEFAULT_MARGINS, progress: Any = None,
                evaluated: Mapping[float, EvalResult] | None = None) -> Frontier:
    """Evaluate the class-aware LP at every margin on ``seeds`` and return its frontier.

    :param evaluated: margin -> the class-aware LP's result already evaluated on these ``seeds`` and
        ``n_bs`` (the caller vouches for that); those margins are taken from it, not evaluated again
    """
    seeds = list(seeds)
    evaluated = {float(m): r for m, r in (evaluated or {}).items()}
    todo = [float(m) for m in margins if float(m) not in evaluated]
    evaluated.update(zip(todo, margin_results(model, seeds, n_bs, todo, progress=progress)))
    return Frontier.from_points([FrontierPoint(margin=float(m), quality_vs_base_frac=evaluated[float(m)].quality_vs_base_frac,
                                               carbon_g_per_request=evaluated[float(m)].carbon_mean_g())
                                 for m in margins])
