"""``aolo export RUN_DIR --to onnx,lava,nir,netx --out BUNDLE`` and ``aolo verify BUNDLE``."""

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
                                                             "fixed point), nir, netx (lava-dl's Loihi 2 format); "
                                                             "all but onnx need an SDRL actor"),
        out: Path = typer.Option(..., "--out", help="bundle directory to write"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing bundle"),
        n_obs: int = typer.Option(10_000, "--n-obs", min=1, help="observations for the ONNX/torch parity checks"),
        n_lava_obs: int = typer.Option(200, "--n-lava-obs", min=1, help="observations through each Lava network"),
        sign: Optional[Path] = typer.Option(None, "--sign", metavar="KEY",
                                            help="sign the bundle with this private key (`aolo keys new`)"),
    ) -> None:
        """Export a trained actor to a versioned policy bundle, proving every target equal to it.

        Example: aolo export runs/default__sdrl__1__... --to onnx,lava,nir --out bundles/sdrl
        """
        from aolo.console import console as make_console

        from aolo.runtime.signing import sign_bundle

        from .bundle_export import export_run, parse_targets
        from .tables import parity_table, quantization_table, resources_table

        console = make_console()
        try:
            targets = parse_targets(to)
            result = export_run(run_dir, out, targets, n_onnx_obs=n_obs, n_lava_obs=n_lava_obs, overwrite=overwrite,
                                log=lambda m: console.print(f"[dim]{m}[/dim]"))
            signer = sign_bundle(result.bundle, sign) if sign is not None else None
        except (ValueError, OSError, ImportError) as e:
            _fail(str(e))
        console.print(parity_table(result.parity, f"export parity: {run_dir}"))
        console.print("export time per target: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.export_s.items()))
        if result.quantization is not None:
            console.print(quantization_table(result.quantization))
        if result.loihi_resources is not None:
            console.print(resources_table(result.loihi_resources, "Loihi 2 resource use"))
        console.print(f"[bold]bundle written to {result.bundle}[/bold]" + (f", signed by key {signer}" if signer else ""))

    @app.command("verify")
    def verify(
        bundle: Path = typer.Argument(..., help="a policy bundle directory"),
        n_obs: int = typer.Option(10_000, "--n-obs", min=1, help="fresh observations for ONNX and NIR"),
        n_lava_obs: int = typer.Option(200, "--n-lava-obs", min=1, help="observations through each Lava network"),
        seed: Optional[int] = typer.Option(None, "--seed", help="observation seed (default: fresh from the clock)"),
        trusted_keys: Optional[Path] = typer.Option(None, "--trusted-keys", metavar="DIR",
                                                    help="also require a valid signature by one of these *.pub keys"),
    ) -> None:
        """Validate a bundle (files, hashes, shapes, signature) and recompute parity per target on fresh observations."""
        from aolo.console import console
        from aolo.runtime.bundle import BundleError, PolicyBundle
        from aolo.runtime.signing import load_trusted_keys, verify_signer

        from .bundle_export import bundle_loihi_resources, verify_bundle
        from .tables import parity_table, resources_table

        try:
            loaded = PolicyBundle.load(bundle)
            signer = verify_signer(loaded, load_trusted_keys(trusted_keys)) if trusted_keys is not None else None
            results = verify_bundle(bundle, n_obs=n_obs, n_lava_obs=n_lava_obs, seed=seed)
            resources, recorded_equal = bundle_loihi_resources(bundle)
        except (BundleError, ValueError, OSError, ImportError) as e:
            _fail(str(e))
        if signer:
            note = f"valid, by trusted key {signer}"
        elif loaded.signature:
            note = f"by key {loaded.signature.key_id}, not checked (give --trusted-keys)"
        else:
            note = "none"
        console().print(f"signature: {note}")
        console().print(parity_table(results, f"verify: {bundle}"))
        if resources is not None:
            record = {None: "the bundle records none", True: "equal to the bundle's record",
                      False: "[red]differs from the bundle's record[/red]"}[recorded_equal]
            console().print(resources_table(resources, f"Loihi 2 resource use ({record})"))
        if not all(r.passed for r in results) or recorded_equal is False:
            raise typer.Exit(1)
