"""Runtime commands: ``aolo carbon estimate``, ``aolo grid load`` (and later serve, replay)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from aolo.hw_profiles import DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE

from . import limits
from .energy_report import HARDWARE

if TYPE_CHECKING:
    from .grid import GridTrace


def register(app: typer.Typer) -> None:
    _register_carbon(app)
    _register_grid(app)
    _register_energy(app)
    _register_serve(app)
    _register_keys(app)


# ---------------------------------------------------------------------------------------------
# aolo keys
# ---------------------------------------------------------------------------------------------


def _register_keys(app: typer.Typer) -> None:
    keys = typer.Typer(help="Ed25519 keys that sign policy bundles, and signing.", no_args_is_help=True)

    @keys.command("new")
    def new(
        name: str = typer.Argument(..., help="key name: NAME.key (private, 0600) and NAME.pub are written"),
        out: Path = typer.Option(Path("keys"), "--out", help="folder for the two files"),
    ) -> None:
        """Create a signing key pair. Keep NAME.key on the training host; copy NAME.pub into the folder
        that base stations pass to `aolo serve --trusted-keys`.

        Example: aolo keys new release --out keys/
        """
        from .signing import SigningKeyError, new_keypair

        try:
            key_path, pub_path, kid = new_keypair(out, name)
        except (SigningKeyError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(f"wrote {key_path} (private, 0600) and {pub_path}; key id {kid}")

    @keys.command("sign")
    def sign(
        bundle: Path = typer.Argument(..., metavar="BUNDLE", help="policy bundle directory"),
        key: Path = typer.Option(..., "--key", help="private key file (NAME.key from `aolo keys new`)"),
    ) -> None:
        """Sign a bundle: verify it, then write signature.json over its manifest (which pins every file).

        Example: aolo keys sign bundles/sdrl --key keys/release.key
        """
        from .bundle import BundleError
        from .signing import SigningKeyError, sign_bundle

        try:
            kid = sign_bundle(bundle, key)
        except (BundleError, SigningKeyError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(f"signed {bundle} with key {kid}")

    app.add_typer(keys, name="keys")


# ---------------------------------------------------------------------------------------------
# aolo carbon
# ---------------------------------------------------------------------------------------------


def _register_carbon(app: typer.Typer) -> None:
    carbon = typer.Typer(help="The carbon model: what one request costs, by component.", no_args_is_help=True)

    @carbon.command("estimate")
    def estimate(
        output_tokens: float = typer.Option(200.0, "--output-tokens", min=0, max=limits.TOKENS_MAX,
                                            help="answer length, tokens"),
        prompt_tokens: float = typer.Option(50.0, "--prompt-tokens", min=0, max=limits.TOKENS_MAX,
                                            help="prompt length, tokens"),
        server: str = typer.Option(DEFAULT_SERVER_PROFILE, "--server", help="LLM server profile"),
        radio: str = typer.Option(DEFAULT_RADIO_PROFILE, "--radio", help="radio profile (macro, micro, pico)"),
        tx_power_w: Optional[float] = typer.Option(None, "--tx-power-w", min=0, max=limits.INPUT_BOUNDS["tx_power_w"][1],
                                                   help="downlink power, W", show_default="P_max"),
        distance_m: float = typer.Option(300.0, "--distance-m", min=1.0, max=limits.DISTANCE_M_MAX,
                                         help="BS-user distance, m"),
        zone: str = typer.Option(DEFAULT_GRID_ZONE, "--zone", help="grid zone (embedded) or Electricity Maps CSV"),
        hour_utc: int = typer.Option(18, "--hour-utc", min=0, help="hour of the trace, UTC (18 = Texas noon, CST)"),
        sessions: float = typer.Option(10.0, "--sessions", min=1.0, max=limits.INPUT_BOUNDS["active_sessions"][1],
                                       help="active sessions sharing the BS static power"),
        actor_energy_j: float = typer.Option(0.0, "--actor-energy-j", min=0, max=limits.ACTOR_ENERGY_J_MAX,
                                             help="the policy's decision energy, J"),
        no_radio: bool = typer.Option(False, "--no-radio", help="drop radio terms (Sprout's computation-only view)"),
    ) -> None:
        """Carbon breakdown of one request: tokens, power, distance, zone and hour in, a table out.

        Example: aolo carbon estimate --output-tokens 200 --zone US-TEX-ERCO --hour-utc 18
        """
        from rich.console import Console
        from rich.table import Table

        from aolo.hw_profiles import LLMServerProfile, ProfileError, RadioProfile, load_profile

        from .estimate import estimate_request
        from .grid import load_grid

        try:
            srv = load_profile(server, LLMServerProfile)
            rad = load_profile(radio, RadioProfile)
            trace = load_grid(zone)
            if hour_utc >= trace.n_hours:
                raise ValueError(f"--hour-utc: the trace has {trace.n_hours} hours")
            ci = float(trace.ci_g_per_kwh[hour_utc])
            est = estimate_request(srv, rad, ci, output_tokens, prompt_tokens, tx_power_w, distance_m, sessions,
                                   actor_energy_j, include_radio=not no_radio)
        except (ValueError, ProfileError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        b = est.breakdown
        table = Table(title=f"{srv.model}, {output_tokens:g} output tokens, {rad.name} BS at {distance_m:g} m, "
                            f"{trace.zone_id} hour {hour_utc} UTC ({ci:.1f} gCO2e/kWh)")
        for col in ("component", "energy (J)", "carbon (g)", "share", "kind"):
            table.add_column(col, justify="left" if col in ("component", "kind") else "right")
        total = float(b.total_g)
        actor_kind = "as given (--actor-energy-j)" if actor_energy_j > 0 else "not charged (no --actor-energy-j)"
        rows = [
            ("inference (operational, x PUE)", float(b.inference_energy_j) * srv.pue_frac, float(b.inference_g),
             "modelled (server profile per token)"),
            ("radio (operational)", float(b.radio_dynamic_energy_j + b.radio_static_energy_j), float(b.radio_g),
             "modelled (radio profile)"),
            ("  of which load-dependent", float(b.radio_dynamic_energy_j), None, "modelled"),
            ("  of which static share", float(b.radio_static_energy_j), None, "modelled"),
            ("actor decision", float(b.actor_energy_j), float(b.actor_g), actor_kind),
            ("embodied GPU server", None, float(b.embodied_gpu_g), "modelled (amortised)"),
            ("embodied BS", None, float(b.embodied_bs_g), "modelled (amortised)"),
        ]
        for name, e, c, kind in rows:
            table.add_row(name, "" if e is None else f"{e:.4g}", "" if c is None else f"{c:.5f}",
                          "" if c is None else f"{100 * c / total:.1f}%", kind)
        table.add_row("total", "", f"{total:.5f}", "100.0%", "modelled", style="bold")
        Console().print(table)
        typer.echo(f"inference {est.inference_latency_s:.2f} s, airtime {est.airtime_s * 1e3:.2f} ms at mean SNR "
                   f"{est.snr_db:.1f} dB")

    app.add_typer(carbon, name="carbon")


# ---------------------------------------------------------------------------------------------
# aolo grid
# ---------------------------------------------------------------------------------------------


class Basis(str, Enum):
    """Which Electricity Maps intensity column to read."""

    direct = "direct"
    lca = "lca"


def _register_grid(app: typer.Typer) -> None:
    grid = typer.Typer(help="Grid carbon-intensity traces: Electricity Maps CSVs and embedded zones.",
                       no_args_is_help=True)

    @grid.command("load")
    def load(
        spec: str = typer.Argument(..., metavar="FILE_OR_ZONE",
                                   help="Electricity Maps hourly CSV, or an embedded zone (see `aolo grid zones`)"),
        basis: Basis = typer.Option(Basis.direct, "--basis",
                                    help="direct (operational) or lca (life-cycle) intensity"),
        plot: Optional[Path] = typer.Option(None, "--plot", metavar="PATH.png",
                                            help="write a PNG of the trace and its 24-h mean profile"),
    ) -> None:
        """Load a trace, show its summary (zone, hours, span, min/mean/max, gaps), optionally plot it."""
        from rich.console import Console

        from .grid import load_grid

        try:
            trace = load_grid(spec, basis=basis.value)
            if plot is not None:
                _plot_trace(trace, plot)
        except (ValueError, OSError) as e:  # GridTraceError is a ValueError; bad PNG path
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        Console().print(_summary_table(trace))
        if plot is not None:
            typer.echo(f"wrote {plot}")

    @grid.command("zones")
    def zones() -> None:
        """List the embedded grid zones (24-h mean profiles derived from real hourly traces)."""
        from rich.console import Console
        from rich.table import Table

        from .grid import embedded_zones

        table = Table(title="aolo embedded grid zones (gCO2eq/kWh)")
        for col in ("name", "zone id", "zone name", "year", "basis", "min", "mean", "max"):
            numeric = col in ("min", "mean", "max")
            table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "zone name")
        for z in embedded_zones():
            table.add_row(z.name, z.zone_id, z.zone_name, str(z.year), z.basis,
                          *(f"{z.si(f):.1f}" for f in ("ci_annual_min", "ci_annual_mean", "ci_annual_max")))
        Console().print(table)

    app.add_typer(grid, name="grid")


def _summary_table(trace: "GridTrace"):  # -> rich.table.Table
    from rich.table import Table

    s = trace.summary()
    table = Table(title=f"grid trace: {trace.source}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    gaps = f"{s['n_gaps']} ({s['n_missing_hours']} hours missing)"
    if trace.gaps:
        first = ", ".join(f"{t:%Y-%m-%d %H:00} +{n} h" for t, n in trace.gaps[:3])
        gaps += f", filled by {trace.fill}: {first}{' ...' if len(trace.gaps) > 3 else ''}"
    rows = [
        ("zone", f"{trace.zone_id} ({trace.zone_name})"),
        ("basis", trace.basis),
        ("hours", str(s["n_hours"])),
        ("span (UTC)", f"{trace.start_utc:%Y-%m-%d %H:00} .. {trace.end_utc:%Y-%m-%d %H:00}"),
        ("min / mean / max", f"{s['ci_min_g_per_kwh']:.1f} / {s['ci_mean_g_per_kwh']:.1f} / "
                             f"{s['ci_max_g_per_kwh']:.1f} gCO2eq/kWh"),
        ("p10 / p90", f"{s['ci_p10_g_per_kwh']:.1f} / {s['ci_p90_g_per_kwh']:.1f} gCO2eq/kWh"),
        ("gaps", gaps),
    ]
    if trace.fill and not trace.gaps:
        rows.append(("built", trace.fill))
    for row in rows:
        table.add_row(*row)
    return table


def _plot_trace(trace: "GridTrace", path: Path) -> None:
    """PNG with the hourly trace (top) and its mean by UTC hour (bottom)."""
    import numpy as np

    from aolo.figures import pyplot, save_figure

    plt = pyplot()

    from .grid import HOUR

    start = trace.start_utc.replace(tzinfo=None)  # naive UTC: matplotlib labels it as is
    times = [start + h * HOUR for h in range(trace.n_hours)]
    fig, (ax_trace, ax_day) = plt.subplots(2, 1, figsize=(10, 6.5), layout="constrained")
    ax_trace.plot(times, trace.ci_g_per_kwh, lw=0.5, color="tab:green")
    for gap_start, n in trace.gaps:  # filled hours, shaded
        gap_start = gap_start.replace(tzinfo=None)
        ax_trace.axvspan(gap_start, gap_start + n * HOUR, color="tab:red", alpha=0.3)
    ax_trace.set_title(f"{trace.zone_id} ({trace.zone_name}), {trace.basis} carbon intensity")
    ax_trace.set_xlabel("time (UTC)")
    ax_trace.set_ylabel("gCO2eq/kWh")
    if trace.n_hours >= 24:
        ax_day.plot(np.arange(24), trace.mean_by_utc_hour(), marker="o", color="tab:green")
        ax_day.axhline(trace.ci_g_per_kwh.mean(), ls="--", color="grey", label="overall mean")
        ax_day.legend()
    ax_day.set_xticks(range(0, 24, 3))
    ax_day.set_xlabel("hour of day (UTC)")
    ax_day.set_ylabel("mean gCO2eq/kWh")
    ax_day.set_title("24-h mean profile")
    for ax in (ax_trace, ax_day):
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


# ---------------------------------------------------------------------------------------------
# aolo serve
# ---------------------------------------------------------------------------------------------


class Precision(str, Enum):
    """Arithmetic a backend runs in."""

    float = "float"
    fixed = "fixed"


def _register_serve(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        bundle: Path = typer.Argument(..., metavar="BUNDLE", help="policy bundle directory (aolo export)"),
        upstream: Optional[str] = typer.Option(
            None, "--upstream", metavar="URL",
            help="OpenAI-compatible LLM server to forward chat requests to, e.g. http://127.0.0.1:8000/v1 "
                 "(llama.cpp, vLLM, Ollama); without it only the sidecar routes serve"),
        tokens: Optional[Path] = typer.Option(
            None, "--tokens", metavar="FILE.toml",
            help="bearer tokens and their scopes (serve, report, read); make one with `aolo token`. "
                 "Without it every route is open"),
        directives: Optional[Path] = typer.Option(
            None, "--directives", metavar="FILE.toml",
            help="directive wording, placement and max_tokens per level ([L1], [L2] tables)",
            show_default="L1 'Answer briefly, in a few sentences.' cap 300, L2 'Answer very briefly, in one "
                         "sentence.' cap 220, appended to the last user turn"),
        backend: str = typer.Option("onnx", "--backend", help="onnx, reference or lava"),
        precision: Precision = typer.Option(Precision.float, "--precision", help="float, or fixed (lava only)"),
        host: str = typer.Option("127.0.0.1", "--host", help="interface to bind"),
        port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port; 0 picks a free one"),
        ledger: Path = typer.Option(Path("aolo-ledger.db"), "--ledger", metavar="PATH.db",
                                    help="SQLite carbon ledger, created (mode 0600) if absent"),
        radio: str = typer.Option(DEFAULT_RADIO_PROFILE, "--radio", help="radio profile (macro, micro, pico)"),
        server: str = typer.Option(DEFAULT_SERVER_PROFILE, "--server", help="LLM server profile"),
        grid: str = typer.Option(DEFAULT_GRID_ZONE, "--grid", help="grid zone (embedded) or Electricity Maps CSV"),
        upstream_timeout_s: float = typer.Option(300.0, "--upstream-timeout-s", min=0.001,
                                                 help="longest wait for the upstream's next bytes, s"),
        max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="largest request body, bytes"),
        limit_concurrency: int = typer.Option(1024, "--limit-concurrency", min=1,
                                              help="most connections and requests at once (503 beyond)"),
        max_pending: int = typer.Option(100_000, "--max-pending", min=1,
                                        help="most decisions waiting for their outcome (429 beyond)"),
        pending_ttl_s: float = typer.Option(3600.0, "--pending-ttl-s", min=0.001,
                                            help="how long a decision waits for its outcome, s"),
        actor_hardware: Optional[str] = typer.Option(
            None, "--actor-hardware", help="hardware the ledger charges the actor's energy for",
            show_default="lava -> loihi2, onnx/reference -> server-cpu"),
        trusted_keys: Optional[Path] = typer.Option(
            None, "--trusted-keys", metavar="DIR",
            help="folder of *.pub keys: serve only a bundle signed by one of them", show_default="unsigned bundles serve"),
        llm_energy: str = typer.Option(
            "auto", "--llm-energy", metavar="auto|measure|model",
            help="LLM energy of proxied answers: measure reads this machine's GPUs (NVML, through Zeus: "
                 "pip install 'aolo\\[measure]') over each answer's window and shares it by tokens; model uses "
                 "the server profile; auto measures the GPUs a process computes on when the upstream is on "
                 "loopback and a GPU counter is readable"),
        verbose: bool = typer.Option(False, "--verbose", help="log every request; tracebacks on errors"),
    ) -> None:
        """Serve a policy bundle: an OpenAI-compatible, carbon-aware gateway (POST /v1/chat/completions,
        GET /v1/models, with --upstream) and the sidecar routes (POST /v1/decide, /v1/outcome,
        /v1/feedback; GET /v1/carbon, /metrics, /healthz).

        Before it listens, the backend replays the bundle's recorded observations and must match
        the bundle's reference actions, else serve refuses to start. Every served request is
        committed to the ledger before it is acknowledged. SIGTERM or SIGINT lets requests in
        flight finish, then closes the backend and the ledger. The upstream key, if it needs one,
        is read from $AOLO_UPSTREAM_API_KEY.

        Example: aolo serve runs/bundle --upstream http://127.0.0.1:8000/v1 --tokens tokens.toml --ledger carbon.db
        """
        import logging
        import os
        import sys

        from pydantic import ValidationError

        from aolo.hw_profiles import ProfileError

        from .backends import BackendError
        from .bundle import BundleError
        from .gateway import GatewaySettings, SettingsError, create_app, load_directives, open_service
        from .gateway.serve import bind, run
        from .ledger import LedgerError
        from .service import ServiceError
        from .signing import SigningKeyError

        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not verbose:
            # httpx logs every upstream call at INFO, a line per proxied request (~2% of the proxy
            # path's CPU in py-spy); upstream calls are counted in /metrics and faults logged here
            logging.getLogger("httpx").setLevel(logging.WARNING)
        service = None
        try:
            settings = GatewaySettings(
                bundle=bundle, backend=backend, precision=precision.value, ledger=ledger, radio=radio, server=server,
                grid=grid, actor_hardware=actor_hardware, trusted_keys=trusted_keys, host=host, port=port, upstream_url=upstream,
                upstream_api_key=os.environ.get("AOLO_UPSTREAM_API_KEY") or None, llm_energy=llm_energy,
                upstream_read_timeout_s=upstream_timeout_s, tokens_file=tokens, max_body_bytes=max_body_bytes,
                limit_concurrency=limit_concurrency, max_pending=max_pending, pending_ttl_s=pending_ttl_s,
                **({"directives": load_directives(directives)} if directives is not None else {}))
            service, hardware = open_service(settings)
            sock = bind(host, port)
        except ValidationError as e:
            err = e.errors()[0]
            typer.echo(f"error: --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}", err=True)
            raise typer.Exit(2)
        except (BundleError, BackendError, ProfileError, LedgerError, ServiceError, SettingsError, SigningKeyError,
                ValueError, OSError) as e:
            if service is not None:
                service.close()
            if verbose:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        if tokens is None and host not in ("127.0.0.1", "localhost", "::1"):
            logging.getLogger("aolo.runtime.gateway").warning(
                "binding %s without --tokens: every route is open to anyone who can reach it", host)
        real_port = sock.getsockname()[1]

        def ready(gw) -> None:  # one line on stdout, flushed: scripts and tests read the port from it
            be = gw.service.backend
            typer.echo(f"aolo serve: listening on http://{host}:{real_port} (backend {be.name}/{be.precision} on "
                       f"{getattr(be, 'execution_provider', be.name)}, bundle {gw.service.bundle.sha256[:12]}, " +
                       (f"signed by trusted key {gw.service.bundle_signer}, " if gw.service.bundle_signer else "") +
                       f"ledger {ledger}, "
                       f"upstream {upstream or 'none'}, tokens {tokens or 'none'}, LLM energy {gw.llm_energy_note}, " +
                       (f"actor energy {be.energy_per_decision_j:.3g} J per decision on {hardware}, estimated)"
                        if hardware else "actor energy unknown: the bundle has no op counts)"))
            sys.stdout.flush()

        try:
            app = create_app(settings, service=service, actor_hardware=hardware, on_ready=ready)
        except SettingsError as e:
            service.close()
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        run(app, settings, sock)
        typer.echo("aolo serve: stopped; backend and ledger closed")

    @app.command("token")
    def token(
        name: str = typer.Option(..., "--name", help="who holds it (shown in logs, never the token)"),
        scopes: str = typer.Option("serve,report,read", "--scopes",
                                   help="comma-separated: serve (decide, proxy), report (outcome, feedback), "
                                        "read (carbon, metrics)"),
    ) -> None:
        """Make a random bearer token: prints the token (give it to the client) and, on the next
        lines, the [[tokens]] table to append to the file given to `aolo serve --tokens` (it holds
        only the token's SHA-256).

        Example: aolo token --name ran-1 --scopes serve,report >> issued.txt
        """
        from .gateway import SettingsError
        from .gateway.auth import new_token

        try:
            value, table = new_token(name, tuple(s.strip() for s in scopes.split(",") if s.strip()))
        except (SettingsError, ValueError) as e:
            typer.echo(f"error: {e}".splitlines()[0], err=True)
            raise typer.Exit(2)
        typer.echo(value)
        typer.echo(table, nl=False)


# ---------------------------------------------------------------------------------------------
# aolo energy
# ---------------------------------------------------------------------------------------------


def _register_energy(app: typer.Typer) -> None:
    @app.command("energy")
    def energy(
        bundle: Optional[Path] = typer.Argument(None, help="a policy bundle (omit with --compare)"),
        compare: Optional[list[Path]] = typer.Option(None, "--compare", help="SNN_BUNDLE then ANN_BUNDLE: give twice"),
        hardware: str = typer.Option(",".join(HARDWARE), "--hardware",
                                     help="actor-hardware profiles to price on"),
        n_obs: int = typer.Option(200, "--n-obs", min=1, help="representative observations to run"),
        no_lava: bool = typer.Option(False, "--no-lava", help="count spikes with the numpy reference, not Lava"),
        plot: Optional[Path] = typer.Option(None, "--plot", help="with --compare: write a log-scale bar chart PNG"),
        measure: bool = typer.Option(
            False, "--measure",
            help="also run the ONNX actor on this machine (CUDA if this onnxruntime build has it) at batch 1 and 256 "
                 "and measure its energy with Zeus (NVML, RAPL: pip install 'aolo\\[measure]'), idle baseline "
                 "subtracted; without a readable counter, says why and shows the estimate"),
        repeats: int = typer.Option(5, "--repeats", min=1, max=100, help="with --measure: windows per batch size"),
        window_s: float = typer.Option(1.0, "--window-s", min=0.05, max=60.0,
                                       help="with --measure: length of each window, s"),
        idle_s: float = typer.Option(1.0, "--idle-s", min=0.05, max=60.0,
                                     help="with --measure: idle baseline before each batch size, s"),
    ) -> None:
        """Actor energy per decision on each hardware: spikes, SynOps, neuron updates and MACs counted
        from a real run, priced with hw profiles (dynamic per-op energy + static power x latency), every
        figure estimated; with --measure, measured on this machine where an energy counter is readable.

        Examples: aolo energy bundles/sdrl --measure ; aolo energy --compare bundles/sdrl --compare bundles/sac --plot e.png
        """
        from aolo.console import console

        from .backends import BackendError
        from .bundle import BundleError
        from .energy_counters import find_counters
        from .energy_report import (compare_table, counter_note, energy_table, measure_bundle, measure_bundle_energy,
                                    measured_table, plot_compare, source_lines)

        names = tuple(h.strip() for h in hardware.split(",") if h.strip())
        paths = list(compare or [])
        if paths and len(paths) != 2:
            typer.echo("error: --compare takes exactly two bundles (SNN then ANN)", err=True)
            raise typer.Exit(2)
        if not paths and bundle is None:
            typer.echo("error: give a BUNDLE, or --compare SNN_BUNDLE --compare ANN_BUNDLE", err=True)
            raise typer.Exit(2)
        out = console()
        search = find_counters()
        try:
            results = [measure_bundle(p, names, n_obs, use_lava=not no_lava) for p in (paths or [bundle])]
            measured = ([measure_bundle_energy(p, repeats=repeats, window_s=window_s, idle_s=idle_s, search=search)
                         for p in (paths or [bundle])] if measure else [])
        except (BundleError, BackendError, ValueError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        out.print(counter_note(search), markup=False, highlight=False)
        for m in measured:
            out.print(measured_table(m))
        for r in results:
            out.print(energy_table(r))
        out.print("Sources:\n" + "\n".join(f"  {line}" for line in dict.fromkeys(sum((source_lines(r) for r in results), []))),
                  markup=False, highlight=False)
        if paths:
            out.print(compare_table(*results))
            if plot is not None:
                typer.echo(f"wrote {plot_compare(*results, plot)}")
