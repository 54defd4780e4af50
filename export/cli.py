"""``aolo export RUN_DIR --to onnx,lava,nir --out BUNDLE`` and ``aolo verify BUNDLE``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        run_dir: Path = typer.Argument(..., help="a run directory written by `aolo train`"),
        to: str = typer.Option("onnx,lava,nir", "--to", help="targets: onnx (GPU/CPU), lava (Loihi 2 float and "
                                                             "fixed point), nir; lava and nir need an SDRL actor"),
        out: Path = typer.Option(..., "--out", help="bundle directory to write"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing bundle"),
        n_obs: int = typer.Option(10_000, "--n-obs", min=1, help="observations for the ONNX/torch parity checks"),
        n_lava_obs: int = typer.Option(200, "--n-lava-obs", min=1, help="observations through each Lava network"),
    ) -> None:
        """Export a trained actor to a versioned policy bundle, proving every target equal to it.

        Example: aolo export runs/default__sdrl__1__... --to onnx,lava,nir --out bundles/sdrl
        """
        from aolo.console import console as make_console

        from .bundle_export import export_run, parse_targets
        from .tables import parity_table, quantization_table

        console = make_console()
        try:
            targets = parse_targets(to)
            result = export_run(run_dir, out, targets, n_onnx_obs=n_obs, n_lava_obs=n_lava_obs, overwrite=overwrite,
                                log=lambda m: console.print(f"[dim]{m}[/dim]"))
        except (ValueError, OSError) as e:
            _fail(str(e))
        console.print(parity_table(result.parity, f"export parity: {run_dir}"))
        console.print("export time per target: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.export_s.items()))
        if result.quantization is not None:
            console.print(quantization_table(result.quantization))
        console.print(f"[bold]bundle written to {result.bundle}[/bold]")

    @app.command("verify")
    def verify(
        bundle: Path = typer.Argument(..., help="a policy bundle directory"),
        n_obs: int = typer.Option(10_000, "--n-obs", min=1, help="fresh observations for ONNX and NIR"),
        n_lava_obs: int = typer.Option(200, "--n-lava-obs", min=1, help="observations through each Lava network"),
        seed: Optional[int] = typer.Option(None, "--seed", help="observation seed (default: fresh from the clock)"),
    ) -> None:
        """Validate a bundle (files, hashes, shapes) and recompute parity per target on fresh observations."""
        from aolo.console import console
        from aolo.runtime.bundle import BundleError

        from .bundle_export import verify_bundle
        from .tables import parity_table

        try:
            results = verify_bundle(bundle, n_obs=n_obs, n_lava_obs=n_lava_obs, seed=seed)
        except (BundleError, ValueError, OSError) as e:
            _fail(str(e))
        console().print(parity_table(results, f"verify: {bundle}"))
        if not all(r.passed for r in results):
            raise typer.Exit(1)
