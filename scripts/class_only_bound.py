"""How much a policy that sees only the task class can gain over the class-aware LP.

Evaluates the class-Lagrangian rule (aolo.train.policies.ClassLagrangianPolicy) over a range of
multipliers beside the LP's quality-carbon frontier, on the validation seeds. Prints each rule's
quality, floor violations and carbon excess over the LP at equal quality (docs/model.md section 7).

    .venv/bin/python scripts/class_only_bound.py [--scenario default] [--seeds 501,502]
"""

from __future__ import annotations

import argparse

from aolo.train.evaluate import evaluate_policy
from aolo.train.frontier import lp_frontier
from aolo.train.policies import ClassLagrangianPolicy
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel
from aolo.train.seeds import VALIDATION_SEEDS

MULTIPLIERS = (1.85, 1.9, 1.95, 2.0, 2.05, 2.1, 2.2, 2.3, 2.6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seeds", default=",".join(map(str, VALIDATION_SEEDS)))
    parser.add_argument("--n-bs", type=int, default=8)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    model = ServiceModel(get_scenario(args.scenario))
    frontier = lp_frontier(model, seeds, n_bs=args.n_bs)
    print(f"scenario {args.scenario}, seeds {seeds}, {args.n_bs} BS x 1 day")
    print("| multiplier | carbon g/req | quality vs BASE | floor viol. | vs LP at equal quality |")
    print("|---|---|---|---|---|")
    for m in MULTIPLIERS:
        r = evaluate_policy(ClassLagrangianPolicy(m), model, seeds, n_bs=args.n_bs)
        print(f"| {m:g} | {r.carbon_mean_g():.5f} | {100 * r.quality_vs_base_frac:.2f}% | "
              f"{100 * r.floor_violation_frac:.1f}% | {100 * frontier.excess_frac(r):+.2f}% |", flush=True)


if __name__ == "__main__":
    main()
