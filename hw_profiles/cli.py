"""``aolo profiles list|show NAME``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    profiles = typer.Typer(help="List and inspect hardware and grid profiles (every number with its source).",
                           no_args_is_help=True)

    @profiles.command("list")
    def list_() -> None:
        """List the embedded profiles by type."""
        from rich.console import Console
        from rich.table import Table

        from .registry import embedded_profiles, load_profile_file

        table = Table(title="aolo hardware and grid profiles")
        for col in ("type", "name", "version", "description"):
            table.add_column(col)
        for e in embedded_profiles():
            p = load_profile_file(e.path)
            table.add_row(e.type, e.name, p.version, p.description)
        Console().print(table)

    @profiles.command("show")
    def show(name: str = typer.Argument(..., help="profile name (see `aolo profiles list`) or path to a .toml")) -> None:
        """Show every quantity of one profile: value, unit, SI value, kind and source."""
        from rich.console import Console
        from rich.table import Table

        from .quantity import BASE_UNIT, Quantity
        from .registry import ProfileError, load_profile

        try:
            p = load_profile(name)
        except ProfileError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        table = Table(title=f"{p.name} v{p.version} ({p.type}): {p.description}")
        for col in ("field", "value", "unit", "SI value", "kind", "source"):
            table.add_column(col, overflow="fold")
        for field, q in p.quantities().items():
            dim = p.DIMENSIONS[field]
            if isinstance(q, Quantity):
                shown, si = f"{q.value:g}", f"{q.to_si(dim, field):.6g} {BASE_UNIT[dim]}"
            else:
                shown, si = f"{len(q.values)} values", f"min {min(q.values):.4g} max {max(q.values):.4g} {BASE_UNIT[dim]}"
            table.add_row(field, shown, q.unit, si, q.kind, q.source)
        Console().print(table)

    app.add_typer(profiles, name="profiles")
