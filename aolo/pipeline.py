"""The whole story of a deployment in one run: train SDRL and SAC, export both, replay a day
through the runtime on ONNX and on Lava, measure actor energy, and write a Markdown report with
tables and plots. ``aolo demo`` runs it with a short budget, ``aolo reproduce`` at full size.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from aolo.console import console as make_console, progress
from aolo.markdown import table_to_markdown
from aolo.train.seeds import EVAL_SEEDS



@dataclass(frozen=True)
class PipelineConfig:
    """Budget and scope of one pipeline run."""

    out_dir: Path = Path("reports/demo")
    """Report folder (runs, bundles and ledgers go beneath it)."""
    scenario: str = "default"
    """Scenario preset to train and evaluate on."""
    train_seeds: tuple[int, ...] = (1,)
    """Training seeds per algorithm."""
    train_steps: int = 50_000
    """Environment steps per training run (about where both actors reach the class-aware LP's neighbourhood)."""
    n_envs: int = 16
    """Base stations stepped at once in training."""
    eval_every_steps: int = 10_000
    """Steps between validation evaluations (the learning curves)."""
    eval_seeds: tuple[int, ...] = EVAL_SEEDS
    """Evaluation seeds of every table (never trained or validated on)."""
    eval_n_bs: int = 8
    """Base stations per evaluation seed."""
    replay_n_bs: int = 2
    """Base stations of the replayed day."""
    n_lava_obs: int = 200
    """Observations through each Lava network at export."""
    shared_data: Path | None = None
    """Sprout data folder (…/shared/data/sprout): adds a trace-replay evaluation and the Sprout reproduction."""
    title: str = "aolo demo"
    """Report title."""

    def with_(self, **changes) -> "PipelineConfig":
        return replace(self, **changes)


@dataclass
class Report:
    """Markdown sections in order, and the figures they show."""

    sections: list[str] = field(default_factory=list)

    def add(self, heading: str, *parts: str) -> None:
        self.sections.append(f"## {heading}\n\n" + "\n\n".join(p for p in parts if p))


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Run every stage and write ``cfg.out_dir/report.md``; returns its path."""
    import torch

    from aolo.export.bundle_export import export_run, parity_table
    from aolo.export.cli import _quantization_table
    from aolo.hw_profiles import (DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE, LLMServerProfile,
                                  RadioProfile, load_profile)
    from aolo.runtime.energy_report import compare_table as energy_compare_table
    from aolo.runtime.energy_report import counter_note, energy_table, measure_bundle, plot_compare
    from aolo.runtime.estimate import estimate_request
    from aolo.runtime.grid import load_grid
    from aolo.train.cli import replay_table
    from aolo.train.comparison import compare_runs, comparison_table
    from aolo.train.plots import plot_carbon_by_policy, plot_learning_curves, plot_level_mix_vs_ci, plot_quality_carbon
    from aolo.train.replay import replay
    from aolo.train.run import load_run
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel
    from aolo.train.training import TrainConfig, train

    torch.set_num_threads(1)
    console = make_console()
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    report = Report()

    def stage(name: str) -> None:
        console.rule(f"[bold]{name}")

    # --- 1. one request -------------------------------------------------------------------------
    stage("1/7 the carbon of one request")
    server = load_profile(DEFAULT_SERVER_PROFILE, LLMServerProfile)
    radio = load_profile(DEFAULT_RADIO_PROFILE, RadioProfile)
    ci = float(load_grid(DEFAULT_GRID_ZONE).ci_g_per_kwh[18])
    est = estimate_request(server, radio, ci, output_tokens=200)
    total = float(est.breakdown.total_g)
    rows = ["| component | carbon (g) | share |", "|---|---|---|"]
    rows += [f"| {c} | {float(getattr(est.breakdown, c)):.5f} | {100 * float(getattr(est.breakdown, c)) / total:.1f}% |"
             for c in est.breakdown.COMPONENTS]
    rows.append(f"| **total** | **{total:.5f}** | 100% |")
    console.print("\n".join(rows))
    report.add("One request", f"Llama-2-13B-chat, L0, 200 output and 50 prompt tokens, macro BS at 300 m and 20 W, "
                              f"10 sessions, US-TEX-ERCO embedded profile at 18:00 UTC (noon CST, {ci:.1f} gCO2e/kWh); "
                              f"inference {est.inference_latency_s:.2f} s, airtime {1e3 * est.airtime_s:.2f} ms.",
               "\n".join(rows))

    # --- 2. train ------------------------------------------------------------------------------
    stage(f"2/7 training SDRL and SAC ({cfg.train_steps} steps x {len(cfg.train_seeds)} seed(s) each)")
    run_dirs: dict[str, list[Path]] = {"sdrl": [], "sac": []}
    train_rows = ["| run | steps | wall time (s) | steps/s |", "|---|---|---|---|"]
    for algo in ("sdrl", "sac"):
        for seed in cfg.train_seeds:
            t0 = time.perf_counter()
            run_dir = train(TrainConfig(algo=algo, scenario=cfg.scenario, seed=seed, steps=cfg.train_steps,
                                        n_envs=cfg.n_envs, eval_every_steps=cfg.eval_every_steps,
                                        out_dir=str(out / "runs")))
            dt = time.perf_counter() - t0
            run_dirs[algo].append(run_dir)
            train_rows.append(f"| {run_dir.name} | {cfg.train_steps} | {dt:.0f} | {cfg.train_steps / dt:.0f} |")
    timings["train"] = time.perf_counter() - t_start

    # --- 3. evaluate against the reference policies ----------------------------------------
    stage("3/7 evaluating the trained actors beside the reference policies")
    model = ServiceModel(get_scenario(cfg.scenario))
    seeds = list(cfg.eval_seeds)
    runs = [load_run(d) for dirs in run_dirs.values() for d in dirs]
    comparison = compare_runs(model, runs, seeds, n_bs=cfg.eval_n_bs, cache_dir=out / "cache",
                              log=lambda line: console.print(f"[dim]{line}[/dim]"))
    groups, refs, base = comparison.groups, comparison.references, comparison.base
    table = comparison_table(comparison, f"scenario {cfg.scenario}, evaluation seeds {seeds}, {cfg.eval_n_bs} BS "
                                         f"x 1 day; learned: mean ± std over {len(cfg.train_seeds)} run(s)")
    console.print(table)
    curves = plot_learning_curves(groups, model, out / "learning_curves.png")
    learned = [res for items in groups.values() for _, res in items[:1]]
    for res, algo in zip(learned, groups):
        res.policy = algo
    by_policy = plot_carbon_by_policy(learned + refs, base, out / "carbon_by_policy.png")
    mix = plot_level_mix_vs_ci(learned + [r for r in refs if r.policy in ("class-aware-lp", "sprout-lp", "oracle")],
                               out / "level_mix_vs_ci.png")
    report.add("Training", "\n".join(train_rows), f"![learning curves]({curves.name})")
    frontier_png = plot_quality_carbon(comparison, out / "quality_vs_carbon.png")
    report.add("Carbon per request by policy", table_to_markdown(table), f"![carbon by policy]({by_policy.name})",
               f"![quality against carbon, with the class-aware LP's frontier]({frontier_png.name})",
               f"![level mix against carbon intensity]({mix.name})")
    timings["evaluate"] = time.perf_counter() - t_start - sum(timings.values())

    # --- 4. export --------------------------------------------------------------------------------
    stage("4/7 exporting to policy bundles (ONNX, Lava float and fixed point, NIR)")
    bundles = {"sdrl": out / "bundles" / "sdrl", "sac": out / "bundles" / "sac"}
    export_md = []
    for algo, targets in (("sdrl", ("onnx", "lava", "nir")), ("sac", ("onnx",))):
        result = export_run(run_dirs[algo][0], bundles[algo], targets, n_lava_obs=cfg.n_lava_obs, overwrite=True,
                            log=lambda m: console.print(f"[dim]{m}[/dim]"))
        t = parity_table(result.parity, f"{algo}: export parity ({', '.join(targets)}); export time "
                                        + ", ".join(f"{k} {v:.2f} s" for k, v in result.export_s.items()))
        console.print(t)
        export_md.append(table_to_markdown(t))
        if result.quantization is not None:
            q = _quantization_table(result.quantization)
            console.print(q)
            export_md.append(table_to_markdown(q))
    report.add("Export and parity", *export_md)
    timings["export"] = time.perf_counter() - t_start - sum(timings.values())

    # --- 5. replay through the runtime ------------------------------------------------------
    stage("5/7 replaying a day through the runtime (ONNX and Lava)")
    replay_md = []
    ledgers = out / "ledgers"
    ledgers.mkdir(exist_ok=True)
    for algo, backend, precision in (("sdrl", "onnx", "float"), ("sdrl", "lava", "fixed"), ("sac", "onnx", "float")):
        ledger = ledgers / f"{algo}_{backend}_{precision}.db"
        for p in ledger.parent.glob(ledger.name + "*"):
            p.unlink()
        with progress() as bar:
            r = replay(bundles[algo], get_scenario(cfg.scenario), seeds[0], ledger, backend=backend,
                       precision=precision, n_bs=cfg.replay_n_bs, progress=bar)
        t = replay_table(r)
        t.title = f"{algo} on {backend}/{precision}: " + str(t.title)
        console.print(t)
        replay_md.append(table_to_markdown(t))
    report.add("A day through the runtime", "Each request is decided by the runtime's service on the named backend, "
               "served by the simulator and recorded in a SQLite ledger; the ledger's totals sit beside `aolo "
               "evaluate`'s for the same policy and seed.", *replay_md)
    timings["replay"] = time.perf_counter() - t_start - sum(timings.values())

    # --- 6. actor energy ---------------------------------------------------------------------
    stage("6/7 actor energy per decision, SNN against ANN")
    snn, ann = measure_bundle(bundles["sdrl"]), measure_bundle(bundles["sac"])
    note = counter_note(snn.counters)
    tables = [energy_table(snn), energy_table(ann), energy_compare_table(snn, ann)]
    for t in tables:
        console.print(t)
    energy_png = plot_compare(snn, ann, out / "actor_energy.png")
    report.add("Actor energy", note, *[table_to_markdown(t) for t in tables], f"![actor energy]({energy_png.name})")
    timings["energy"] = time.perf_counter() - t_start - sum(timings.values())

    # --- 7. trace replay (full runs with the shared data) ----------------------------------
    if cfg.shared_data is not None:
        stage("7/7 trace replay on Sprout's real prompts and grid")
        trace = get_scenario(cfg.scenario, requests_csv=str(cfg.shared_data / "requests.csv"),
                             judgements_csv=str(cfg.shared_data / "judgements.csv"),
                             grid=str(cfg.shared_data / "grid" / "US-TEX-ERCO_2023_hourly.csv"))
        tmodel = ServiceModel(trace)
        t = comparison_table(compare_runs(tmodel, runs, seeds, n_bs=cfg.eval_n_bs, cache_dir=out / "cache"),
                             "trace replay: Sprout's measured prompts and judgements, US-TEX-ERCO 2023 trace from "
                             "1 January (policies trained on the synthetic default)")
        console.print(t)
        report.add("Trace replay", table_to_markdown(t))
    else:
        stage("7/7 trace replay skipped (no shared data given)")
    timings["total"] = time.perf_counter() - t_start

    path = out / "report.md"
    budget = (f"Budget: {cfg.train_steps} training steps per run, {len(cfg.train_seeds)} seed(s) per algorithm, "
              f"{cfg.n_envs} base stations in training; evaluation on seeds {seeds} with {cfg.eval_n_bs} base "
              f"stations x 1 day. Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".")
    path.write_text(f"# {cfg.title} report\n\n{budget}\n\n" + "\n\n".join(report.sections) + "\n")
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    console.print(f"[bold green]report written to {path}[/bold green] ({timings['total']:.0f} s)")
    return path


DEMO = PipelineConfig()
"""``make demo``: one seed per algorithm, a short training budget; under 15 minutes on 2 cores."""

FULL = PipelineConfig(out_dir=Path("reports/reproduce"), train_seeds=(1, 2, 3), train_steps=150_000,
                      eval_every_steps=25_000, title="aolo reproduce")
"""``aolo reproduce``: three seeds per algorithm at the full training budget."""
