"""Rich tables as Markdown, so the report shows exactly what the console printed."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def _plain(cell) -> str:
    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return text.replace("|", "\\|").replace("\n", " ")


def table_to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with the rich table's title, header, rows and caption."""
    header = [_plain(c.header) for c in table.columns]
    columns = [[_plain(cell) for cell in c._cells] for c in table.columns]
    rows = list(zip(*columns)) if columns else []
    lines = []
    if table.title:
        lines += [f"*{_plain(table.title)}*", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if table.caption:
        lines += ["", _plain(table.caption)]
    return "\n".join(lines)
