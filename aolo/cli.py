"""The ``aolo`` command: one Typer app, one group of subcommands per pipeline stage.

Each stage registers its own commands (``<stage>/cli.py``) so that a command's heavy imports
(torch, Lava) happen only when it runs.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from aolo.hw_profiles.cli import register as register_profiles
from aolo.runtime.cli import register as register_runtime
from aolo.export.cli import register as register_export
from aolo.train.cli import register as register_train

app = typer.Typer(
    name="aolo",
    help="Low-carbon wireless LLM services with neuromorphic policy deployment.\n\n"
    "Stages: profiles -> carbon/grid -> evaluate/train -> export/verify -> serve/replay -> energy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

register_profiles(app)
register_runtime(app)
register_train(app)
register_export(app)


@app.command("demo")
def demo(out: Path = typer.Option(Path("reports/demo"), "--out", help="report folder")) -> None:
    """The main job, short budget: train SDRL and SAC on the embedded default scenario, export both,
    replay a day through the runtime on ONNX and Lava, measure actor energy, write a Markdown report
    with plots. About 9 minutes on 2 cores (543 s measured on a quiet machine)."""
    from aolo.pipeline import DEMO, run_pipeline

    run_pipeline(DEMO.with_(out_dir=out))


@app.command("reproduce")
def reproduce(
    out: Path = typer.Option(Path("reports/reproduce"), "--out", help="report folder"),
    shared: Optional[Path] = typer.Option(None, "--shared", help="Sprout data folder (../shared/data/sprout) for the "
                                                                "trace-replay evaluation"),
    seeds: str = typer.Option("1,2,3", "--seeds", help="training seeds per algorithm"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training steps per run",
                                       show_default="the full budget"),
) -> None:
    """The full-budget experiment: several seeds of SDRL and SAC on the default scenario, evaluated
    beside the reference policies (and on Sprout's real prompts and grid with --shared), exported,
    replayed and measured; the same report as the demo at full size."""
    from aolo.pipeline import FULL, run_pipeline

    try:
        seed_tuple = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        typer.echo(f"error: --seeds: {seeds!r} is not a comma-separated list of integers", err=True)
        raise typer.Exit(2)
    if shared is not None and not (shared / "requests.csv").is_file():
        typer.echo(f"error: --shared: {shared / 'requests.csv'} not found", err=True)
        raise typer.Exit(2)
    changes = {"out_dir": out, "train_seeds": seed_tuple, "shared_data": shared}
    if steps is not None:
        changes["train_steps"] = steps
    run_pipeline(FULL.with_(**changes))


def reflow_help(typer_app: typer.Typer) -> None:
    """Make every command's help (its docstring) flow paragraph by paragraph: Typer joins the
    wrapped lines of a docstring's first paragraph but keeps them in the later ones, which then
    break twice on a terminal narrower than the source."""
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))
    for group in typer_app.registered_groups:
        reflow_help(group.typer_instance)


reflow_help(app)
