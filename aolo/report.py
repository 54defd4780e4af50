"""The pipeline's Markdown report: sections in order, made of the rich tables the console printed
(:func:`aolo.markdown.table_to_markdown`) and figures beside the report, with the wall time of
each stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from aolo.console import console as make_console
from aolo.markdown import table_to_markdown
from aolo.runtime.atomic_files import write_json_atomic, write_text_atomic

__all__ = ["Report", "REPORT_FILE", "TIMINGS_FILE"]

REPORT_FILE = "report.md"
TIMINGS_FILE = "timings.json"
"""Wall time per stage, s (``{"train": ..., ..., "total": ...}``)."""


@dataclass
class Report:
    """A report being written: its sections, the console its tables go to, and stage timings.

    :param title: the report's title (its first heading)
    """

    title: str
    sections: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    console: Console = field(default_factory=make_console)
    started_s: float = field(default_factory=time.perf_counter)

    def stage(self, name: str) -> None:
        """Announce a stage on the console."""
        self.console.rule(f"[bold]{name}")

    def show(self, table: Table) -> str:
        """Print ``table`` and return it as Markdown for a section."""
        self.console.print(table)
        return table_to_markdown(table)

    def add(self, heading: str, *parts: str) -> None:
        """Add a section: its heading, then the non-empty parts as paragraphs."""
        self.sections.append(f"## {heading}\n\n" + "\n\n".join(p for p in parts if p))

    def lap(self, name: str) -> None:
        """Record the wall time since the previous lap (or the start) as stage ``name``."""
        self.timings_s[name] = time.perf_counter() - self.started_s - sum(self.timings_s.values())

    def write(self, folder: Path, preamble: str) -> Path:
        """Write ``report.md`` (title, preamble with the stage timings, sections) and ``timings.json``
        into ``folder``, with "total" the time since the report was started.

        :return: the report's path
        """
        self.timings_s["total"] = time.perf_counter() - self.started_s
        wall = "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings_s.items()) + "."
        path = write_text_atomic(folder / REPORT_FILE, f"# {self.title} report\n\n{preamble} {wall}\n\n"
                                 + "\n\n".join(self.sections) + "\n")
        write_json_atomic(folder / TIMINGS_FILE, self.timings_s)
        self.console.print(f"[bold green]report written to {path}[/bold green] ({self.timings_s['total']:.0f} s)")
        return path
