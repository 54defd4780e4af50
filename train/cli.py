"""Training-stage commands: ``aolo evaluate`` and ``aolo reproduce-sprout`` (train and compare
join them when SDRL lands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

EVAL_SEEDS = (1001, 1002, 1003)
"""Seeds for evaluation tables; training and its periodic evaluation never use them."""

# Sprout (Li et al., EMNLP 2024), Table: carbon saving and normalised quality of Sprout vs always-L0
SPROUT_PUBLISHED = {"US-TEX-ERCO": (0.520, 0.944), "US-CAL-CISO": (0.583, 0.934), "AU-SA": (0.438, 0.968)}


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        _fail(f"--seeds: {text!r} is not a comma-separated list of integers")
    if not seeds:
        _fail("--seeds: give at least one seed")
    return seeds


def _console():
    """A rich console that keeps wide tables readable when the output is a pipe or a file."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


def results_table(results, title: str):
    """A rich table of evaluation results, BASE first and savings paired against it."""
    from rich.table import Table

    from .evaluate import summary_row

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
    return table


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        policy: List[str] = typer.Option(
            [], "--policy", "-p",
            help="reference policy (base, co2-only, sprout-lp, class-aware-lp, static-mix, oracle, random); "
                 "repeat for several; default: all but random. BASE is always run for the savings."),
        scenario: str = typer.Option("default", "--scenario", help="scenario preset: default, tiny, sprout-repro"),
        grid: Optional[str] = typer.Option(None, "--grid", help="grid zone or Electricity Maps CSV (overrides the preset)"),
        requests_csv: Optional[Path] = typer.Option(None, "--requests", help="Sprout requests.csv for trace replay"),
        judgements_csv: Optional[Path] = typer.Option(None, "--judgements", help="Sprout judgements.csv (with --requests)"),
        workload_csv: Optional[Path] = typer.Option(None, "--workload", help="hourly job counts, e.g. pai_hourly_jobs.csv"),
        seeds: str = typer.Option(",".join(map(str, EVAL_SEEDS)), "--seeds", help="comma-separated evaluation seeds"),
        n_bs: int = typer.Option(8, "--n-bs", min=1, help="base stations per seed"),
        days: int = typer.Option(1, "--days", min=1, help="episodes (days) per base station"),
        out: Optional[Path] = typer.Option(None, "--out", help="write the results as JSON"),
        plot: Optional[Path] = typer.Option(None, "--plot", help="write a PNG of the level mix against CI over the day"),
    ) -> None:
        """Run policies over a scenario and print carbon per request with its breakdown, saving and
        quality against BASE (paired on the same seeds), latency/outage and floor violations.

        Example: aolo evaluate --scenario default -p sprout-lp -p class-aware-lp --plot mix.png
        """
        from .evaluate import evaluate_policy
        from .policies import REFERENCE_POLICIES
        from .scenario import get_scenario
        from .simulator import ServiceModel

        names = list(policy) or [p for p in REFERENCE_POLICIES if p != "random"]
        unknown = [p for p in names if p not in REFERENCE_POLICIES]
        if unknown:
            _fail(f"--policy: unknown {', '.join(unknown)} (known: {', '.join(REFERENCE_POLICIES)})")
        if "base" not in names:
            names.insert(0, "base")
        seed_list = _parse_seeds(seeds)
        try:
            sc = get_scenario(scenario, grid=grid, requests_csv=str(requests_csv) if requests_csv else None,
                              judgements_csv=str(judgements_csv) if judgements_csv else None,
                              workload_csv=str(workload_csv) if workload_csv else None)
            model = ServiceModel(sc)
        except (ValueError, OSError) as e:
            _fail(str(e))
        results = []
        with _progress() as progress:
            for name in names:
                results.append(evaluate_policy(REFERENCE_POLICIES[name](), model, seed_list, n_bs=n_bs, days=days,
                                               progress=progress))
        _console().print(results_table(results, f"scenario {sc.name}, grid {sc.grid}, seeds {seed_list}, "
                                               f"{n_bs} BS x {days} day(s)"))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"scenario": sc.to_dict(), "results": [r.to_dict() for r in results]}, indent=1))
            typer.echo(f"wrote {out}")
        if plot is not None:
            from .plots import plot_level_mix_vs_ci

            typer.echo(f"wrote {plot_level_mix_vs_ci(results, plot)}")

    @app.command("reproduce-sprout")
    def reproduce_sprout(
        shared: Path = typer.Option(Path("../shared/data/sprout"), "--shared", help="folder with Sprout's data"),
        seeds: str = typer.Option("1,2,3,4,5", "--seeds", help="comma-separated seeds"),
        base_rate_per_s: float = typer.Option(0.02, "--rate", help="requests/s (Sprout's load level is not published)"),
        out: Optional[Path] = typer.Option(None, "--out", help="write the per-zone results as JSON"),
    ) -> None:
        """Sprout's evaluation: real grid traces (2023, hours 800-1519), trace-replayed prompts,
        PAI workload, radio off, annual CI normalisation, xi = 0.1; BASE, Sprout LP and the
        class-aware LP per zone, next to Sprout's published figures."""
        from rich.table import Table

        from .evaluate import evaluate_policy, summary_row
        from .policies import REFERENCE_POLICIES
        from .scenario import get_scenario
        from .simulator import ServiceModel

        files = {z: shared / "grid" / f"{z}_2023_hourly.csv" for z in SPROUT_PUBLISHED}
        for f in [*files.values(), shared / "requests.csv", shared / "judgements.csv", shared / "pai_hourly_jobs.csv"]:
            if not f.is_file():
                _fail(f"{f}: not found (give the Sprout data folder with --shared)")
        seed_list = _parse_seeds(seeds)
        console = _console()
        dump = {}
        with _progress() as progress:
            for zone, path in files.items():
                sc = get_scenario("sprout-repro", grid=str(path), requests_csv=str(shared / "requests.csv"),
                                  judgements_csv=str(shared / "judgements.csv"),
                                  workload_csv=str(shared / "pai_hourly_jobs.csv"), base_rate_per_s=base_rate_per_s)
                model = ServiceModel(sc)
                res = {name: evaluate_policy(REFERENCE_POLICIES[name](), model, seed_list, n_bs=1, progress=progress)
                       for name in ("base", "sprout-lp", "class-aware-lp")}
                table = Table(title=f"{zone}: 720 h from hour 800 of 2023, {len(seed_list)} seeds")
                for col in ("policy", "saving vs BASE: mean [min, max]", "quality vs BASE: mean [min, max]", "published (Sprout)"):
                    table.add_column(col)
                for name, r in res.items():
                    row = summary_row(r, res["base"])
                    pub = SPROUT_PUBLISHED[zone]
                    table.add_row(
                        name,
                        f"{100 * row['saving_vs_base_frac']:.1f}% [{100 * row['saving_min_frac']:.1f}, {100 * row['saving_max_frac']:.1f}]",
                        f"{100 * row['quality_vs_base_frac']:.1f}% [{100 * row['quality_min_frac']:.1f}, {100 * row['quality_max_frac']:.1f}]",
                        f"{100 * pub[0]:.1f}% / {100 * pub[1]:.1f}%" if name == "sprout-lp" else "")
                    dump.setdefault(zone, {})[name] = row
                console.print(table)
        if out is not None:
            out.write_text(json.dumps(dump, indent=1))
            typer.echo(f"wrote {out}")
