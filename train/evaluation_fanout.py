"""Evaluations fanned out on Ray (``aolo evaluate --ray``, ``aolo compare --ray``): seeds x groups
of policies, and the class-aware LP's frontier as seeds x groups of margins, with results equal to
the serial path's to the last bit.

Why they are equal: a seed fixes every request, channel and load, each policy is reset per seed
(:func:`aolo.train.evaluate.run_seed_groups` builds its own simulator), and an :class:`EvalResult`
is its per-seed totals in seed order. Policies evaluated side by side
(:func:`aolo.train.evaluate.evaluate_policies`) and margins side by side
(:class:`aolo.train.frontier.LPMarginsPolicy`) each give what that policy or margin gives alone, so
any split of them into groups gives the same numbers; each task runs the serial path's own
function on one seed and one group, and the driver puts the :class:`SeedResult` s back in seed
order. The tasks run on a :class:`ServiceModel` each worker builds from the scenario.

Workers read run directories and scenario files by the paths the driver gives: on a cluster those
must be on storage every node sees at the same path (docs/sweeps.md).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from .evaluate import EvalResult, SeedResult, evaluate_policies, evaluate_policy_groups
from .frontier import DEFAULT_MARGINS, Frontier, LPMarginsPolicy, lp_frontier
from .policies import LPPolicy, REFERENCE_POLICIES
from .scenario import ScenarioConfig
from .simulator import ServiceModel

__all__ = ["evaluate_on_ray", "lp_frontier_on_ray", "compare_runs_on_ray", "policy_name"]


# =============================================================================================
# In the worker: the model, the policies, one task's evaluation
# =============================================================================================
@functools.lru_cache(maxsize=4)
def _model_of(scenario_json: str) -> ServiceModel:
    """One :class:`ServiceModel` per scenario per worker process (Ray reuses its workers)."""
    from .scenario import ScenarioConfig

    return ServiceModel(ScenarioConfig(**json.loads(scenario_json)))


@functools.lru_cache(maxsize=16)
def _run_of(run_dir: str, torch_threads: int) -> Any:
    import torch

    from .run import load_run

    torch.set_num_threads(torch_threads)
    return load_run(run_dir)


@functools.lru_cache(maxsize=4)
def _margins_policy(scenario_json: str, margins: tuple[float, ...], n_bs: int) -> LPMarginsPolicy:
    """One :class:`LPMarginsPolicy` per group of margins per worker, kept across seeds as the serial
    path keeps one across its seeds: its calibration and hourly mixes depend on the model, the
    margins and the hour only, and :meth:`LPMarginsPolicy.reset` re-seeds every LP per seed."""
    return LPMarginsPolicy(margins, n_bs)


def _policy(source: str, torch_threads: int) -> Any:
    """A fresh policy object of a reference name, or the deterministic actor of a run directory."""
    if source in REFERENCE_POLICIES:
        return REFERENCE_POLICIES[source]()
    return _run_of(source, torch_threads).policy()


def policy_name(source: str) -> str:
    """The name an evaluation of ``source`` carries (a reference's, or ``<algo>:<run dir name>``)."""
    if source in REFERENCE_POLICIES:
        return REFERENCE_POLICIES[source]().name
    from .run import CONFIG_FILE

    algo = json.loads((Path(source) / CONFIG_FILE).read_text())["algo"]
    return f"{algo}:{Path(source).name}"


def _evaluate_group(sources: tuple[str, ...], scenario_json: str, seed: int, n_bs: int, days: int,
                    torch_threads: int) -> list[dict]:
    """A group of policies side by side on one seed (:func:`evaluate_policies`, as the serial
    path): one SeedResult per policy, as dicts."""
    from dataclasses import asdict

    results = evaluate_policies([_policy(src, torch_threads) for src in sources], _model_of(scenario_json), [seed],
                                n_bs=n_bs, days=days)
    return [asdict(r.per_seed[0]) for r in results]


def _evaluate_margins(scenario_json: str, seed: int, n_bs: int, margins: tuple[float, ...]) -> list[dict]:
    """The class-aware LP at a group of margins side by side on one seed (:class:`LPMarginsPolicy`,
    as :func:`lp_frontier` evaluates them): one SeedResult per margin, as dicts."""
    from dataclasses import asdict

    names = [LPPolicy(per_class=True, quality_margin=m).name for m in margins]
    results = evaluate_policy_groups(_margins_policy(scenario_json, margins, n_bs), names, _model_of(scenario_json),
                                     [seed], n_bs=n_bs)
    return [asdict(r.per_seed[0]) for r in results]


# =============================================================================================
# In the driver: tasks out, results back in order
# =============================================================================================
@functools.lru_cache(maxsize=None)
def _remote(fn: Callable[..., Any]) -> Any:
    import ray

    return ray.remote(num_cpus=1, max_retries=2)(fn)


def _scenario_json(scenario: ScenarioConfig) -> str:
    """The scenario as JSON for the workers, every field naming a file made absolute (a worker's
    working directory is not the driver's)."""
    data = scenario.to_dict()
    for name, value in data.items():
        if isinstance(value, str) and Path(value).is_file():
            data[name] = str(Path(value).resolve())
    return json.dumps(data, sort_keys=True)


def _gather(refs: list[Any], progress: Any = None, description: str = "Ray tasks") -> list[Any]:
    """The tasks' results in the order of ``refs``, a progress bar advancing as each finishes."""
    import ray

    task = progress.add_task(description, total=len(refs)) if progress is not None else None
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if progress is not None:
            progress.advance(task, len(done))
    return ray.get(refs)


def evaluate_on_ray(sources: Sequence[str], scenario: ScenarioConfig, seeds: Sequence[int], n_bs: int = 8,
                    days: int = 1, torch_threads: int = 1, progress: Any = None) -> list[EvalResult]:
    """Each policy on each seed, one Ray task per (seed, group of policies side by side); equal to
    ``[evaluate_policy(p, model, seeds, ...) for p in policies]``.

    :param sources: reference policy names (:data:`REFERENCE_POLICIES`) or run directories
    :param torch_threads: torch.set_num_threads in the workers that run actors (the serial path's)
    :return: one :class:`EvalResult` per source, in order, its seeds in the order given
    """
    seeds = [int(s) for s in seeds]
    sources = [src if src in REFERENCE_POLICIES else str(Path(src).resolve()) for src in sources]
    sc = _scenario_json(scenario)
    groups = _groups(sources, len(seeds))
    remote = _remote(_evaluate_group)
    refs = [remote.remote(group, sc, seed, n_bs, days, torch_threads) for group in groups for seed in seeds]
    rows = _gather(refs, progress, f"{len(sources)} policies x {len(seeds)} seeds on Ray")
    per_source = _regroup(groups, seeds, rows)
    return [EvalResult(policy=policy_name(src), scenario=scenario.name, per_seed=per_source[i])
            for i, src in enumerate(sources)]


def _regroup(groups: list[tuple[Any, ...]], seeds: list[int], rows: list[list[dict]]) -> list[list[SeedResult]]:
    """The tasks' rows (group-major, then seed) back as one list of SeedResults per item, in seed order."""
    out: list[list[SeedResult]] = []
    for k, group in enumerate(groups):
        per_item: list[list[SeedResult]] = [[] for _ in group]
        for j in range(len(seeds)):
            for i, row in enumerate(rows[k * len(seeds) + j]):
                per_item[i].append(SeedResult(**row))
        out.extend(per_item)
    return out


def _groups(items: Sequence[Any], n_seeds: int) -> list[tuple[Any, ...]]:
    """``items`` split into contiguous groups so that seeds x groups gives about one task per CPU:
    seeds first, groups only when there are fewer seeds than CPUs. A group is evaluated side by
    side, which costs far less per item the bigger it is (all 45 LP margins on one seed took 7.7 s,
    23 of them 5.6 s, on the 2-core machine), so splitting further than the CPUs loses time."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_groups = max(1, min(len(items), math.ceil(cpus / max(n_seeds, 1))))
    size = math.ceil(len(items) / n_groups)
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


def lp_frontier_on_ray(model: ServiceModel, seeds: Sequence[int], n_bs: int = 8,
                       margins: Sequence[float] = DEFAULT_MARGINS, progress: Any = None,
                       evaluated: dict[float, EvalResult] | None = None, cache_dir: str | Path | None = None,
                       log: Callable[[str], None] | None = None) -> Frontier:
    """:func:`aolo.train.frontier.lp_frontier` (its cache too) with the margins it has to evaluate
    run on Ray, one task per (seed, group of margins side by side); the same frontier, number for number."""
    seeds = [int(s) for s in seeds]

    def evaluate_margins(todo: list[float]) -> list[EvalResult]:
        sc = _scenario_json(model.scenario)
        groups = _groups([float(m) for m in todo], len(seeds))
        remote = _remote(_evaluate_margins)
        refs = [remote.remote(sc, seed, n_bs, group) for group in groups for seed in seeds]
        rows = _gather(refs, progress, f"LP frontier: {len(todo)} margins x {len(seeds)} seeds on Ray")
        return [EvalResult(policy=LPPolicy(per_class=True, quality_margin=m).name, scenario=model.scenario.name,
                           per_seed=per_seed) for m, per_seed in zip(todo, _regroup(groups, seeds, rows))]

    return lp_frontier(model, seeds, n_bs=n_bs, margins=margins, evaluated=evaluated, cache_dir=cache_dir, log=log,
                       evaluate_margins=evaluate_margins)


def compare_runs_on_ray(model: ServiceModel, runs: Sequence[Any], seeds: Sequence[int], n_bs: int = 8,
                        torch_threads: int = 1, cache_dir: str | Path | None = None,
                        log: Callable[[str], None] | None = None) -> Any:
    """:func:`aolo.train.comparison.compare_runs` with its evaluations fanned out on Ray: the
    reference policies and runs x seeds, then the LP frontier's other margins x seeds.

    :param runs: loaded runs (:class:`aolo.train.run.TrainedRun`), evaluated from their run directories
    :param cache_dir: the LP frontier's cache (as :func:`compare_runs`); None: no cache
    :return: a :class:`aolo.train.comparison.Comparison` equal to the serial one
    """
    from aolo.console import progress

    from .comparison import Comparison
    from .policies import COMPARE_REFERENCES

    seeds = [int(s) for s in seeds]
    with progress() as bar:
        results = evaluate_on_ray([*COMPARE_REFERENCES, *(str(run.run_dir) for run in runs)], model.scenario,
                                  seeds, n_bs=n_bs, torch_threads=torch_threads, progress=bar)
        refs = results[:len(COMPARE_REFERENCES)]
        groups: dict[str, list] = {}
        for run, res in zip(runs, results[len(COMPARE_REFERENCES):]):
            groups.setdefault(run.config.algo, []).append((run, res))
        lp_at_floor = refs[COMPARE_REFERENCES.index("class-aware-lp")]  # the frontier's margin 0, as serially
        frontier = lp_frontier_on_ray(model, seeds, n_bs=n_bs, progress=bar, evaluated={0.0: lp_at_floor},
                                      cache_dir=cache_dir, log=log)
    return Comparison(groups=groups, references=refs, frontier=frontier)
