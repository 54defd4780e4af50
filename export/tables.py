"""Rich tables of the export stage: parity per target and the fixed-point quantisation report,
printed by ``aolo export``/``aolo verify`` and copied into the pipeline's report."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from .parity import ParityResult

__all__ = ["parity_table", "quantization_table"]


def parity_table(results: Sequence[ParityResult], title: str) -> Table:
    """Parity results, one row per target and reference."""
    table = Table(title=title)
    for col in ("target", "reference", "observations", "max |Δaction|", "spike agreement", "criterion", "result", "s"):
        table.add_column(col, justify="left" if col in ("target", "reference", "criterion") else "right")
    for p in results:
        spikes = "" if p.spike_agreement_frac is None else f"{100 * p.spike_agreement_frac:.3f}%"
        table.add_row(p.target, p.reference, str(p.n_obs), f"{p.max_abs_action_diff:.2e}", spikes, p.criterion,
                      "[green]pass[/green]" if p.passed else "[red]FAIL[/red]", f"{p.seconds:.1f}")
    return table


def quantization_table(report: dict[str, Any]) -> Table:
    """Per-layer quantisation errors and spike agreement, with the policy-level effect as caption.

    :param report: :func:`aolo.export.quantization.report_dict`'s output
    """
    table = Table(title="quantisation to Loihi 2 fixed point")
    for col in ("layer", "weight exp", "weight rel. RMS err", "threshold max rel. err", "spike agreement",
                "rate float", "rate fixed"):
        table.add_column(col, justify="right")
    for r in report["layers"]:
        table.add_row(r["layer"], str(r["weight_exp"]), f"{100 * r['weight_rel_rms_frac']:.2f}%",
                      f"{100 * r['threshold_max_rel_frac']:.3f}%", f"{100 * r['spike_agreement_frac']:.2f}%",
                      f"{100 * r['float_rate_frac']:.1f}%", f"{100 * r['fixed_rate_frac']:.1f}%")
    p = report.get("policy")
    if p:
        table.caption = (f"policy: {p['fixed_carbon_g_per_request']:.5f} g/request fixed vs "
                         f"{p['float_carbon_g_per_request']:.5f} float ({100 * p['carbon_rel_diff_frac']:+.2f}%), "
                         f"quality {100 * p['fixed_quality_vs_base_frac']:.1f}% vs {100 * p['float_quality_vs_base_frac']:.1f}%")
    return table
