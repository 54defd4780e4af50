"""Speed of the request sources, against their targets, side by side in one run: loading Sprout's
trace (target: under 2 s) and sampling 100,000 synthetic requests (target: under 0.1 s).

Usage: python benchmarks/request_sources.py [--shared ../shared/data] [--repeats 3] [--smoke]
The trace part is skipped, with the reason, when the shared Sprout files are absent.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from aolo.shared_data import shared_data_dir
from aolo.train.requests import SyntheticRequests, TraceRequests

TRACE_TARGET_S = 2.0
SAMPLE_TARGET_S = 0.1
N_SAMPLED = 100_000


def best_of(repeats: int, fn) -> float:
    """Fastest of ``repeats`` calls of ``fn``, wall seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    default_shared = str(shared_data_dir())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=default_shared, help="the shared data dir (holds sprout/)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the fastest is reported")
    parser.add_argument("--smoke", action="store_true",
                        help="one repetition, and the trace only if present (checks that the benchmark runs)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats = 1

    print(f"cpu cores {os.cpu_count()}; numpy only (no torch); best of {args.repeats}")
    source, rng = SyntheticRequests(), np.random.default_rng(10)
    classes = rng.integers(0, 6, N_SAMPLED)
    sample_s = best_of(args.repeats, lambda: source.sample(rng, classes))
    print(f"synthetic: {N_SAMPLED:,} requests sampled in {sample_s:.4f} s "
          f"(target {SAMPLE_TARGET_S} s, {SAMPLE_TARGET_S / sample_s:.1f}x under it)")

    requests, judgements = Path(args.shared) / "sprout" / "requests.csv", Path(args.shared) / "sprout" / "judgements.csv"
    if not (requests.is_file() and judgements.is_file()):
        print(f"trace: skipped, {requests} or {judgements} not found")
        return
    load_s = best_of(args.repeats, lambda: TraceRequests.from_csv(requests, judgements))
    print(f"trace: {requests.name} + {judgements.name} loaded in {load_s:.3f} s "
          f"(target {TRACE_TARGET_S} s, {TRACE_TARGET_S / load_s:.1f}x under it)")


if __name__ == "__main__":
    main()
