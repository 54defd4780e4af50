"""Training throughput of SDRL (PopSAN actor) and SAC (MLP actor) side by side in one run, same
settings: environment steps per second of a real training run (``aolo.train.training.train``: the
simulator, replay, one gradient step per vector step, the run's callback, all included) once past
the random warm-up, and gradient steps per second.

Each algorithm trains in a temporary run directory with periodic validation off (the run's opening
and closing validations use one validation seed and one base station); the rates come
from the run's own ``progress.csv`` (``global_step``, ``time/wall_s``, ``train/n_updates``) between
the first row after the warm-up and the last row before the closing validation, so neither the
warm-up nor any evaluation is timed. Going through ``train`` rather than building the SB3 model here
keeps the benchmark measuring what ``aolo train`` runs, whatever replay buffer or callback it uses.

Usage: python benchmarks/train_throughput.py [--threads 1] [--n-envs 16] [--steps 16000] [--smoke]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import torch

from aolo.train.seeds import VALIDATION_SEEDS
from aolo.train.training import TrainConfig, train


def rates_from_progress(progress_csv: Path, after_step: int) -> tuple[float, float, int]:
    """(env steps/s, gradient steps/s, steps timed) between the first logged row past
    ``after_step`` and the last row before the run's final one (which includes its validation).

    :raises ValueError: fewer than two such rows (the run was too short for its log interval)
    """
    with open(progress_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("global_step")]
    timed = [r for r in rows[:-1] if float(r["global_step"]) > after_step]
    if len(timed) < 2:
        raise ValueError(f"{progress_csv}: need two log rows after step {after_step} before the last, "
                         f"got {len(timed)}; give more --steps")
    first, last = timed[0], timed[-1]
    steps = float(last["global_step"]) - float(first["global_step"])
    wall_s = float(last["time/wall_s"]) - float(first["time/wall_s"])
    updates = float(last["train/n_updates"]) - float(first["train/n_updates"])
    return steps / wall_s, updates / wall_s, int(steps)


def learn_rate(algo: str, args: argparse.Namespace, out_dir: Path) -> tuple[float, float, int]:
    """Train ``algo`` for the warm-up plus ``args.steps`` and return its rates (see
    :func:`rates_from_progress`)."""
    config = TrainConfig(algo=algo, scenario=args.scenario, seed=0, steps=args.learning_starts + args.steps,
                         n_envs=args.n_envs, batch_size=args.batch_size, learning_starts=args.learning_starts,
                         eval_every_steps=0, eval_seeds=VALIDATION_SEEDS[:1], eval_n_bs=1,
                         log_every_steps=args.log_every, torch_threads=args.threads, device=args.device,
                         out_dir=str(out_dir))
    run_dir = train(config, show_progress=False)
    return rates_from_progress(run_dir / "progress.csv", after_step=args.learning_starts)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float, int]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device of the networks")
    parser.add_argument("--n-envs", type=int, default=TrainConfig().n_envs, help="base stations stepped at once")
    parser.add_argument("--steps", type=int, default=16_000, help="environment steps to time per algorithm")
    parser.add_argument("--learning-starts", type=int, default=2_000, help="random warm-up steps (not timed)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="minibatch per gradient step")
    parser.add_argument("--log-every", type=int, default=1_000, help="environment steps between progress rows")
    parser.add_argument("--scenario", default="default", help="scenario preset")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds of work on the tiny scenario (checks that the benchmark runs, times nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scenario, args.n_envs, args.steps, args.learning_starts, args.batch_size, args.log_every = (
            "tiny", 4, 160, 32, 32, 40)
    rates = {}
    with tempfile.TemporaryDirectory() as d:
        for algo in ("sdrl", "sac"):
            rates[algo] = learn_rate(algo, args, Path(d))
    print(f"training throughput ({args.scenario} scenario, n_envs {args.n_envs}, batch {args.batch_size}, "
          f"one gradient step per vector step, torch threads {args.threads} of {os.cpu_count()} cores, "
          f"torch {torch.__version__})")
    for algo, (env_rate, grad_rate, timed) in rates.items():
        print(f"  {algo:4s}: {env_rate:8,.0f} env steps/s  {grad_rate:7,.1f} gradient steps/s  ({timed} steps timed)")
    print(f"  ratio sac / sdrl: {rates['sac'][0] / rates['sdrl'][0]:.2f} x")
    return rates


if __name__ == "__main__":
    main()
