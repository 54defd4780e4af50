"""Rich tables of the export stage: parity per target and the fixed-point quantisation report,
printed by ``aolo export``/``aolo verify`` and copied into the pipeline's report."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from .parity import ParityResult

__all__ = ["parity_table", "quantization_table", "resources_table"]


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


def resources_table(resources: dict[str, Any], title: str) -> Table:
    """A network's Loihi 2 resource use (``LoihiResources.to_dict()``), one row per layer and the chip's limits."""
    limits = resources["limits"]
    table = Table(title=title)
    for col in ("layer", "inputs (fan-in)", "neurons", "synapses", "cores", "neurons/core", "synapses/core",
                "memory/core", "fan-out", "routes/core", "weight bits", "threshold bits"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in resources["layers"]:
        table.add_row(r["name"], str(r["n_in"]), str(r["neurons"]), str(r["synapses"]), str(r["cores"]),
                      str(r["neurons_per_core"]), str(r["synapses_per_core"]),
                      f"{r['memory_per_core_bits'] / 8192:.1f} KiB", str(r["fan_out"]),
                      str(r["output_axons_per_core"]), str(r["weight_bits"]), str(r["threshold_bits"]))
    table.add_row("limit", str(limits["input_axons_per_core"]), "", "", str(limits["cores_per_chip"]),
                  str(limits["neurons_per_core"]), "", f"{limits['memory_per_core_bits'] / 8192:.0f} KiB", "",
                  str(limits["output_axons_per_core"]), str(limits["weight_bits"]), str(limits["threshold_bits"]),
                  style="dim")
    verdict = "[green]fits[/green]" if resources["fits"] else "[red]does not fit[/red]: " + "; ".join(resources["violations"])
    table.caption = (f"{resources['chip']}: {resources['cores']} of {limits['cores_per_chip']} cores, "
                     f"{resources['neurons']} neurons, {resources['synapses']} synapses; {verdict}")
    return table
