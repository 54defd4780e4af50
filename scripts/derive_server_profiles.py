"""Print the LLM-server figures aolo ships, derived from Sprout's per-request measurements.

Usage: python scripts/derive_server_profiles.py [REQUESTS_CSV]  (default: sprout/requests.csv in the
shared data dir, ``$AOLO_SHARED_DATA`` or ``shared/data`` beside the checkout)
Only rows with measured output tokens enter the per-token ratios (ratio of sums).
"""

import csv
import sys
from collections import defaultdict

from aolo.shared_data import shared_data_dir

path = sys.argv[1] if len(sys.argv) > 1 else shared_data_dir() / "sprout" / "requests.csv"
sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
with open(path, newline="") as f:
    for row in csv.DictReader(f):
        if not row["output_tokens"]:
            continue
        model = "llama2-7b" if row["level"] == "7B" else "llama2-13b"
        s = sums[model]
        s[0] += float(row["output_tokens"])
        s[1] += float(row["energy_wh"])
        s[2] += float(row["latency_s"])
        s[3] += 1
for model, (tokens, energy_wh, latency_s, n) in sorted(sums.items()):
    print(f"{model}: rows {n}, energy per output token {energy_wh / tokens * 1000:.4f} mWh, "
          f"latency per output token {latency_s / tokens * 1000:.3f} ms, mean GPU power {energy_wh * 3600 / latency_s:.1f} W")
