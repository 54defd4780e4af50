"""``aolo sweep``: algorithms x seeds x config overrides (or a search) as Ray Tune trials, each one a
run of the same :func:`aolo.train.training.train` that ``aolo train`` calls.

    sweep file -> trial configs (validated) -> [validation frontier of the LP] -> Tuner (new or
    restored) -> trials: train() reporting each validation to Tune -> results table, sweep_results.json
    -> (search) the chosen trial evaluated once on the evaluation seeds

The sweep folder (``out_dir``) holds::

    sweep.json                   the validated sweep (a restart must match it)
    trials/<algo>__seed<s>__<digest>/<scenario>__<algo>__<seed>__<time>/   one run directory per trial,
                                 exactly as aolo train writes it (the digest is over the trial's config)
    tune/<name>/                 Ray Tune's experiment state (Tuner.restore reads it)
    validation_frontiers.json    the class-aware LP's frontier on the validation seeds (metric excess_vs_lp_frac)
    sweep_results.json           one row per trial: its overrides, run directory, status, retries, last metrics
    chosen_evaluation.json       (search) the chosen trial on the evaluation seeds, once

Resume, in two layers. Tune's own state (``Tuner.restore``) says which trials finished, which were
stopped early, and what the search had drawn, so a restarted sweep skips finished trials and a
search goes on from where it was. What an unfinished trial continues from is aolo's checkpoint in
its run directory (``train(resume=...)``), found again by the trial's config (the folder's
digest): the run directory stays exactly what ``aolo train`` and ``aolo train --resume`` write,
and nothing is copied into Tune's checkpoints. The same holds when Tune retries a trial whose
worker died (``max_failures``).

Validation seeds only: trials validate on their config's ``eval_seeds`` (the validation seeds) and
the search optimises that; the evaluation seeds (:data:`aolo.train.seeds.EVAL_SEEDS`) are used
once, on the chosen config, after the search.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aolo.runtime.atomic_files import write_json_atomic

from .seeds import EVAL_SEEDS
from .sweep_config import METRICS, SweepConfig, trial_key
from .train_config import TrainConfig

__all__ = ["SweepPlan", "SweepReport", "TrialRow", "run_sweep", "run_trial", "trial_metrics", "find_run"]

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "sweep_results.json"
FRONTIERS_FILE = "validation_frontiers.json"
CHOSEN_FILE = "chosen_evaluation.json"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"


# =============================================================================================
# The plan: what every trial needs, sent to the workers with the trainable
# =============================================================================================
@dataclass(frozen=True)
class SweepPlan:
    """The sweep as the trials see it.

    :param sweep: the validated sweep
    :param folder: the sweep folder, absolute (on a cluster, on storage every node sees)
    :param frontiers: validation-frontier key -> its points as dicts (metric excess_vs_lp_frac)
    """

    sweep: SweepConfig
    folder: Path
    frontiers: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def trials_dir(self) -> Path:
        return self.folder / TRIALS_DIR

    def overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's config overrides from its Tune parameters: the grid point, and the searched
        values (choices of lists travel as JSON text, see :meth:`Distribution.to_tune`)."""
        out = dict(json.loads(params["point"]))
        for name, dist in (self.sweep.search.space.items() if self.sweep.search else []):
            value = params[name]
            if dist.choice is not None and isinstance(value, str) and any(isinstance(c, (list, dict))
                                                                          for c in dist.choice):
                value = json.loads(value)
            out[name] = value
        return out

    def trial(self, params: dict[str, Any]) -> TrainConfig:
        """The trial's config, ``out_dir`` its own folder."""
        config = self.sweep.trial_config(self.overrides(params))
        return config.with_(out_dir=str(self.trials_dir / trial_key(config)))

    def frontier_for(self, config: TrainConfig) -> Any:
        """The LP frontier on the config's validation seeds and base stations (None: not needed)."""
        points = self.frontiers.get(frontier_key(config))
        if points is None:
            return None
        from .frontier import Frontier, FrontierPoint

        return Frontier.from_points([FrontierPoint(**p) for p in points])


def frontier_key(config: TrainConfig) -> str:
    """What a validation frontier depends on among a trial's fields: scenario, seeds, base stations."""
    return json.dumps({"scenario": config.scenario, "seeds": list(config.eval_seeds), "n_bs": config.eval_n_bs})


# =============================================================================================
# In the worker: one trial
# =============================================================================================
def find_run(folder: Path, recover: bool = False) -> tuple[Path | None, int]:
    """The run directory in a trial's folder and its checkpoint's step (0: none yet).

    A folder holds one run; should a kill have left a second (a restart that began before the
    first had a checkpoint), the one furthest along is taken.

    :param recover: first finish or discard a checkpoint that a kill interrupted
        (:func:`aolo.train.checkpoint.recover_checkpoint`); only when no process writes the run
    """
    from .checkpoint import recover_checkpoint
    from .run import STATE_FILE, is_run_dir

    best: tuple[Path | None, int] = (None, 0)
    if not folder.is_dir():
        return best
    for run_dir in sorted(p for p in folder.iterdir() if is_run_dir(p)):
        if recover:
            recover_checkpoint(run_dir)
        state = run_dir / STATE_FILE
        step = int(json.loads(state.read_text())["num_timesteps"]) if state.is_file() else 0
        if best[0] is None or step > best[1]:
            best = (run_dir, step)
    return best


def trial_metrics(evaluation: dict[str, Any], frontier: Any, metric: str) -> dict[str, Any]:
    """What a trial reports to Tune after a validation: the step, the summary row's figures and,
    with a frontier, the excess over the LP at equal quality (``inf`` or ``-inf``, the worst for
    the metric's direction, when the run's quality is outside the LP's range).

    :param evaluation: a line of evaluations.jsonl (``step``, ``summary``, ``result``)
    """
    from .evaluate import EvalResult

    summary = evaluation["summary"]
    out: dict[str, Any] = {"step": int(evaluation["step"])}
    out.update({k: float(summary[k]) for k in METRICS if k in summary})
    if frontier is not None:
        excess = frontier.excess_frac(EvalResult.from_dict(evaluation["result"]))
        out["excess_vs_lp_frac"] = excess if math.isfinite(excess) else math.inf
    if metric not in out:
        raise ValueError(f"metric {metric!r}: not in the validation's figures ({', '.join(out)})")
    if METRICS[metric] == "max" and not math.isfinite(out[metric]):
        out[metric] = -math.inf
    return out


def run_trial(params: dict[str, Any], plan: SweepPlan) -> None:
    """Ray Tune's trainable: the trial's run, new, resumed from its checkpoint, or already finished.

    Reports every validation (:func:`trial_metrics`); a finished run reports its last one again.
    """
    from ray import tune

    from .run import read_evaluations
    from .training import train

    config = plan.trial(params)
    folder = Path(config.out_dir)
    frontier = plan.frontier_for(config)
    key = folder.name

    def report(evaluation: dict[str, Any]) -> None:
        tune.report({**trial_metrics(evaluation, frontier, plan.sweep.metric), "trial_key": key})

    run_dir, step = find_run(folder, recover=True)  # this trial is the only writer of its folder
    if run_dir is not None and step >= config.steps:
        evaluations = read_evaluations(run_dir)
        if evaluations:
            report(evaluations[-1])
            return
    if run_dir is not None and step == 0:
        shutil.rmtree(run_dir)  # died before its first checkpoint: nothing to continue from
        run_dir = None
    train(config, resume=run_dir, show_progress=False, on_validation=report)


# =============================================================================================
# In the driver
# =============================================================================================
@dataclass
class TrialRow:
    """One trial's outcome."""

    trial: str
    overrides: dict[str, Any]
    run_dir: str | None
    status: str
    """done, stopped early (ASHA), failed, or not started"""
    retries: int
    metrics: dict[str, Any]


@dataclass
class SweepReport:
    """What a sweep did.

    :param rows: one per trial, in Tune's order
    :param best: the best trial by the metric (None: no trial reported)
    :param chosen_evaluation: (search) the chosen trial on the evaluation seeds: summary rows of
        the trial and of BASE, the seeds
    """

    sweep: SweepConfig
    folder: Path
    rows: list[TrialRow]
    best: TrialRow | None
    chosen_evaluation: dict[str, Any] | None
    ray_start_s: float


def _check_restart(folder: Path, sweep: SweepConfig) -> None:
    path = folder / SWEEP_FILE
    data = sweep.model_dump(mode="json")
    if path.is_file():
        if json.loads(path.read_text()) != data:
            raise ValueError(f"{folder}: a sweep with another sweep file ran here ({path}); give another out_dir")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, data)


def _validation_frontiers(sweep: SweepConfig, configs: list[TrainConfig], folder: Path,
                          log: Any) -> dict[str, list[dict[str, float]]]:
    """The class-aware LP's frontier on each distinct (scenario, validation seeds, base stations)
    of the trials, computed on Ray once per sweep folder and kept in validation_frontiers.json."""
    if sweep.metric != "excess_vs_lp_frac":
        return {}
    from dataclasses import asdict

    from .evaluation_fanout import lp_frontier_on_ray
    from .scenario import get_scenario
    from .simulator import ServiceModel

    path = folder / FRONTIERS_FILE
    stored = json.loads(path.read_text()) if path.is_file() else {}
    for config in configs:
        key = frontier_key(config)
        if key in stored:
            continue
        log(f"the class-aware LP's frontier on the validation seeds {list(config.eval_seeds)} "
            f"({config.scenario}, {config.eval_n_bs} BS), once for the sweep")
        frontier = lp_frontier_on_ray(ServiceModel(get_scenario(config.scenario)), config.eval_seeds,
                                      n_bs=config.eval_n_bs)
        stored[key] = [asdict(p) for p in frontier.points]
        write_json_atomic(path, stored)
    return stored


def _param_space(sweep: SweepConfig) -> dict[str, Any]:
    from ray import tune

    points = [json.dumps(p, sort_keys=True) for p in sweep.grid_points()]
    if sweep.search is None:
        return {"point": tune.grid_search(points)}
    return {"point": points[0], **{name: d.to_tune() for name, d in sweep.search.space.items()}}


def _tune_config(sweep: SweepConfig, configs: list[TrainConfig]) -> Any:
    from ray import tune

    # reuse_actors: a worker process that finished a trial runs the next one, so each trial does not
    # pay a fresh process's imports (torch, SB3: 10-17 s each on the 2-core machine under load);
    # train() seeds everything itself, so a trial trains the same in a used process as in a new one
    kw: dict[str, Any] = dict(max_concurrent_trials=sweep.max_concurrent or None, reuse_actors=True)
    if sweep.search is None:
        return tune.TuneConfig(**kw)
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    search = sweep.search
    scheduler = None
    if search.asha is not None:
        scheduler = ASHAScheduler(time_attr="step", max_t=max(c.steps for c in configs),
                                  grace_period=search.asha.grace_period_steps,
                                  reduction_factor=search.asha.reduction_factor)
    return tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, num_samples=search.num_samples,
                           search_alg=OptunaSearch(seed=search.seed), scheduler=scheduler, **kw)


def _make_tuner(plan: SweepPlan, configs: list[TrainConfig], callbacks: list[Any]) -> Any:
    """A new Tuner, or the sweep's own restored (``Tuner.restore``) when it ran here before."""
    from ray import tune

    sweep = plan.sweep
    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan), {"cpu": sweep.cpus_per_trial})
    experiment = plan.folder / TUNE_DIR / sweep.name
    if tune.Tuner.can_restore(str(experiment)):
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=_param_space(sweep))
    run_config = tune.RunConfig(name=sweep.name, storage_path=str(plan.folder / TUNE_DIR), verbose=0,
                                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                                callbacks=callbacks)
    return tune.Tuner(trainable, param_space=_param_space(sweep), tune_config=_tune_config(sweep, configs),
                      run_config=run_config)


def _rows(plan: SweepPlan, grid: Any, retries: dict[str, int]) -> list[TrialRow]:
    rows = []
    previous = {}
    path = plan.folder / RESULTS_FILE
    if path.is_file():
        previous = {r["trial"]: r for r in json.loads(path.read_text())["trials"]}
    # Tune's order of trials (their folders are numbered), which a restored ResultGrid does not keep
    for result in sorted(grid, key=lambda r: Path(r.path).name if r.path else ""):
        config = plan.trial(result.config)
        key = Path(config.out_dir).name
        run_dir, step = find_run(Path(config.out_dir))
        metrics = {k: v for k, v in (result.metrics or {}).items() if k in METRICS or k == "step"}
        if result.error is not None:
            status = "failed"
        elif run_dir is None:
            status = "not started"
        else:
            status = "done" if step >= config.steps else "stopped early"
        rows.append(TrialRow(trial=key, overrides=plan.overrides(result.config), status=status,
                             run_dir=str(run_dir) if run_dir is not None else None,
                             retries=max(retries.get(key, 0), int(previous.get(key, {}).get("retries", 0))),
                             metrics=metrics))
    return rows


def _best(rows: list[TrialRow], metric: str) -> TrialRow | None:
    scored = [r for r in rows if metric in r.metrics and r.status != "failed" and math.isfinite(r.metrics[metric])]
    if not scored:
        return None
    sign = 1.0 if METRICS[metric] == "min" else -1.0
    return min(scored, key=lambda r: sign * r.metrics[metric])


def _evaluate_chosen(plan: SweepPlan, best: TrialRow, log: Any) -> dict[str, Any]:
    """The chosen trial's run on the evaluation seeds (8 BS x 1 day each) beside BASE, once: kept in
    chosen_evaluation.json and read back on a restart."""
    path = plan.folder / CHOSEN_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("run_dir") == best.run_dir:
            return stored
    from .evaluate import summary_row
    from .evaluation_fanout import evaluate_on_ray
    from .run import load_run
    from .scenario import get_scenario

    run = load_run(best.run_dir)
    log(f"evaluating the chosen trial {best.trial} once on the evaluation seeds {list(EVAL_SEEDS)}")
    base, chosen = evaluate_on_ray(["base", best.run_dir], get_scenario(run.config.scenario), EVAL_SEEDS)
    out = {"trial": best.trial, "run_dir": best.run_dir, "overrides": best.overrides, "seeds": list(EVAL_SEEDS),
           "chosen_on": f"validation seeds {list(run.config.eval_seeds)} ({plan.sweep.metric}); the evaluation "
                        "seeds never entered the search",
           "summary": summary_row(chosen, base), "base_summary": summary_row(base, base),
           "result": chosen.to_dict()}
    write_json_atomic(path, out)
    return out


def run_sweep(sweep: SweepConfig, folder: str | Path | None = None, address: str | None = None,
              num_cpus: int | None = None, show_progress: bool = True, log: Any = None) -> SweepReport:
    """Run (or resume) a sweep and return what it did.

    :param folder: the sweep folder (default: the sweep's ``out_dir``)
    :param address: a Ray cluster (``auto``, ``ray://HOST:PORT``); None starts a local Ray
    :param num_cpus: CPUs of the local Ray (default: the machine's)
    :param show_progress: the rich progress line (trials done, running, failed, best so far)
    :param log: one-line messages (default: stderr)
    :raises ValueError: a bad sweep, another sweep in this folder, Ray missing or unreachable (one line)
    """
    import sys
    import time

    from .ray_cluster import ray_session
    from .sweep_progress import SweepProgress, live_progress

    log = log or (lambda message: print(message, file=sys.stderr))
    # Tune's legacy reporter honours verbose=0; the new one prints its own tables whatever the
    # verbosity, and the sweep shows its own progress
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    folder = Path(folder if folder is not None else sweep.out_dir).resolve()
    configs = sweep.check_trials(str(folder / SWEEP_FILE))
    _check_restart(folder, sweep)
    t0 = time.perf_counter()
    with ray_session(address, num_cpus):
        ray_start_s = time.perf_counter() - t0
        plan = SweepPlan(sweep=sweep, folder=folder,
                         frontiers=_validation_frontiers(sweep, configs, folder, log))
        progress = SweepProgress(metric=sweep.metric, mode=sweep.mode)
        tuner = _make_tuner(plan, configs, [progress])
        with live_progress(progress, enabled=show_progress):
            grid = tuner.fit()
        rows = _rows(plan, grid, progress.retries_by_key())
        best = _best(rows, sweep.metric)
        chosen = None
        if sweep.search is not None and sweep.search.evaluate_best and best is not None and best.run_dir:
            chosen = _evaluate_chosen(plan, best, log)
    write_json_atomic(folder / RESULTS_FILE, {
        "metric": sweep.metric, "mode": sweep.mode, "best": best.trial if best else None,
        "trials": [row.__dict__ for row in rows]})
    return SweepReport(sweep=sweep, folder=folder, rows=rows, best=best, chosen_evaluation=chosen,
                       ray_start_s=ray_start_s)
