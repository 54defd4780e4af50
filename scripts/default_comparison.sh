#!/usr/bin/env bash
# The default comparison: SDRL and SAC, 3 seeds each, 150k steps, as one aolo sweep on a local Ray
# with the machine's cores (two runs at a time on 2 cores, 1 torch thread each), then evaluation on
# EVAL_SEEDS beside the reference policies and the class-aware LP's frontier. Every training
# setting is TrainConfig's default; each run directory is what `aolo train --algo A --seed S
# --scenario default --steps 150000` writes (tests/test_sweep.py checks the runs bit for bit).
# Started again, the sweep skips finished runs and continues the others from their checkpoints.
# On a cluster: add --address auto (docs/sweeps.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
.venv/bin/aolo sweep --algo sdrl --algo sac --seeds 0,1,2 --scenario default --steps 150000 --out runs/final
echo "training wall: $(( $(date +%s) - start )) s"
.venv/bin/aolo compare runs/final/trials/*/default__* --out runs/final/curves.png \
  --frontier-plot runs/final/quality_vs_carbon.png --json runs/final/compare.json --cache runs/final/.cache
echo "total wall: $(( $(date +%s) - start )) s"
