"""Figures of evaluation results (matplotlib, Agg backend; nothing here runs in the env)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .evaluate import EvalResult

LEVEL_COLOURS = ("#4c72b0", "#55a868", "#c44e52")


def plot_level_mix_vs_ci(results: Sequence[EvalResult], path: str | Path) -> Path:
    """One panel per policy: stacked share of L0/L1/L2 per UTC hour, with the carbon intensity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False, sharey=True)
    hours = np.arange(24)
    for ax, res in zip(axes.ravel(), results):
        mix = res.level_mix_by_hour()
        bottom = np.zeros(24)
        for lvl, colour in enumerate(LEVEL_COLOURS):
            ax.bar(hours, mix[:, lvl], bottom=bottom, color=colour, width=0.9, label=f"L{lvl}")
            bottom += mix[:, lvl]
        ax.set_title(res.policy)
        ax.set_xlabel("hour of day (UTC)")
        ax.set_ylim(0, 1)
        ax2 = ax.twinx()
        ci = res.ci_by_hour()
        ax2.plot(hours, ci, color="black", lw=1.8, label="CI")
        ax2.set_ylabel("gCO2e/kWh")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("level share")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Directive level mix against grid carbon intensity over the day")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_carbon_by_policy(results: Sequence[EvalResult], base: EvalResult, path: str | Path) -> Path:
    """Horizontal bars of carbon per request by policy, stacked by component, with the quality
    against BASE written beside each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import COMPONENTS, summary_row

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(results) + 1.5))
    y = np.arange(len(results))
    left = np.zeros(len(results))
    for i, comp in enumerate(COMPONENTS):
        vals = np.array([r.carbon_mean_g(comp) for r in results])
        ax.barh(y, vals, left=left, color=f"C{i}", label=comp.removesuffix("_g"))
        left += vals
    for yi, r in zip(y, results):
        row = summary_row(r, base)
        ax.text(left[yi], yi, f"  quality {100 * row['quality_vs_base_frac']:.0f}%", va="center", fontsize=8)
    ax.set_yticks(y, [r.policy for r in results])
    ax.invert_yaxis()
    ax.set_xlabel("carbon per request (gCO2e)")
    ax.set_xlim(0, left.max() * 1.35)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Carbon per request by policy (evaluation seeds)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
