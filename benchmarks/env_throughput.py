"""Request-steps per second of the environment: the single Gymnasium env against the vectorised
batch simulator, measured side by side in one run.

Usage: python benchmarks/env_throughput.py [--batch 1024] [--steps 300] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from aolo.train.env import LLMServiceEnv, LLMServiceVectorEnv
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel


def single_env_rate(model: ServiceModel, steps: int) -> float:
    env = LLMServiceEnv(model.scenario, model=model)
    env.reset(seed=0)
    action = np.array([0.0, 0.0], dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    return steps / (time.perf_counter() - t0)


def vector_env_rate(model: ServiceModel, batch: int, steps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    venv = LLMServiceVectorEnv(model.scenario, num_envs=batch, model=model)
    venv.reset(seed=0)
    reset_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, batch, 2)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)
    return batch * steps / (time.perf_counter() - t0), reset_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024, help="base stations stepped at once")
    parser.add_argument("--steps", type=int, default=300, help="vector steps to time")
    parser.add_argument("--single-steps", type=int, default=20_000, help="single-env steps to time")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds of work (checks that the benchmark runs; the rates mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.steps, args.single_steps = 16, 20, 200
    model = ServiceModel(get_scenario("default"))
    single = single_env_rate(model, args.single_steps)
    vector, reset_s = vector_env_rate(model, args.batch, args.steps)
    print(f"env throughput (default scenario, numpy, {os.cpu_count()} cores, one process)")
    print(f"  single env (LLMServiceEnv)             : {single:12,.0f} request-steps/s")
    print(f"  vector env (batch {args.batch:5d}, autoreset) : {vector:12,.0f} request-steps/s"
          f"  (first reset of {args.batch} days: {reset_s:.2f} s)")
    print(f"  ratio vector / single                  : {vector / single:12.1f} x")


if __name__ == "__main__":
    main()
