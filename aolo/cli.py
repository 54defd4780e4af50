"""The ``aolo`` command: one Typer app, one group of subcommands per pipeline stage.

Each stage registers its own commands (``<stage>/cli.py``) so that a command's heavy imports
(torch, Lava) happen only when it runs.
"""

from __future__ import annotations

from pathlib import Path

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
    """The main job on the embedded defaults, end to end, written to a Markdown report with plots."""
    from aolo.demo import run_demo

    run_demo(out)
