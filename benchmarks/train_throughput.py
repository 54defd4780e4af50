"""Training throughput of SDRL (PopSAN actor) and SAC (MLP actor) side by side in one run, same
settings: environment steps per second of ``SAC.learn`` on the default scenario (simulator,
replay, one gradient step per vector step, all included), and gradient steps per second.

Usage: python benchmarks/train_throughput.py [--threads 1] [--n-envs 16] [--steps 16000]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from aolo.train.sac_policy import make_sac
from aolo.train.sb3_vec_env import ServiceVecEnv
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel
from aolo.train.train_config import TrainConfig
from aolo.train.training import sac_kwargs


def learn_rate(algo: str, env: ServiceVecEnv, config: TrainConfig, steps: int) -> tuple[float, float]:
    """(env steps/s, gradient steps/s) of ``steps`` environment steps after the random warm-up."""
    model = make_sac(algo, env, seed=0, popsan=config.popsan if algo == "sdrl" else None, **sac_kwargs(config))
    model.learn(config.learning_starts + 2 * env.num_envs)  # fill the buffer past learning_starts
    updates0 = model._n_updates
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    dt = time.perf_counter() - t0
    return steps / dt, (model._n_updates - updates0) / dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--n-envs", type=int, default=TrainConfig().n_envs, help="base stations stepped at once")
    parser.add_argument("--steps", type=int, default=16_000, help="environment steps to time per algorithm")
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="minibatch per gradient step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(n_envs=args.n_envs, batch_size=args.batch_size, learning_starts=2_000)
    model = ServiceModel(get_scenario("default"))
    rates = {}
    for algo in ("sdrl", "sac"):
        env = ServiceVecEnv(model.scenario, n_envs=args.n_envs, model=model, seed=0)
        rates[algo] = learn_rate(algo, env, config, args.steps)
    print(f"training throughput (default scenario, n_envs {args.n_envs}, batch {args.batch_size}, "
          f"{config.gradient_steps} gradient step per vector step, torch threads {args.threads} of "
          f"{os.cpu_count()} cores, torch {torch.__version__})")
    for algo, (env_rate, grad_rate) in rates.items():
        print(f"  {algo:4s}: {env_rate:8,.0f} env steps/s  {grad_rate:7,.1f} gradient steps/s")
    print(f"  ratio sac / sdrl: {rates['sac'][0] / rates['sdrl'][0]:.2f} x")


if __name__ == "__main__":
    main()
