"""``aolo sweep``: the command line of :mod:`aolo.train.sweep` (Ray is imported only when it runs)."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, List, Optional

import typer

from aolo.console import console

__all__ = ["sweep_command", "sweep_table"]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _sweep_data(sweep_file: Path | None, config_file: Path | None, options: dict[str, Any]) -> tuple[dict, str]:
    """The sweep file's tables with the options over them, and what they came from (for messages)."""
    from .sweep_config import read_sweep_tables
    from .train_config import read_config_file

    data: dict[str, Any] = read_sweep_tables(sweep_file) if sweep_file is not None else {}
    base = dict(data.get("base", {})) if isinstance(data.get("base", {}), dict) else data.get("base")
    grid = dict(data.get("grid", {})) if isinstance(data.get("grid", {}), dict) else data.get("grid")
    if config_file is not None and isinstance(base, dict):
        base = {**read_config_file(config_file), **base}
    for key in ("algo", "seed"):
        if options.get(key) and isinstance(grid, dict):
            grid[key] = options[key]
    for key in ("scenario", "steps"):
        if options.get(key) is not None and isinstance(base, dict):
            base[key] = options[key]
    for key in ("out_dir", "metric", "max_failures"):
        if options.get(key) is not None:
            data[key] = options[key]
    data.update(base=base, grid=grid)
    sources = [str(p) for p in (sweep_file, config_file) if p is not None]
    return data, " and ".join(sources + ["the options"]) if sources else "the options"


def sweep_command(
    sweep_file: Optional[Path] = typer.Argument(None, help="sweep file (TOML: tables base, grid, search; "
                                                           "docs/sweeps.md); or describe the sweep by options"),
    out: Optional[Path] = typer.Option(None, "--out", help="the sweep folder (trials/, tune/, results)",
                                       show_default="the file's out_dir, else runs/sweep"),
    address: Optional[str] = typer.Option(None, "--address", help="a Ray cluster: auto, or ray://HOST:PORT",
                                          show_default="a local Ray on this machine's cores"),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray",
                                           show_default="all cores"),
    algo: List[str] = typer.Option([], "--algo", help="sdrl or sac; repeat for both (grid.algo)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="comma-separated training seeds (grid.seed)"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="scenario preset of every trial (base.scenario)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="training steps of every trial (base.steps)"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TrainConfig fields of every trial (TOML or "
                                                                      "JSON, as aolo train --config), under the base table"),
    metric: Optional[str] = typer.Option(None, "--metric", help="validation metric the best trial is chosen by"),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", min=0,
                                               help="retries of a trial whose worker dies"),
    verbose: bool = typer.Option(False, "--verbose", help="show tracebacks on errors"),
) -> None:
    """Run training runs as Ray Tune trials: algorithms x seeds x config overrides (a grid), or a
    search (Optuna's TPE with ASHA) over named config fields on the validation seeds. Each trial
    writes one run directory exactly as aolo train does, under the sweep folder's trials/. Started
    again, a sweep skips finished trials and continues the others from their checkpoints; a trial
    whose worker dies is retried. After a search, the chosen trial is evaluated once on the
    evaluation seeds.

    Example: aolo sweep --algo sdrl --algo sac --seeds 0,1,2 --steps 150000 --out runs/final
    """
    from .sweep_config import sweep_from_dict

    options = dict(algo=list(algo), seed=None, scenario=scenario, steps=steps,
                   out_dir=str(out) if out is not None else None, metric=metric, max_failures=max_failures)
    try:
        if seeds is not None:
            try:
                options["seed"] = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"--seeds: {seeds!r} is not a comma-separated list of integers") from None
        data, source = _sweep_data(sweep_file, config_file, options)
        sweep = sweep_from_dict(data, source)
        from .sweep import run_sweep

        report = run_sweep(sweep, address=address, num_cpus=num_cpus)
    except (ValueError, OSError) as e:
        if verbose:
            traceback.print_exc()
        _fail(str(e))
    out_console = console()
    out_console.print(sweep_table(report))
    if report.best is not None:
        out_console.print(f"best on the validation seeds by {report.sweep.metric}: {report.best.trial} "
                          f"({report.best.metrics.get(report.sweep.metric):.4g}) -> {report.best.run_dir}")
    chosen = report.chosen_evaluation
    if chosen is not None:
        s, b = chosen["summary"], chosen["base_summary"]
        out_console.print(
            f"chosen on the {chosen['chosen_on']}; evaluated once on the evaluation seeds {chosen['seeds']} "
            f"(8 BS x 1 day each): carbon {s['carbon_g_per_request']:.4f} g/request (BASE "
            f"{b['carbon_g_per_request']:.4f}), saving {100 * s['saving_vs_base_frac']:.1f}%, quality "
            f"{100 * s['quality_vs_base_frac']:.1f}% of BASE; {report.folder / 'chosen_evaluation.json'}")
    failed = [r for r in report.rows if r.status == "failed"]
    typer.echo(f"wrote {report.folder} (Ray started in {report.ray_start_s:.1f} s)")
    if failed:
        _fail(f"{len(failed)} trial(s) failed after their retries: {', '.join(r.trial for r in failed)} "
              f"(Tune's error files under {report.folder / 'tune'})")


def sweep_table(report: Any) -> Any:
    """A rich table of a sweep's trials: overrides, status, retries, last validation figures."""
    from rich.table import Table

    metric = report.sweep.metric
    table = Table(title=f"sweep {report.sweep.name}: {len(report.rows)} trials, metric {metric} "
                        f"({report.sweep.mode}) on the validation seeds")
    for col in ("trial", "overrides", "status", "retries", "step", metric, "carbon g/req", "quality vs BASE"):
        table.add_column(col, justify="left" if col in ("trial", "overrides", "status") else "right")
    for row in report.rows:
        m = row.metrics
        mark = " *" if report.best is not None and row.trial == report.best.trial else ""
        table.add_row(row.trial + mark, ", ".join(f"{k}={v}" for k, v in row.overrides.items()), row.status,
                      str(row.retries), str(m.get("step", "-")),
                      f"{m[metric]:.4g}" if metric in m else "-",
                      f"{m['carbon_g_per_request']:.4f}" if "carbon_g_per_request" in m else "-",
                      f"{100 * m['quality_vs_base_frac']:.1f}%" if "quality_vs_base_frac" in m else "-")
    return table
