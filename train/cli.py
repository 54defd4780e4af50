"""Training-stage commands: ``aolo evaluate``, ``aolo reproduce-sprout``, ``aolo train`` and
``aolo compare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from aolo.console import console, progress
from aolo.shared_data import shared_data_dir
from aolo.train.seeds import EVAL_SEEDS

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


def _is_run_dir(path: str) -> bool:
    from .run import is_run_dir

    return is_run_dir(path)


def _learned_policy(run_dir: str):
    """The deterministic actor of a training run as an evaluable policy (exits on a bad run dir)."""
    import torch

    from .run import load_run

    torch.set_num_threads(1)
    try:
        return load_run(run_dir).policy()
    except ValueError as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    register_training(app)
    register_replay(app)

    @app.command("evaluate")
    def evaluate(
        policy: List[str] = typer.Option(
            [], "--policy", "-p",
            help="reference policy (base, co2-only, sprout-lp, class-aware-lp, static-mix, oracle, random); "
                 "or a training run directory (its deterministic actor); repeat for several; default: all but "
                 "random. BASE is always run for the savings."),
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
        unknown = [p for p in names if p not in REFERENCE_POLICIES and not _is_run_dir(p)]
        if unknown:
            _fail(f"--policy: unknown {', '.join(unknown)} (known: {', '.join(REFERENCE_POLICIES)}, "
                  f"or a training run directory)")
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
        with progress() as bar:
            for name in names:
                pol = REFERENCE_POLICIES[name]() if name in REFERENCE_POLICIES else _learned_policy(name)
                results.append(evaluate_policy(pol, model, seed_list, n_bs=n_bs, days=days, progress=bar))
        console().print(results_table(results, f"scenario {sc.name}, grid {sc.grid}, seeds {seed_list}, "
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
        shared: Path = typer.Option(shared_data_dir() / "sprout", "--shared",
                                    help="folder with Sprout's data",
                                    show_default="sprout/ in $AOLO_SHARED_DATA, else in shared/data beside the checkout"),
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
        out_console = console()
        dump = {}
        with progress() as bar:
            for zone, path in files.items():
                sc = get_scenario("sprout-repro", grid=str(path), requests_csv=str(shared / "requests.csv"),
                                  judgements_csv=str(shared / "judgements.csv"),
                                  workload_csv=str(shared / "pai_hourly_jobs.csv"), base_rate_per_s=base_rate_per_s)
                model = ServiceModel(sc)
                res = {name: evaluate_policy(REFERENCE_POLICIES[name](), model, seed_list, n_bs=1, progress=bar)
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
                out_console.print(table)
        if out is not None:
            out.write_text(json.dumps(dump, indent=1))
            typer.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# aolo train, aolo compare
# ---------------------------------------------------------------------------------------------
"""Reference policies printed beside the learned ones by ``aolo compare``."""


def _cli_option(name: str, hint: object, default: object, doc: str):
    """An ``inspect.Parameter`` carrying a ``typer.Option`` for one config field: tuples become
    comma-separated strings, Literal strings plain strings, ``X | None`` Optional[X], or, when
    the default is not None, a string that is an X or 'none' (parsed by :func:`_config_from_cli`)."""
    import inspect
    import typing

    flag = "--" + name.replace("_", "-")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        annotation, default = str, ",".join(str(v) for v in default)  # type: ignore[union-attr]
    elif origin is typing.Literal:
        annotation = str
    elif type(None) in args and default is not None:
        annotation, default = str, str(default)  # so that 'none' can override a set default
    elif type(None) in args:
        annotation = Optional[next(a for a in args if a is not type(None))]
    else:
        annotation = hint
    from rich.markup import escape

    option = typer.Option(default, flag, help=escape(doc), show_default=True)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _config_from_cli(values: dict) -> "object":
    """A TrainConfig from the ``train`` command's option values (``popsan_*`` grouped)."""
    import typing
    from dataclasses import fields

    from .popsan_config import PopSANConfig
    from .training import TrainConfig

    def coerce(cls, name, value):
        hint = typing.get_type_hints(cls)[name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) is tuple:
            kind = args[0]
            try:
                return tuple(kind(v) for v in str(value).split(",") if v.strip())
            except ValueError:
                _fail(f"--{name.replace('_', '-')}: {value!r} is not a comma-separated list of {kind.__name__}")
        if type(None) in args and isinstance(value, str):
            kind = next(a for a in args if a is not type(None))
            if value.strip().lower() == "none":
                return None
            try:
                return kind(value)
            except ValueError:
                _fail(f"--{name.replace('_', '-')}: {value!r} is not a {kind.__name__} or 'none'")
        return value

    popsan = {f.name: coerce(PopSANConfig, f.name, values[f"popsan_{f.name}"]) for f in fields(PopSANConfig)}
    kw = {f.name: coerce(TrainConfig, f.name, values[f.name]) for f in fields(TrainConfig) if f.name != "popsan"}
    return TrainConfig(popsan=popsan, **kw)


def register_training(app: typer.Typer) -> None:
    """``aolo train`` (options generated from TrainConfig and PopSANConfig, help from their field
    docs) and ``aolo compare``."""
    import inspect
    import typing
    from dataclasses import MISSING, fields

    from .popsan_config import PopSANConfig
    from .training import TrainConfig, field_docs

    def train_cmd(**values) -> None:
        """Train SDRL (PopSAN actor) or SAC (MLP actor) and write runs/<scenario>__<algo>__<seed>__<time>/
        with config.json, versions.json, the SB3 checkpoint, the actor spec, progress.csv and TensorBoard logs.

        Example: aolo train --algo sdrl --scenario default --seed 1 --steps 150000
        """
        import traceback

        from .training import train

        verbose, resume = values.pop("verbose"), values.pop("resume")
        steps = values["steps"]
        try:
            if resume is not None and steps is None:
                from .run import CONFIG_FILE

                saved = json.loads((resume / CONFIG_FILE).read_text()) if (resume / CONFIG_FILE).is_file() else {}
                values["steps"] = saved.get("steps", TrainConfig.steps)
            elif steps is None:
                values["steps"] = TrainConfig.steps
            config = _config_from_cli(values)
            run_dir = train(config, resume=resume)
        except (ValueError, OSError) as e:
            if verbose:
                traceback.print_exc()
            _fail(str(e))
        typer.echo(f"wrote {run_dir}")

    docs, pdocs = field_docs(TrainConfig), field_docs(PopSANConfig)
    hints, phints = typing.get_type_hints(TrainConfig), typing.get_type_hints(PopSANConfig)
    params = []
    for f in fields(TrainConfig):
        if f.name == "popsan":
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if f.name == "steps":
            params.append(_cli_option("steps", Optional[int], None,
                                      docs["steps"] + f" [default: {default}; with --resume: the run's own]"))
            continue
        params.append(_cli_option(f.name, hints[f.name], default, docs[f.name]))
    for f in fields(PopSANConfig):
        params.append(_cli_option(f"popsan_{f.name}", phints[f.name], f.default, "PopSAN: " + pdocs[f.name]))
    params.append(inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                    default=typer.Option(None, "--resume", help="continue a run directory from its "
                                                         "last checkpoint up to --steps in total")))
    params.append(inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                    default=typer.Option(False, "--verbose", help="show tracebacks on errors")))
    train_cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    app.command("train")(train_cmd)

    @app.command("compare")
    def compare(
        runs: List[Path] = typer.Argument(..., help="training run directories; grouped by algorithm"),
        seeds: str = typer.Option(",".join(map(str, EVAL_SEEDS)), "--seeds", help="comma-separated evaluation seeds"),
        n_bs: int = typer.Option(8, "--n-bs", min=1, help="base stations per seed"),
        out: Optional[Path] = typer.Option(None, "--out", help="write a PNG of the learning curves (validation seeds)"),
        frontier_plot: Optional[Path] = typer.Option(
            None, "--frontier-plot", help="write a PNG of quality against carbon: every run and reference policy "
                                          "beside the class-aware LP's frontier"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="write every result as JSON"),
        torch_threads: int = typer.Option(1, "--torch-threads", min=1, help="torch.set_num_threads for the actors"),
        cache: Optional[Path] = typer.Option(None, "--cache", help="folder of cached LP frontiers (default: "
                                                                   "'.cache' beside the first run directory)"),
    ) -> None:
        """Evaluate trained runs on the evaluation seeds, aggregate the seeds of each algorithm (mean
        and spread over runs) and print them beside the reference policies on the same seeds.

        The column "vs LP at equal quality" compares each run with the class-aware LP asked for the
        run's own quality (the LP's frontier over quality margins, aolo.train.frontier): below 0 the
        run needs less carbon than the LP for the same quality. With at least two runs of each
        algorithm, a line below the table gives the SDRL - SAC difference of that column with its
        standard error and a bootstrap 95% interval over runs. A run's excess also moves with the
        quality it lands at, so a second line fits one straight line of excess against quality
        through all runs and gives the SDRL - SAC difference at the same quality (five runs or
        more in all).

        Example: aolo compare runs/default__sdrl__* runs/default__sac__* --out curves.png
        """
        from dataclasses import asdict

        import torch

        from .comparison import compare_runs, comparison_gap, comparison_quality_adjusted_gap, comparison_table
        from .run import load_run
        from .scenario import get_scenario
        from .simulator import ServiceModel

        torch.set_num_threads(torch_threads)
        seed_list = _parse_seeds(seeds)
        loaded = []
        for r in runs:
            try:
                loaded.append(load_run(r))
            except ValueError as e:
                _fail(str(e))
        scenarios = {run.config.scenario for run in loaded}
        if len(scenarios) != 1:
            _fail(f"runs: trained on different scenarios ({', '.join(sorted(scenarios))}); compare one at a time")
        model = ServiceModel(get_scenario(scenarios.pop()))
        result = compare_runs(model, loaded, seed_list, n_bs=n_bs, cache_dir=cache or runs[0].parent / ".cache",
                              log=lambda line: console().print(f"[dim]{line}[/dim]"))
        groups = result.groups
        console().print(comparison_table(result, f"scenario {model.scenario.name}, seeds {seed_list}, "
                                                 f"{n_bs} BS x 1 day; learned: mean ± std over runs"))
        gap, adjusted = comparison_gap(result), comparison_quality_adjusted_gap(result)
        for line in (gap, adjusted):
            if line is not None:
                console().print(line.describe())
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({
                "scenario": model.scenario.to_dict(), "seeds": seed_list,
                "runs": {algo: [{"run_dir": str(run.run_dir), "result": res.to_dict()} for run, res in items]
                         for algo, items in groups.items()},
                "references": [r.to_dict() for r in result.references], "lp_frontier": result.frontier.to_dict(),
                "gap": asdict(gap) if gap is not None else None,
                "quality_adjusted_gap": asdict(adjusted) if adjusted is not None else None},
                indent=1))
            typer.echo(f"wrote {json_out}")
        if out is not None:
            from .plots import plot_learning_curves

            typer.echo(f"wrote {plot_learning_curves(groups, model, out)}")
        if frontier_plot is not None:
            from .plots import plot_quality_carbon

            typer.echo(f"wrote {plot_quality_carbon(result, frontier_plot)}")


def register_replay(app: typer.Typer) -> None:
    """``aolo replay``: a day through the full runtime, reported from its ledger."""

    @app.command("replay")
    def replay_cmd(
        bundle: Path = typer.Argument(..., help="a policy bundle (aolo export)"),
        scenario: str = typer.Option("default", "--scenario", help="scenario preset: default, tiny, sprout-repro"),
        grid: Optional[str] = typer.Option(None, "--grid", help="grid zone or Electricity Maps CSV"),
        requests_csv: Optional[Path] = typer.Option(None, "--requests", help="Sprout requests.csv for trace replay"),
        judgements_csv: Optional[Path] = typer.Option(None, "--judgements", help="Sprout judgements.csv"),
        backend: str = typer.Option("onnx", "--backend", help="onnx, lava or reference"),
        precision: str = typer.Option("float", "--precision", help="float, or fixed (lava)"),
        actor_hardware: Optional[str] = typer.Option(None, "--actor-hardware",
                                                     help="hardware charged for actor energy",
                                                     show_default="lava -> loihi2, onnx/reference -> server-cpu"),
        seed: int = typer.Option(EVAL_SEEDS[0], "--seed", help="seed of the replayed day(s)"),
        n_bs: int = typer.Option(1, "--n-bs", min=1, help="base stations"),
        days: int = typer.Option(1, "--days", min=1, help="days per base station"),
        ledger: Path = typer.Option(Path("replay.db"), "--ledger", help="SQLite ledger to create"),
    ) -> None:
        """Push a day of requests through the runtime (decide, simulated serving, record) and print
        the carbon report from the ledger beside `aolo evaluate`'s figures for the same policy and seed.

        Example: aolo replay bundles/sdrl --backend lava --ledger sdrl_lava.db
        """
        from aolo.runtime.backends import BackendError
        from aolo.runtime.bundle import BundleError

        from .replay import replay
        from .scenario import get_scenario

        try:
            sc = get_scenario(scenario, grid=grid, requests_csv=str(requests_csv) if requests_csv else None,
                              judgements_csv=str(judgements_csv) if judgements_csv else None)
            with progress() as bar:
                result = replay(bundle, sc, seed, ledger, backend=backend, precision=precision,
                                actor_hardware=actor_hardware, n_bs=n_bs, days=days, progress=bar)
        except (BundleError, BackendError, ValueError, OSError) as e:
            _fail(str(e))
        console().print(replay_table(result))


def replay_table(result):
    """The ledger's carbon report beside the evaluation of the same policy on the same seed."""
    from rich.table import Table

    from .evaluate import COMPONENTS

    totals = result.ledger_totals
    ev = result.evaluation.per_seed[0]
    n = totals["count"]
    table = Table(title=f"replay through the runtime ({result.backend}/{result.precision}, actor energy charged for "
                        f"{result.actor_hardware}: {result.actor_energy_j:.3g} J/decision), ledger {result.ledger_path}")
    for col in ("component", "ledger total (g)", "ledger per request (g)", "evaluate total (g)", "rel. difference"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for c in COMPONENTS + ("total_g",):
        a, b = totals["sum"][c], ev.carbon_sum_g[c]
        table.add_row(c, f"{a:.6g}", f"{a / max(n, 1):.6g}", f"{b:.6g}", f"{abs(a - b) / max(abs(b), 1e-300):.1e}")
    levels = ", ".join(f"{k} {v}" for k, v in totals.get("by_level", {}).items())
    table.caption = (f"{n} requests in the ledger ({ev.n_requests} evaluated); levels {levels}; "
                     f"fallbacks {result.fallbacks}; outages {int(totals.get('outages', 0))}")
    return table
