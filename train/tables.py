"""Rich tables of the training stage's results, printed by the CLI and copied into the pipeline's
report (:func:`aolo.markdown.table_to_markdown`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.table import Table

from aolo.runtime.carbon import CarbonBreakdown

from .evaluate import COMPONENTS, EvalResult, summary_row

if TYPE_CHECKING:
    from .replay import ReplayResult

__all__ = ["results_table", "replay_table"]


def results_table(results: Sequence[EvalResult], title: str) -> Table:
    """Evaluation results, one row per policy, savings paired against BASE (which must be among them).

    :param results: evaluations of several policies on the same seeds, BASE among them
    :param title: the table's title
    """
    base = next(r for r in results if r.policy == "base")
    table = Table(title=title)
    for col in ("policy", "carbon g/req", "inference", "radio", "actor", "embodied", "saving vs BASE",
                "quality vs BASE", "late/outage", "outage", "floor viol."):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        row = summary_row(r, base)
        spread = f" [{100 * row['saving_min_frac']:.1f}, {100 * row['saving_max_frac']:.1f}]" if len(r.per_seed) > 1 else ""
        table.add_row(
            r.policy, f"{row['carbon_g_per_request']:.4f}", f"{row['inference_g_per_request']:.4f}",
            f"{row['radio_g_per_request']:.4f}", f"{row['actor_g_per_request']:.2e}",
            f"{row['embodied_gpu_g_per_request'] + row['embodied_bs_g_per_request']:.4f}",
            f"{100 * row['saving_vs_base_frac']:.1f}%{spread}", f"{100 * row['quality_vs_base_frac']:.1f}%",
            f"{100 * row['latency_violation_frac']:.2f}%", f"{100 * row['outage_frac']:.2f}%",
            f"{100 * row['floor_violation_frac']:.1f}%",
        )
    table.caption = ("carbon modelled by the simulator from the profiles (inference, radio, embodied); the actor's "
                     "estimated from op counts priced on a hardware profile")
    return table


def replay_table(result: "ReplayResult") -> Table:
    """The ledger's carbon report beside the evaluation of the same policy on the same seed."""
    totals = result.ledger_totals
    ev = result.evaluation.per_seed[0]
    n = totals["count"]
    table = Table(title=f"replay through the runtime ({result.backend}/{result.precision}, actor energy charged for "
                        f"{result.actor_hardware}: {result.actor_energy_j:.3g} J/decision), ledger {result.ledger_path}")
    for col in ("component", "ledger total (g)", "ledger per request (g)", "evaluate total (g)", "rel. difference",
                "kind"):
        table.add_column(col, justify="left" if col in ("component", "kind") else "right")
    kinds = totals.get("kinds", {})
    for c in COMPONENTS + ("total_g",):
        a, b = totals["sum"][c], ev.carbon_sum_g[c]
        part = c.split("_")[0]
        kind = (", ".join(f"{k} ({v} rows)" if len(kinds[part]) > 1 else k for k, v in kinds[part].items())
                if kinds.get(part) else CarbonBreakdown.MODEL_KINDS[c])
        table.add_row(c, f"{a:.6g}", f"{a / max(n, 1):.6g}", f"{b:.6g}", f"{abs(a - b) / max(abs(b), 1e-300):.1e}", kind)
    levels = ", ".join(f"{k} {v}" for k, v in totals.get("by_level", {}).items())
    table.caption = (f"{n} requests in the ledger ({ev.n_requests} evaluated); levels {levels}; "
                     f"fallbacks {result.fallbacks}; outages {int(totals.get('outages', 0))}")
    return table
