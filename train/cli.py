"""Training-stage commands: ``aolo evaluate``, ``aolo reproduce-sprout``, ``aolo train``, ``aolo
compare`` and ``aolo replay``. Each imports what it runs (torch, SB3, Lava) only when it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from aolo.console import console, progress
from aolo.shared_data import shared_data_dir
from aolo.train.seeds import EVAL_SEEDS
from aolo.train.train_config import PopSANConfig, TrainConfig

# Sprout (Li et al., EMNLP 2024), Table: carbon saving and normalised quality of Sprout vs always-L0
SPROUT_PUBLISHED = {"US-TEX-ERCO": (0.520, 0.944), "US-CAL-CISO": (0.583, 0.934), "AU-SA": (0.438, 0.968)}


def register(app: typer.Typer) -> None:
    """Add the training stage's commands to the ``aolo`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)
    app.command("reproduce-sprout")(reproduce_sprout)
    app.command("replay")(replay_command)
    from .sweep_cli import sweep_command

    app.command("sweep")(sweep_command)


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


# ---------------------------------------------------------------------------------------------
# aolo train
# ---------------------------------------------------------------------------------------------
def _doc(name: str, model: Any = TrainConfig) -> str:
    """The one-line description of a config field: the help of its option."""
    return str(model.model_fields[name].description)


def _default(name: str, config: Any = TrainConfig()) -> str:
    value = getattr(config, name)
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _sizes(option: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        _fail(f"{option}: {text!r} is not a comma-separated list of integers")
    return ()


RESUME_OPTIONS = ("steps", "torch_threads", "device")
"""The options that apply to a resumed run; everything else is the run's own config."""


def train_command(
    ctx: typer.Context,
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="TOML (or JSON) file of config fields, PopSAN's in a popsan table; options override it"),
    algo: str = typer.Option(_default("algo"), "--algo", help=_doc("algo")),
    scenario: str = typer.Option(_default("scenario"), "--scenario", help=_doc("scenario")),
    seed: int = typer.Option(_default("seed"), "--seed", help=_doc("seed")),
    steps: int = typer.Option(_default("steps"), "--steps", help=_doc("steps") + "; with --resume, the new total "
                              "(by default the run's own)"),
    actor_hidden: str = typer.Option(_default("actor_hidden"), "--actor-hidden", help=_doc("actor_hidden")),
    popsan_hidden: str = typer.Option(_default("hidden_sizes", PopSANConfig()), "--popsan-hidden",
                                      help="sdrl: " + _doc("hidden_sizes", PopSANConfig)),
    popsan_timesteps: int = typer.Option(_default("timesteps", PopSANConfig()), "--popsan-timesteps",
                                         help="sdrl: " + _doc("timesteps", PopSANConfig)),
    learning_rate: float = typer.Option(_default("learning_rate"), "--learning-rate", help=_doc("learning_rate")),
    device: str = typer.Option(_default("device"), "--device", help=_doc("device")),
    torch_threads: int = typer.Option(_default("torch_threads"), "--torch-threads", help=_doc("torch_threads")),
    out_dir: str = typer.Option(_default("out_dir"), "--out-dir", help=_doc("out_dir")),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue a run directory from its last "
                                          "checkpoint up to --steps in total; its files must match its "
                                          "run_manifest.json (resume unpickles SB3's model.zip)"),
    trust_run: bool = typer.Option(False, "--trust-run", help="with --resume: skip the manifest check, for a run "
                                   "saved by an older aolo (no run_manifest.json) that you trust: its model.zip "
                                   "and replay buffer are unpickled, and a pickle can run any code"),
    verbose: bool = typer.Option(False, "--verbose", help="show tracebacks on errors"),
) -> None:
    """Train SDRL (PopSAN actor) or SAC (MLP actor) and write runs/<scenario>__<algo>__<seed>__<time>/
    with config.json (every field), versions.json, the SB3 checkpoint, the actor spec, progress.csv
    and TensorBoard logs. Every other field of the config (docs/model.md section 6) is set with
    --config; options given here override the file.

    Example: aolo train --algo sdrl --scenario default --seed 1 --steps 150000
    """
    import traceback

    from .training import train

    values = dict(algo=algo, scenario=scenario, seed=seed, steps=steps, actor_hidden=actor_hidden,
                  popsan_hidden=popsan_hidden, popsan_timesteps=popsan_timesteps, learning_rate=learning_rate,
                  device=device, torch_threads=torch_threads, out_dir=out_dir)
    # an option counts as given unless it holds its default (the ParameterSource enum of typer's click)
    given = {k: v for k, v in values.items() if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"}
    for name in ("actor_hidden", "popsan_hidden"):
        if name in given:
            given[name] = _sizes(f"--{name.replace('_', '-')}", given[name])
    try:
        if resume is not None:
            config = _resume_config(resume, config_file, given)
        else:
            config = _config_from(config_file, given)
        if trust_run and resume is None:
            raise ValueError("--trust-run: applies only with --resume")
        run_dir = train(config, resume=resume, trust_run=trust_run)
    except (ValueError, OSError) as e:
        if verbose:
            traceback.print_exc()
        _fail(str(e))
    typer.echo(f"wrote {run_dir}")


def _config_from(config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """The config file's fields (if any) with the given options over them, validated.

    :raises ValueError: one line naming the file or option and the field
    """
    from .train_config import read_config_file

    data = read_config_file(config_file) if config_file is not None else {}
    popsan = dict(data.get("popsan", {}))
    for option, name in (("popsan_hidden", "hidden_sizes"), ("popsan_timesteps", "timesteps")):
        if option in given:
            popsan[name] = given.pop(option)
    if popsan:
        data["popsan"] = popsan
    data.update(given)
    source = f"{config_file} and the options" if config_file is not None else "options"
    return TrainConfig.from_dict(data, source)


def _resume_config(run_dir: Path, config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """The run's own config with the options that apply to a resume (its steps by default).

    :raises ValueError: a config file or an option that would change the run's config
    """
    from .run import CONFIG_FILE

    others = [f"--{k.replace('_', '-')}" for k in given if k not in RESUME_OPTIONS]
    if config_file is not None or others:
        raise ValueError(f"--resume continues a run with its own config: only --steps, --torch-threads and "
                         f"--device apply (got {', '.join(others + (['--config'] if config_file else []))})")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return TrainConfig.from_dict(json.loads(path.read_text()), str(path)).with_(**given)


# ---------------------------------------------------------------------------------------------
# aolo evaluate, aolo compare, aolo reproduce-sprout, aolo replay
# ---------------------------------------------------------------------------------------------
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
    ray: bool = typer.Option(False, "--ray", help="evaluate policies x seeds in parallel on Ray (same results)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --ray: a Ray cluster (auto, ray://HOST:PORT)",
                                          show_default="a local Ray on this machine's cores"),
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
    if ray or address is not None:
        results = _evaluate_on_ray(names, sc, seed_list, n_bs, days, address)
    else:
        with progress() as bar:
            for name in names:
                pol = REFERENCE_POLICIES[name]() if name in REFERENCE_POLICIES else _learned_policy(name)
                results.append(evaluate_policy(pol, model, seed_list, n_bs=n_bs, days=days, progress=bar))
    from .tables import results_table

    console().print(results_table(results, f"scenario {sc.name}, grid {sc.grid}, seeds {seed_list}, "
                                           f"{n_bs} BS x {days} day(s)"))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"scenario": sc.to_dict(), "results": [r.to_dict() for r in results]}, indent=1))
        typer.echo(f"wrote {out}")
    if plot is not None:
        from .plots import plot_level_mix_vs_ci

        typer.echo(f"wrote {plot_level_mix_vs_ci(results, plot)}")


def _evaluate_on_ray(names: list[str], scenario: Any, seeds: list[int], n_bs: int, days: int,
                     address: str | None) -> list:
    """``aolo evaluate --ray``: the policies x seeds as Ray tasks (exits with one line on a Ray error)."""
    from .evaluation_fanout import evaluate_on_ray
    from .policies import REFERENCE_POLICIES
    from .ray_cluster import ray_session

    for name in names:
        if name not in REFERENCE_POLICIES:
            _learned_policy(name)  # a bad run dir fails here, in one line, before Ray starts
    try:
        with ray_session(address), progress() as bar:
            return evaluate_on_ray(names, scenario, seeds, n_bs=n_bs, days=days, progress=bar)
    except ValueError as e:
        _fail(str(e))
    return []


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
    ray: bool = typer.Option(False, "--ray", help="evaluate runs x seeds and the LP frontier's seeds x margin groups "
                                                  "in parallel on Ray (same results)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --ray: a Ray cluster (auto, ray://HOST:PORT)",
                                          show_default="a local Ray on this machine's cores"),
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
    cache_dir = cache or runs[0].parent / ".cache"
    log = lambda line: console().print(f"[dim]{line}[/dim]")  # noqa: E731
    if ray or address is not None:
        from .evaluation_fanout import compare_runs_on_ray
        from .ray_cluster import ray_session

        try:
            with ray_session(address):
                result = compare_runs_on_ray(model, loaded, seed_list, n_bs=n_bs, torch_threads=torch_threads,
                                             cache_dir=cache_dir, log=log)
        except ValueError as e:
            _fail(str(e))
    else:
        result = compare_runs(model, loaded, seed_list, n_bs=n_bs, cache_dir=cache_dir, log=log)
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


def replay_command(
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
    from .tables import replay_table

    console().print(replay_table(result))
