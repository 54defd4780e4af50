"""Terminal output shared by every command: a rich console that stays readable in pipes and logs,
and the progress bar long work shows."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PIPE_WIDTH = 160
"""Columns of a console writing to a pipe or file, where rich would otherwise assume 80."""


def console() -> Console:
    """A console for tables: the terminal's width, or PIPE_WIDTH when not a terminal."""
    c = Console()
    return c if c.is_terminal else Console(width=PIPE_WIDTH)


def progress() -> Progress:
    """A transient progress bar with counts and elapsed time."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)
