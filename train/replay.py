"""``aolo replay``: a day of simulated requests pushed through the full runtime.

Each step, every base station's request becomes runtime telemetry; the runtime's
:class:`~aolo.runtime.service.PolicyService` decides with the bundle's backend; the simulator
serves the request with that decision; the outcome is recorded in a real SQLite ledger. The
carbon report comes from the ledger, and the same policy is evaluated by ``evaluate_policy`` on the
same seed, so the two totals can be compared: they must be equal. For Lava's fixed point the
evaluation decides with the bundle's integer model, which the Lava network reproduces bit for bit,
so the day runs through Lava once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from aolo.runtime.policy_io import LEVELS, TASK_CLASSES

from .evaluate import EvalResult, evaluate_policy
from .policies import ActorPolicy
from .scenario import ScenarioConfig
from .simulator import BatchSimulator, ServiceModel


@dataclass
class ReplayResult:
    """Ledger totals of the replay beside the evaluation of the same policy on the same seed."""

    ledger_path: Path
    ledger_totals: dict
    evaluation: EvalResult
    backend: str
    precision: str
    actor_hardware: str
    actor_energy_j: float
    fallbacks: int


def replay(bundle_path: str | Path, scenario: ScenarioConfig, seed: int, ledger_path: str | Path,
           backend: str = "onnx", precision: str = "float", actor_hardware: str | None = None, n_bs: int = 1,
           days: int = 1, progress=None) -> ReplayResult:
    """Replay ``days`` days at ``n_bs`` base stations through the runtime into ``ledger_path``.

    :param actor_hardware: hardware the ledger charges the actor's energy for; default by backend
        (lava: Loihi 2, onnx/reference: server CPU)
    """
    from aolo.runtime.backends import LAVA_FIXED_TARGET, make_backend
    from aolo.runtime.bundle import PolicyBundle
    from aolo.runtime.fixed_point import load_fixed_point
    from aolo.runtime.energy import charge_actor_energy
    from aolo.runtime.ledger import Ledger
    from aolo.runtime.service import Outcome, PolicyService, Telemetry

    bundle = PolicyBundle.load(bundle_path)
    be = make_backend(backend, bundle, precision)
    hardware = charge_actor_energy(be, bundle, actor_hardware)
    if hardware is None:
        be.close()
        raise ValueError(f"{bundle_path}: the bundle has no op counts, so its actor energy is unknown")
    model = ServiceModel(scenario)
    model.actor_energy_j = be.energy_per_decision_j
    ledger_path = Path(ledger_path)
    if ledger_path.exists():
        raise FileExistsError(f"{ledger_path}: the ledger exists already; replay writes a fresh one")
    ledger = Ledger(ledger_path)
    service = PolicyService(bundle, be, ledger, model.server, model.radio, model.grid,
                            quality_tolerance_xi=scenario.quality_tolerance_xi, quality_window=scenario.quality_window,
                            include_radio=scenario.include_radio)
    sim = BatchSimulator(model, n_bs=n_bs, seed=seed)
    # the simulator's inference energy: Sprout's NVML measurements on a trace, the server profile's model otherwise
    energy_kind = "measured" if scenario.requests_csv is not None else "modelled"
    ctx = sim.reset(seed=seed)
    start_utc = model.grid.start_utc
    task = progress.add_task(f"replay {backend}/{precision}", total=None) if progress is not None else None
    try:
        with ThreadPoolExecutor(max_workers=min(16, max(1, n_bs))) as pool:
            while (sim.episode_count <= days).any():
                live = np.flatnonzero(sim.episode_count <= days)  # BSs still in their replayed days
                tags = {b: f"{seed}-{b}-{int(sim.episode_count[b])}-{int(sim.pos[b])}" for b in live}
                telemetry = [Telemetry(
                    request_id=tags[b],
                    timestamp_utc=start_utc + timedelta(hours=int(ctx.hour_index[b]), seconds=float(ctx.arrival_s[b] % 3600.0)),
                    task_class=TASK_CLASSES[int(ctx.task_class[b])], prompt_tokens=int(ctx.prompt_tokens[b]),
                    deadline_s=float(ctx.deadline_s[b]), gain_db=float(ctx.gain_db[b]),
                    active_sessions=int(ctx.active_sessions[b]), ci_g_per_kwh=float(ctx.ci_g_per_kwh[b]),
                    ci_norm=float(ctx.ci_norm[b]), quality_slack=float(np.clip(ctx.quality_slack[b], -1, 1)))
                    for b in live]
                # BSs past their days idle at BASE's decision; nothing of theirs is recorded
                level = np.zeros(n_bs, dtype=np.int64)
                power = np.full(n_bs, model.link.p_max_w)
                for b, d in zip(live, service.decide(telemetry)):
                    level[b], power[b] = d.level_index, d.tx_power_w
                rows = np.arange(n_bs)
                served = dict(tokens=ctx.output_tokens[rows, level], energy=ctx.inference_energy_j[rows, level],
                              latency=ctx.inference_latency_s[rows, level])
                out = sim.step(level, power)
                outcomes = [Outcome(
                    request_id=tags[b], output_tokens=int(round(served["tokens"][b])),
                    inference_energy_j=float(served["energy"][b]), inference_latency_s=float(served["latency"][b]),
                    inference_energy_kind=energy_kind,
                    airtime_s=float(out.airtime_s[b]), harq_tries=int(out.tries[b]), outage=bool(out.outage[b]),
                    tx_power_w=float(out.tx_power_w[b]), quality=float(out.quality[b]),
                    quality_base=float(out.quality_base[b])) for b in live]
                list(pool.map(service.record, outcomes))
                ctx = sim.context
                if progress is not None:
                    progress.advance(task, len(outcomes))
        totals = ledger.totals()
        fallbacks = service.fallback_count
    finally:
        service.close()
    if backend == "lava" and precision == "fixed" and LAVA_FIXED_TARGET in bundle.targets:
        # the bundle's integer model: Lava's bit-accurate network reproduces it exactly
        # (tests/test_lava_backend.py), and in numpy it runs a day in seconds, not minutes
        fixed = load_fixed_point(bundle.spec, bundle.file(LAVA_FIXED_TARGET))
        evaluation = evaluate_policy(ActorPolicy(f"{backend}/{precision}", fixed.forward), model, [seed], n_bs=n_bs,
                                     days=days)
    else:
        reference = make_backend(backend, bundle, precision)
        try:
            evaluation = evaluate_policy(ActorPolicy(f"{backend}/{precision}", reference.decide), model, [seed],
                                         n_bs=n_bs, days=days)
        finally:
            reference.close()
    return ReplayResult(ledger_path=ledger_path, ledger_totals=totals, evaluation=evaluation, backend=backend,
                        precision=precision, actor_hardware=hardware, actor_energy_j=model.actor_energy_j,
                        fallbacks=fallbacks)


def level_counts(totals: dict) -> dict[str, int]:
    """Requests per directive level in the ledger totals."""
    return {lv: int(totals.get("by_level", {}).get(lv, 0)) for lv in LEVELS}
