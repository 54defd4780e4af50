"""The class-aware LP's quality-carbon frontier, for comparing a policy with the LP at equal quality.

Quality costs carbon, so carbon per request alone favours whichever policy buys less quality. The
class-aware LP asked for a quality margin m above Sprout's floor, ``(1 - xi CI_norm + m)``, shows
how much carbon the LP needs for each quality; mixing two such LPs reaches any point between them,
so the frontier is the lower convex hull of the points. A policy's *excess over the LP at equal
quality* is its carbon divided by the frontier's carbon at the policy's quality, minus one:
negative means it beats the LP.

The frontier is evaluated on the same seeds and base stations as the policies it judges. It is a
reference curve, not a tuning step: nothing learned is chosen by it.

Every margin is evaluated, side by side in one simulation (:class:`LPMarginsPolicy`), which gives
each margin's numbers exactly as evaluating it alone would, in a tenth of the time; and a
frontier can be kept in a cache folder (:func:`lp_frontier`'s ``cache_dir``), keyed by everything
its numbers depend on, so that a second comparison on the same seeds reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .evaluate import EvalResult, evaluate_policy_groups
from .policies import LPPolicy, LevelStats, _closed_form_power, calibrate, draw_levels
from .simulator import BatchSimulator, RequestContext, ServiceModel

__all__ = ["DEFAULT_MARGINS", "Frontier", "FrontierPoint", "LPMarginsPolicy", "lp_frontier", "frontier_cache_key"]

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


class LPMarginsPolicy:
    """The class-aware LP at several quality margins at once, margin g deciding base stations
    ``g * n_bs`` to ``(g + 1) * n_bs - 1`` (:func:`aolo.train.evaluate.run_seed_groups`).

    Each margin keeps its own :class:`LPPolicy` (its random draws and hourly mixes), so a group
    decides exactly as that LP alone on ``n_bs`` base stations; what is shared is the work: one
    calibration, the mixes across seeds, and numpy calls over every group at once.

    :param margins: quality margins, one per group
    :param n_bs: base stations per group
    """

    name = "class-aware-lp-margins"

    def __init__(self, margins: Sequence[float], n_bs: int) -> None:
        self.lps = [LPPolicy(per_class=True, quality_margin=m) for m in margins]
        self.n_bs = n_bs
        self.group = np.repeat(np.arange(len(self.lps)), n_bs)
        self._model: ServiceModel | None = None
        self._stats: LevelStats | None = None
        self._tables: dict[int, np.ndarray] = {}

    def reset(self, sim: BatchSimulator, seed: int) -> None:
        if sim.n_bs != self.group.size:
            raise ValueError(f"LPMarginsPolicy: {len(self.lps)} margins x {self.n_bs} BS need a simulator of "
                             f"{self.group.size} BS, got {sim.n_bs}")
        if sim.model is not self._model:  # a mix depends on the model, the hour and the margin only
            self._model, self._stats, self._tables = sim.model, calibrate(sim.model), {}
        for lp in self.lps:
            lp.reset(sim, seed, stats=self._stats)

    def _mixes(self, hour_index: int) -> np.ndarray:
        """(n_margins, n_classes, n_levels) every margin's mix for a trace hour."""
        table = self._tables.get(hour_index)
        if table is None:
            table = self._tables[hour_index] = np.stack([lp.mix_for_hour(hour_index) for lp in self.lps])
        return table

    def decide(self, ctx: RequestContext, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hours, at = np.unique(ctx.hour_index, return_inverse=True)
        probs = np.stack([self._mixes(int(h)) for h in hours])[at, self.group, ctx.task_class]
        uniform = np.concatenate([lp.rng.random(self.n_bs) for lp in self.lps])
        level = draw_levels(probs, uniform)
        return level, _closed_form_power(self._model, ctx, level, self._stats)


def lp_frontier(model: ServiceModel, seeds: Iterable[int], n_bs: int = 8,
                margins: Sequence[float] = DEFAULT_MARGINS, progress: Any = None,
                evaluated: Mapping[float, EvalResult] | None = None, cache_dir: str | Path | None = None,
                log: Callable[[str], None] | None = None) -> Frontier:
    """Evaluate the class-aware LP at every margin on ``seeds`` and return its frontier.

    :param evaluated: margin -> the class-aware LP's result already evaluated on these ``seeds`` and
        ``n_bs`` (the caller vouches for that); those margins are taken from it, not evaluated again
    :param cache_dir: a folder for frontiers already computed (None: no cache). A frontier found
        there under :func:`frontier_cache_key` is reused; one that is unreadable or does not match
        its key is computed again and replaced
    :param log: where to say that a cache entry was used or set aside (None: silent)
    """
    seeds = [int(s) for s in seeds]
    margins = [float(m) for m in margins]
    path = key = None
    if cache_dir is not None:
        key = frontier_cache_key(model, seeds, n_bs, margins)
        path = Path(cache_dir) / f"lp_frontier-{_digest(key)[:24]}.json"
        points = _read_cached_points(path, key, log)
        if points is not None:
            if log:
                log(f"LP frontier taken from the cache {path}")
            return Frontier.from_points(points)
    evaluated = {float(m): r for m, r in (evaluated or {}).items()}
    todo = [m for m in margins if m not in evaluated]
    if todo:
        results = evaluate_policy_groups(LPMarginsPolicy(todo, n_bs), [LPPolicy(True, quality_margin=m).name for m in todo],
                                         model, seeds, n_bs=n_bs, progress=progress)
        evaluated.update(zip(todo, results))
    points = [FrontierPoint(margin=m, quality_vs_base_frac=evaluated[m].quality_vs_base_frac,
                            carbon_g_per_request=evaluated[m].carbon_mean_g()) for m in margins]
    frontier = Frontier.from_points(points)
    if path is not None:
        _write_cached_points(path, key, points)
    return frontier


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
CACHE_FORMAT = 1


def frontier_cache_key(model: ServiceModel, seeds: Sequence[int], n_bs: int, margins: Sequence[float]) -> dict[str, Any]:
    """Everything a frontier's numbers depend on, as plain JSON values: the scenario (with the
    contents of any file it names), the model's derived constants, the seeds, base stations and
    margins, the numpy and scipy versions, and a digest of the code and data of
    ``aolo.train``, ``aolo.runtime`` and ``aolo.hw_profiles`` (a changed module makes a new key)."""
    import scipy

    scenario = model.scenario.to_dict()
    files = {}
    for name in ("requests_csv", "judgements_csv", "workload_csv", "grid"):
        value = scenario.get(name)
        if isinstance(value, str) and Path(value).is_file():
            files[name] = hashlib.sha256(Path(value).read_bytes()).hexdigest()
    return {"format": CACHE_FORMAT, "scenario": scenario, "scenario_files_sha256": files,
            "carbon_ref_g": float(model.carbon_ref_g), "actor_energy_j": float(model.actor_energy_j),
            "seeds": [int(s) for s in seeds], "n_bs": int(n_bs), "margins": [float(m) for m in margins],
            "numpy": np.__version__, "scipy": scipy.__version__, "code_sha256": _code_digest()}


def _code_digest() -> str:
    """sha256 over the source and data files of the packages a frontier's numbers come from."""
    import aolo.hw_profiles
    import aolo.runtime
    import aolo.train

    h = hashlib.sha256()
    for package in (aolo.train, aolo.runtime, aolo.hw_profiles):
        root = Path(package.__file__).parent
        for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml", ".json", ".csv") and p.is_file()):
            h.update(f"{package.__name__}/{f.relative_to(root).as_posix()}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _read_cached_points(path: Path, key: dict[str, Any], log: Callable[[str], None] | None) -> list[FrontierPoint] | None:
    """The points stored at ``path`` under ``key``, or None when there are none or they cannot be
    trusted (unreadable, another key, a checksum that does not match, margins missing)."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc["key"] != key:
            raise ValueError("stored under another key")
        if doc["points_sha256"] != _digest(doc["points"]):
            raise ValueError("checksum does not match its points")
        points = [FrontierPoint(margin=float(p["margin"]), quality_vs_base_frac=float(p["quality_vs_base_frac"]),
                                carbon_g_per_request=float(p["carbon_g_per_request"])) for p in doc["points"]]
        if [p.margin for p in points] != key["margins"] or not all(
                np.isfinite([p.quality_vs_base_frac, p.carbon_g_per_request]).all() for p in points):
            raise ValueError("margins missing or values not finite")
        return points
    except (OSError, ValueError, KeyError, TypeError) as e:
        if log:
            log(f"LP frontier cache {path} set aside ({e}); computing it again")
        return None


def _write_cached_points(path: Path, key: dict[str, Any], points: Sequence[FrontierPoint]) -> None:
    """Write the entry through a temporary file and a rename, so a reader sees all of it or none."""
    rows = [asdict(p) for p in points]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "points": rows, "points_sha256": _digest(rows)}, indent=1))
    tmp.replace(path)
