"""Runtime commands: ``aolo carbon estimate``, ``aolo grid load`` (and later serve, replay)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
