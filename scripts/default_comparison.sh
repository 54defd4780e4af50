#!/usr/bin/env bash
# The default comparison: SDRL and SAC, 3 seeds each, 150k steps, two runs at a time (1 torch thread each),
# then evaluation on EVAL_SEEDS beside the reference policies and the class-aware LP's frontier.
# Every training setting is TrainConfig's default.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/final
COMMON="--scenario default --steps 150000 --torch-threads 1 --out-dir runs/final"
start=$(date +%s)
printf '%s\n' "sdrl 0" "sdrl 1" "sdrl 2" "sac 0" "sac 1" "sac 2" |
  xargs -P 2 -L 1 sh -c ".venv/bin/aolo train --algo \$0 --seed \$1 $COMMON > runs/final/train_\$0_\$1.log 2>&1"
echo "training wall: $(( $(date +%s) - start )) s"
.venv/bin/aolo compare runs/final/default__* --out runs/final/curves.png \
  --frontier-plot runs/final/quality_vs_carbon.png --json runs/final/compare.json
echo "total wall: $(( $(date +%s) - start )) s"
