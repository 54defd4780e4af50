"""Scaling on Ray, side by side in one run: the same four short training runs one after another in
this process and as an ``aolo sweep`` on a local Ray (wall time, speed-up, Ray's start-up), and the
class-aware LP's frontier serial against ``--ray`` (:func:`aolo.train.evaluation_fanout.lp_frontier_on_ray`).

Order: the four runs sequentially (:func:`aolo.train.training.train`, as ``aolo train``), the frontier
serially (:func:`aolo.train.frontier.lp_frontier`, no cache), then a local Ray is started (timed on
its own: the start-up), the four runs as a sweep (:func:`aolo.train.sweep.run_sweep`: worker
processes, their imports, Tune's bookkeeping all included), the frontier on Ray twice (the first
call starts the task workers, which then import aolo; the second finds them warm), and the frontier
serially again (the serial figure is the mean of the two, since other load drifts over a run). The sweep's runs
are checked to end at the same validation figures as the sequential ones, and the frontiers to be
equal, number for number: a speed-up of a different computation would mean nothing.

The runs validate once at their end on one validation seed and one base station (periodic
validation off), as ``benchmarks/train_throughput.py`` does, so that the runs' training dominates.
``--smoke`` runs two of them (one per algorithm) for 200 steps on the tiny scenario.

Usage: python benchmarks/sweep_scaling.py [--cpus N] [--steps 6000] [--scenario default]
       [--frontier-seeds 1001,1002] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from aolo.train.frontier import DEFAULT_MARGINS, lp_frontier
from aolo.train.scenario import get_scenario
from aolo.train.seeds import VALIDATION_SEEDS
from aolo.train.simulator import ServiceModel
from aolo.train.sweep import run_sweep
from aolo.train.sweep_config import sweep_from_dict
from aolo.train.training import train

RUNS = [("sdrl", 0), ("sdrl", 1), ("sac", 0), ("sac", 1)]
"""The four runs: two seeds of each algorithm (the grid of the sweep)."""


def base_config(args: argparse.Namespace) -> dict:
    """TrainConfig fields of every run (sequential and swept alike)."""
    return dict(scenario=args.scenario, steps=args.steps, n_envs=args.n_envs, learning_starts=args.learning_starts,
                batch_size=args.batch_size, eval_every_steps=0, eval_seeds=list(VALIDATION_SEEDS[:1]), eval_n_bs=1,
                log_every_steps=args.log_every, torch_threads=1)


def last_validation(run_dir: Path) -> dict:
    """The summary row of a run's last validation."""
    return json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])["summary"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray")
    parser.add_argument("--steps", type=int, default=6_000, help="environment steps per run")
    parser.add_argument("--n-envs", type=int, default=16, help="base stations stepped at once")
    parser.add_argument("--learning-starts", type=int, default=1_000, help="random warm-up steps")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch per gradient step")
    parser.add_argument("--log-every", type=int, default=2_000, help="environment steps between progress rows")
    parser.add_argument("--scenario", default="default", help="scenario preset")
    parser.add_argument("--frontier-seeds", default="1001,1002", help="seeds of the LP frontier")
    parser.add_argument("--frontier-n-bs", type=int, default=8, help="base stations per frontier seed")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds of work on the tiny scenario, one run per algorithm (checks that the benchmark "
                             "runs, times nothing)")
    args = parser.parse_args(argv)
    margins = DEFAULT_MARGINS
    if args.smoke:
        args.scenario, args.steps, args.n_envs, args.learning_starts, args.batch_size, args.log_every = (
            "tiny", 200, 4, 50, 32, 100)
        args.frontier_seeds, args.frontier_n_bs, margins = "1001", 1, DEFAULT_MARGINS[::9]
    runs = RUNS[::2] if args.smoke else RUNS  # smoke: sdrl and sac, seed 0 (a 2 x 1 grid)
    frontier_seeds = [int(s) for s in args.frontier_seeds.split(",")]
    import torch

    from aolo.train.evaluation_fanout import lp_frontier_on_ray
    from aolo.train.ray_cluster import ray_session

    torch.set_num_threads(1)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        base = base_config(args)
        t0 = time.perf_counter()
        sequential = {}
        for algo, seed in runs:
            config = sweep_from_dict({"base": base, "grid": {"algo": [algo], "seed": [seed]}}, "benchmark") \
                .trial_config({"algo": algo, "seed": seed}).with_(out_dir=str(folder / "sequential"))
            sequential[(algo, seed)] = last_validation(train(config, show_progress=False))
        figures["sequential_s"] = time.perf_counter() - t0

        model = ServiceModel(get_scenario(args.scenario))
        t0 = time.perf_counter()
        serial_frontier = lp_frontier(model, frontier_seeds, n_bs=args.frontier_n_bs, margins=margins)
        figures["frontier_serial_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with ray_session(num_cpus=args.cpus):
            figures["ray_start_s"] = time.perf_counter() - t0
            sweep = sweep_from_dict({"name": "scaling", "out_dir": str(folder / "sweep"), "metric": "carbon_g_per_request",
                                     "max_failures": 0, "base": base,
                                     "grid": {"algo": list(dict.fromkeys(a for a, _ in runs)),
                                              "seed": list(dict.fromkeys(s for _, s in runs))}}, "benchmark")
            t0 = time.perf_counter()
            report = run_sweep(sweep, show_progress=False, log=lambda _: None)
            figures["sweep_s"] = time.perf_counter() - t0
            for name in ("frontier_ray_cold_s", "frontier_ray_warm_s"):  # first call: worker processes start
                t0 = time.perf_counter()
                ray_frontier = lp_frontier_on_ray(model, frontier_seeds, n_bs=args.frontier_n_bs, margins=margins)
                figures[name] = time.perf_counter() - t0
        t0 = time.perf_counter()  # serial again, after: load from others drifts over the run
        lp_frontier(model, frontier_seeds, n_bs=args.frontier_n_bs, margins=margins)
        figures["frontier_serial_s"] = (figures["frontier_serial_s"] + time.perf_counter() - t0) / 2
    for row in report.rows:
        key = (row.overrides["algo"], row.overrides["seed"])
        if row.status != "done" or row.metrics["carbon_g_per_request"] != sequential[key]["carbon_g_per_request"]:
            raise SystemExit(f"sweep trial {row.trial} ({row.status}) does not match its sequential run")
    if ray_frontier.to_dict() != serial_frontier.to_dict():
        raise SystemExit("the frontier on Ray differs from the serial one")
    n_runs = len(runs)
    print(f"sweep scaling ({args.scenario} scenario, {n_runs} runs of {args.steps} steps, n_envs {args.n_envs}, "
          f"local Ray with {args.cpus} CPUs of {os.cpu_count()} cores, torch threads 1; the swept runs end at the "
          f"sequential runs' validation figures and the frontiers are equal)")
    print(f"  {n_runs} runs sequential: {figures['sequential_s']:8.1f} s")
    print(f"  {n_runs} runs as a sweep:  {figures['sweep_s']:8.1f} s  speed-up {figures['sequential_s'] / figures['sweep_s']:.2f} x "
          f"(Ray start-up {figures['ray_start_s']:.1f} s on top: "
          f"{figures['sequential_s'] / (figures['sweep_s'] + figures['ray_start_s']):.2f} x with it)")
    serial_s = figures["frontier_serial_s"]
    print(f"  LP frontier ({len(margins)} margins x {len(frontier_seeds)} seeds x {args.frontier_n_bs} BS): serial "
          f"{serial_s:.1f} s (mean of one before and one after), on Ray {figures['frontier_ray_warm_s']:.1f} s with "
          f"its workers warm, speed-up {serial_s / figures['frontier_ray_warm_s']:.2f} x; first call "
          f"{figures['frontier_ray_cold_s']:.1f} s ({serial_s / figures['frontier_ray_cold_s']:.2f} x: worker "
          f"processes start and import aolo)")
    print(f"  Ray start-up: {figures['ray_start_s']:.1f} s")
    return figures


if __name__ == "__main__":
    main()
