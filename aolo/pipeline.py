"""The whole story of a deployment in one run: train SDRL and SAC, export both, replay a day
through the runtime on ONNX and on Lava, measure actor energy, and write a Markdown report with
tables and plots. ``aolo demo`` runs it with a short budget, ``aolo reproduce`` at full size.

:func:`run_pipeline` calls one function per stage, in order; each prints its tables, adds its
section to the report (:class:`aolo.report.Report`) and hands the next stages what they need.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aolo.console import progress
from aolo.report import Report
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
    train_workers: int = 2
    """Training runs at once, each in its own process with one torch thread (the demo's two runs on
    this project's 2-core machine: 293 s one after the other, measured 2026-11-30); 1 trains in this process."""
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
    energy_n_obs: int = 200
    """Observations each actor decides when its energy is counted (``aolo energy --n-obs``'s default)."""
    gateway_prompts: int = 24
    """Prompts (of aolo.gateway_demo.DEMO_PROMPTS) sent through the gateway in front of SmolLM2."""
    gateway_max_tokens: int = 96
    """The gateway stage's clients' max_tokens per answer."""
    shared_data: Path | None = None
    """Sprout data folder (…/shared/data/sprout): adds a trace-replay evaluation and the Sprout reproduction."""
    title: str = "aolo demo"
    """Report title."""

    def with_(self, **changes) -> "PipelineConfig":
        return replace(self, **changes)


def one_request(report: Report) -> None:
    """Stage 1: the carbon of one request, component by component (``aolo carbon estimate``'s example)."""
    from aolo.hw_profiles import (DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE, LLMServerProfile,
                                  RadioProfile, load_profile)
    from aolo.runtime.estimate import estimate_request
    from aolo.runtime.grid import load_grid

    report.stage("1/7 the carbon of one request")
    server = load_profile(DEFAULT_SERVER_PROFILE, LLMServerProfile)
    radio = load_profile(DEFAULT_RADIO_PROFILE, RadioProfile)
    ci = float(load_grid(DEFAULT_GRID_ZONE).ci_g_per_kwh[18])
    est = estimate_request(server, radio, ci, output_tokens=200)
    total = float(est.breakdown.total_g)
    kinds = est.breakdown.MODEL_KINDS
    rows = ["| component | carbon (g) | share | kind |", "|---|---|---|---|"]
    rows += [f"| {c} | {float(getattr(est.breakdown, c)):.5f} | {100 * float(getattr(est.breakdown, c)) / total:.1f}% "
             f"| {kinds[c]} |" for c in est.breakdown.COMPONENTS if c != "actor_g"]
    rows.append("| actor_g | - | - | not charged: no policy decides this example |")
    rows.append(f"| **total** | **{total:.5f}** | 100% | modelled |")
    report.console.print("\n".join(rows))
    report.add("One request", f"Llama-2-13B-chat, L0, 200 output and 50 prompt tokens, macro BS at 300 m and 20 W, "
                              f"10 sessions, US-TEX-ERCO embedded profile at 18:00 UTC (noon CST, {ci:.1f} gCO2e/kWh); "
                              f"inference {est.inference_latency_s:.2f} s, airtime {1e3 * est.airtime_s:.2f} ms.",
               "\n".join(rows))


def _train_timed(config: Any) -> tuple[Path, float]:
    """One training run (a process of :func:`train_runs`' pool): its directory and wall time, s."""
    from aolo.train.training import train

    t0 = time.perf_counter()
    run_dir = train(config, show_progress=False)
    return run_dir, time.perf_counter() - t0


def train_runs(cfg: PipelineConfig, report: Report) -> tuple[dict[str, list[Path]], str]:
    """Stage 2: train every seed of SDRL and SAC, ``cfg.train_workers`` runs at once (each run is
    deterministic in its seed, so running them side by side changes no number).

    :return: run directories by algorithm, and the Markdown table of their wall times
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from aolo.train.train_config import TrainConfig
    from aolo.train.training import train

    report.stage(f"2/7 training SDRL and SAC ({cfg.train_steps} steps x {len(cfg.train_seeds)} seed(s) each, "
                 f"{cfg.train_workers} at once)")
    configs = [TrainConfig(algo=algo, scenario=cfg.scenario, seed=seed, steps=cfg.train_steps, n_envs=cfg.n_envs,
                           eval_every_steps=cfg.eval_every_steps, out_dir=str(cfg.out_dir / "runs"))
               for algo in ("sdrl", "sac") for seed in cfg.train_seeds]
    if cfg.train_workers > 1 and len(configs) > 1:
        # Lava sets multiprocessing's default start method to fork when first imported and fails
        # if it is set already; starting a spawn pool sets it, so Lava is imported first
        with contextlib.suppress(ImportError):
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
        # spawn: a forked child would inherit this process's torch threads
        with ProcessPoolExecutor(min(cfg.train_workers, len(configs)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            report.console.print(f"[dim]training {', '.join(f'{c.algo} seed {c.seed}' for c in configs)} in "
                                 f"worker processes (no progress bars; the table follows)[/dim]")
            results = list(pool.map(_train_timed, configs))
    else:
        results = []
        for c in configs:
            t0 = time.perf_counter()
            results.append((train(c), time.perf_counter() - t0))
    run_dirs: dict[str, list[Path]] = {"sdrl": [], "sac": []}
    rows = ["| run | steps | wall time (s) | steps/s |", "|---|---|---|---|"]
    for c, (run_dir, dt) in zip(configs, results):
        run_dirs[c.algo].append(run_dir)
        rows.append(f"| {run_dir.name} | {cfg.train_steps} | {dt:.0f} | {cfg.train_steps / dt:.0f} |")
    return run_dirs, "\n".join(rows)


def evaluate_runs(cfg: PipelineConfig, report: Report, run_dirs: dict[str, list[Path]], train_md: str) -> list[Any]:
    """Stage 3: every run beside the reference policies on the evaluation seeds, with the learning
    curves, carbon by policy, the quality-carbon frontier and the level mix as figures.

    :return: the loaded runs (:class:`aolo.train.run.TrainedRun`)
    """
    from aolo.train.comparison import compare_runs, comparison_table
    from aolo.train.plots import plot_carbon_by_policy, plot_learning_curves, plot_level_mix_vs_ci, plot_quality_carbon
    from aolo.train.run import load_run
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel

    report.stage("3/7 evaluating the trained actors beside the reference policies")
    out, seeds = cfg.out_dir, list(cfg.eval_seeds)
    model = ServiceModel(get_scenario(cfg.scenario))
    runs = [load_run(d) for dirs in run_dirs.values() for d in dirs]
    comparison = compare_runs(model, runs, seeds, n_bs=cfg.eval_n_bs, cache_dir=out / "cache",
                              log=lambda line: report.console.print(f"[dim]{line}[/dim]"))
    groups, refs = comparison.groups, comparison.references
    table_md = report.show(comparison_table(
        comparison, f"scenario {cfg.scenario}, evaluation seeds {seeds}, {cfg.eval_n_bs} BS x 1 day; learned: "
                    f"mean ± std over {len(cfg.train_seeds)} run(s); carbon modelled by the simulator from the "
                    f"profiles (inference, radio, embodied), the actor's estimated from op counts"))
    curves = plot_learning_curves(groups, model, out / "learning_curves.png")
    learned = [res for items in groups.values() for _, res in items[:1]]
    for res, algo in zip(learned, groups):
        res.policy = algo
    by_policy = plot_carbon_by_policy(learned + refs, comparison.base, out / "carbon_by_policy.png")
    mix = plot_level_mix_vs_ci(learned + [r for r in refs if r.policy in ("class-aware-lp", "sprout-lp", "oracle")],
                               out / "level_mix_vs_ci.png")
    frontier_png = plot_quality_carbon(comparison, out / "quality_vs_carbon.png")
    report.add("Training", train_md, f"![learning curves]({curves.name})")
    report.add("Carbon per request by policy", table_md, f"![carbon by policy]({by_policy.name})",
               f"![quality against carbon, with the class-aware LP's frontier]({frontier_png.name})",
               f"![level mix against carbon intensity]({mix.name})")
    return runs


def export_bundles(cfg: PipelineConfig, report: Report, run_dirs: dict[str, list[Path]]) -> dict[str, Path]:
    """Stage 4: the first run of each algorithm as a parity-checked bundle (SDRL: ONNX, Lava, NIR;
    SAC: ONNX).

    :return: bundle directories by algorithm
    """
    from aolo.export.bundle_export import export_run
    from aolo.export.tables import parity_table, quantization_table

    report.stage("4/7 exporting to policy bundles (ONNX, Lava float and fixed point, NIR)")
    bundles = {"sdrl": cfg.out_dir / "bundles" / "sdrl", "sac": cfg.out_dir / "bundles" / "sac"}
    parts = []
    for algo, targets in (("sdrl", ("onnx", "lava", "nir")), ("sac", ("onnx",))):
        result = export_run(run_dirs[algo][0], bundles[algo], targets, n_lava_obs=cfg.n_lava_obs, overwrite=True,
                            log=lambda m: report.console.print(f"[dim]{m}[/dim]"))
        parts.append(report.show(parity_table(
            result.parity, f"{algo}: export parity ({', '.join(targets)}); export time "
                           + ", ".join(f"{k} {v:.2f} s" for k, v in result.export_s.items()))))
        if result.quantization is not None:
            parts.append(report.show(quantization_table(result.quantization)))
    report.add("Export and parity", *parts)
    return bundles


def replay_day(cfg: PipelineConfig, report: Report, bundles: dict[str, Path]) -> None:
    """Stage 5: a day through the runtime's service on ONNX and on Lava fixed point, into SQLite ledgers."""
    from aolo.train.replay import replay
    from aolo.train.scenario import get_scenario
    from aolo.train.tables import replay_table

    report.stage("5/7 replaying a day through the runtime (ONNX and Lava)")
    parts = []
    ledgers = cfg.out_dir / "ledgers"
    ledgers.mkdir(exist_ok=True)
    for algo, backend, precision in (("sdrl", "onnx", "float"), ("sdrl", "lava", "fixed"), ("sac", "onnx", "float")):
        ledger = ledgers / f"{algo}_{backend}_{precision}.db"
        for p in ledger.parent.glob(ledger.name + "*"):
            p.unlink()
        with progress() as bar:
            r = replay(bundles[algo], get_scenario(cfg.scenario), cfg.eval_seeds[0], ledger, backend=backend,
                       precision=precision, n_bs=cfg.replay_n_bs, progress=bar)
        t = replay_table(r)
        t.title = f"{algo} on {backend}/{precision}: " + str(t.title)
        parts.append(report.show(t))
    report.add("A day through the runtime", "Each request is decided by the runtime's service on the named backend, "
               "served by the simulator and recorded in a SQLite ledger; the ledger's totals sit beside `aolo "
               "evaluate`'s for the same policy and seed. The kind column is the ledger rows' own labels: the "
               "simulator reports no measured energy, so inference and radio are modelled from the profiles and "
               "the actor's energy is estimated from op counts.", *parts)


def actor_energy(cfg: PipelineConfig, report: Report, bundles: dict[str, Path]) -> None:
    """Stage 6: the actors' energy per decision, SNN on Loihi against ANN on dense hardware, every
    figure estimated; where this machine has an energy counter, also measured (``aolo energy --measure``)."""
    from aolo.runtime.energy_counters import find_counters
    from aolo.runtime.energy_report import (compare_table, counter_note, energy_table, measure_bundle,
                                            measure_bundle_energy, measured_table, plot_compare)

    report.stage("6/7 actor energy per decision, SNN against ANN")
    search = find_counters()
    snn, ann = (measure_bundle(bundles[a], n_obs=cfg.energy_n_obs) for a in ("sdrl", "sac"))
    parts = [report.show(t) for t in (energy_table(snn), energy_table(ann), compare_table(snn, ann))]
    if search.counters:  # measured where a counter is readable: batch 1 and 256, idle baseline subtracted
        parts += [report.show(measured_table(measure_bundle_energy(bundles[a], repeats=3, search=search)))
                  for a in ("sdrl", "sac")]
    energy_png = plot_compare(snn, ann, cfg.out_dir / "actor_energy.png")
    report.add("Actor energy", counter_note(search), *parts, f"![actor energy, estimated]({energy_png.name})")


def trace_replay(cfg: PipelineConfig, report: Report, runs: list[Any]) -> None:
    """Stage 7 (with shared data only): the trained runs on Sprout's real prompts and grid trace."""
    from aolo.train.comparison import compare_runs, comparison_table
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel

    if cfg.shared_data is None:
        report.stage("7/7 trace replay skipped (no shared data given)")
        return
    report.stage("7/7 trace replay on Sprout's real prompts and grid")
    trace = get_scenario(cfg.scenario, requests_csv=str(cfg.shared_data / "requests.csv"),
                         judgements_csv=str(cfg.shared_data / "judgements.csv"),
                         grid=str(cfg.shared_data / "grid" / "US-TEX-ERCO_2023_hourly.csv"))
    comparison = compare_runs(ServiceModel(trace), runs, list(cfg.eval_seeds), n_bs=cfg.eval_n_bs,
                              cache_dir=cfg.out_dir / "cache")
    report.add("Trace replay", report.show(comparison_table(
        comparison, "trace replay: Sprout's measured prompts and judgements, US-TEX-ERCO 2023 trace from 1 January "
                    "(policies trained on the synthetic default)")))


def gateway_llm(cfg: PipelineConfig, report: Report, bundles: dict[str, Path]) -> None:
    """The last stage: the gateway in front of a real LLM (SmolLM2 on llama.cpp's server)."""
    from aolo.gateway_demo import gateway_stage

    report.stage("the gateway in front of a real LLM (SmolLM2 on llama.cpp)")
    gateway_stage(report, bundles["sdrl"], cfg.out_dir, report.console, cfg.gateway_prompts, cfg.gateway_max_tokens)


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Run every stage and write ``cfg.out_dir/report.md`` (and ``timings.json``, s per stage).

    :return: the report's path
    """
    import torch

    torch.set_num_threads(1)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(cfg.title)
    one_request(report)
    run_dirs, train_md = train_runs(cfg, report)
    report.lap("train")
    runs = evaluate_runs(cfg, report, run_dirs, train_md)
    report.lap("evaluate")
    bundles = export_bundles(cfg, report, run_dirs)
    report.lap("export")
    replay_day(cfg, report, bundles)
    report.lap("replay")
    actor_energy(cfg, report, bundles)
    report.lap("energy")
    trace_replay(cfg, report, runs)
    report.lap("trace replay")
    gateway_llm(cfg, report, bundles)
    report.lap("gateway")
    budget = (f"Budget: {cfg.train_steps} training steps per run, {len(cfg.train_seeds)} seed(s) per algorithm, "
              f"{cfg.n_envs} base stations in training; evaluation on seeds {list(cfg.eval_seeds)} with "
              f"{cfg.eval_n_bs} base stations x 1 day.")
    return report.write(cfg.out_dir, budget)


DEMO = PipelineConfig()
"""``make demo``: one seed per algorithm, a short training budget; under 10 minutes on 2 cores (543 s measured)."""

FULL = PipelineConfig(out_dir=Path("reports/reproduce"), train_seeds=(1, 2, 3), train_steps=150_000,
                      eval_every_steps=25_000, title="aolo reproduce")
"""``aolo reproduce``: three seeds per algorithm at the full training budget."""
