"""Figures of evaluation results (matplotlib, Agg backend; nothing here runs in the env)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .evaluate import EvalResult

LEVEL_COLOURS = ("#4c72b0", "#55a868", "#c44e52")
REFERENCE_COLOURS = {"oracle": "#2ca02c", "class-aware-lp": "#9467bd", "sprout-lp": "#ff7f0e", "co2-only": "#8c564b",
                     "base": "#7f7f7f"}
"""Colours of the reference policies in both plots."""
ALGO_COLOURS = {"sdrl": "#c44e52", "sac": "#4c72b0"}
"""Colours of the learned runs by algorithm in both plots."""


def plot_level_mix_vs_ci(results: Sequence[EvalResult], path: str | Path) -> Path:
    """One panel per policy: stacked share of L0/L1/L2 per UTC hour, with the carbon intensity."""
    from aolo.figures import pyplot, save_figure

    plt = pyplot()

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
    return save_figure(fig, path)


def plot_carbon_by_policy(results: Sequence[EvalResult], base: EvalResult, path: str | Path) -> Path:
    """Horizontal bars of carbon per request by policy, stacked by component, with the quality
    against BASE written beside each bar."""
    from aolo.figures import pyplot, save_figure

    plt = pyplot()

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
    return save_figure(fig, path)


def plot_learning_curves(groups: dict, model, path: Path) -> Path:
    """Carbon per request and quality vs BASE against training steps on the validation seeds: per
    algorithm the mean over runs with a min-max band, the reference policies (evaluated on the same
    validation seeds and base stations) as horizontal lines."""
    from aolo.figures import pyplot, save_figure

    plt = pyplot()
    import numpy as np

    from .evaluate import evaluate_policies, summary_row
    from .policies import REFERENCE_POLICIES
    from .policies import COMPARE_REFERENCES
    from .run import read_evaluations

    first = next(iter(groups.values()))[0][0].config
    val_seeds, val_bs = list(first.eval_seeds), first.eval_n_bs
    refs = dict(zip(COMPARE_REFERENCES, evaluate_policies([REFERENCE_POLICIES[name]() for name in COMPARE_REFERENCES],
                                                          model, val_seeds, n_bs=val_bs)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keys = (("carbon_g_per_request", "carbon per request, g", 1.0), ("quality_vs_base_frac", "quality vs BASE, %", 100.0))
    for ax, (key, label, scale) in zip(axes, keys):
        for algo, items in groups.items():
            curves = [read_evaluations(run.run_dir) for run, _ in items]
            curves = [c for c in curves if c]
            if not curves:
                continue
            grid = np.array([e["step"] for e in curves[0]], dtype=float)
            ys = np.array([np.interp(grid, [e["step"] for e in c], [scale * e["summary"][key] for e in c])
                           for c in curves])
            colour = ALGO_COLOURS.get(algo)
            ax.plot(grid, ys.mean(axis=0), color=colour, lw=2, label=f"{algo} (mean of {len(curves)})")
            ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=colour, alpha=0.2)
        for name, res in refs.items():
            ax.axhline(scale * summary_row(res, refs["base"])[key], ls="--", lw=1.2, color=REFERENCE_COLOURS[name],
                       label=name)
        ax.set_xlabel("training steps (requests)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Learning curves on validation seeds {val_seeds} ({val_bs} BS x 1 day), scenario {model.scenario.name}")
    return save_figure(fig, path)


def plot_quality_carbon(comparison, path: str | Path) -> Path:
    """Left: quality against BASE (x, %) against carbon per request (y, g, log): the class-aware
    LP's frontier over quality margins as a line, every learned run as a dot, the reference
    policies as labelled squares. Right: the same policies' carbon over the frontier at their own
    quality (%, 0 = the frontier; below 0 beats the LP), which the log scale cannot show, with the
    SDRL and SAC lines of :func:`~aolo.train.comparison.comparison_quality_adjusted_gap` where it
    can be fitted."""
    from aolo.figures import pyplot, save_figure

    from .comparison import comparison_quality_adjusted_gap

    plt = pyplot()
    frontier = comparison.frontier
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    hull, pts = frontier.hull, frontier.points
    lp_colour = REFERENCE_COLOURS["class-aware-lp"]
    ax.plot([100 * p.quality_vs_base_frac for p in hull], [p.carbon_g_per_request for p in hull], "-",
            color=lp_colour, lw=1.5, label="class-aware LP frontier (quality margins)")
    ax.plot([100 * p.quality_vs_base_frac for p in pts], [p.carbon_g_per_request for p in pts], ".",
            color=lp_colour, ms=5)
    bx.axhline(0.0, color=lp_colour, lw=1.5, label="class-aware LP frontier")
    bx.plot([100 * p.quality_vs_base_frac for p in pts],
            [100 * (p.carbon_g_per_request / frontier.carbon_at(p.quality_vs_base_frac) - 1) for p in pts], ".",
            color=lp_colour, ms=5, label="LP at one margin")
    for algo, items in comparison.groups.items():
        q = [100 * res.quality_vs_base_frac for _, res in items]
        ax.scatter(q, [res.carbon_mean_g() for _, res in items], color=ALGO_COLOURS.get(algo), s=40, zorder=3,
                   label=f"{algo} ({len(items)} run(s))")
        bx.scatter(q, comparison.excess_pct([res for _, res in items]), color=ALGO_COLOURS.get(algo), s=40,
                   zorder=3, label=f"{algo} ({len(items)} run(s))")
    fit = comparison_quality_adjusted_gap(comparison)
    if fit is not None:
        for algo in (fit.a, fit.b):
            q = np.array([100 * res.quality_vs_base_frac for _, res in comparison.groups[algo]])
            qs = np.array([q.min(), q.max()])
            bx.plot(qs, fit.fitted_excess_pct(algo, qs), "--", color=ALGO_COLOURS.get(algo), lw=1,
                    label=f"{algo}, fitted (one slope)")
    for r in comparison.references:
        x, y, e = 100 * r.quality_vs_base_frac, r.carbon_mean_g(), comparison.excess_pct([r])[0]
        colour = REFERENCE_COLOURS.get(r.policy, "k")
        ax.scatter([x], [y], marker="s", color=colour, s=30, zorder=3)
        ax.annotate(r.policy, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if np.isfinite(e) and abs(e) < 10:
            bx.scatter([x], [e], marker="s", color=colour, s=30, zorder=3)
            bx.annotate(r.policy, (x, e), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("quality vs BASE, %")
    ax.set_ylabel("carbon per request, g")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Quality against carbon")
    bx.set_xlabel("quality vs BASE, %")
    bx.set_ylabel("carbon vs LP frontier at equal quality, %")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8, loc="best")
    bx.set_title("Against the class-aware LP at equal quality")
    return save_figure(fig, path)
