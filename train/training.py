"""One training run of SDRL (PopSAN actor) or SAC (MLP actor), readable top to bottom.

    config -> seed_everything -> vector env of n_envs base stations -> make_sac -> SB3 learn with
    TrainingMonitor (rich progress bar, logs, validation, checkpoints) -> run dir

The two algorithms share everything but the actor (:func:`aolo.train.sac_policy.make_sac`). A run
writes ``runs/<scenario>__<algo>__<seed>__<timestamp>/`` (see :mod:`aolo.train.run` for its files)
and can be resumed from it. Periodic evaluations use the validation seeds
(:data:`aolo.train.seeds.VALIDATION_SEEDS`); the evaluation seeds of ``aolo evaluate``/``aolo compare``
(:data:`aolo.train.seeds.EVAL_SEEDS`) are never used here, nor are training seeds among either.

The training-only reward terms (``quality_bonus``, ``deficit_bonus``; :mod:`aolo.train.reward`)
change what the agent optimises, never what is measured: evaluations report carbon and QoE from
the simulator.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aolo.runtime.atomic_files import write_json_atomic

from .train_config import TrainConfig

__all__ = ["seed_everything", "train", "run_dir_name", "library_versions", "sac_kwargs"]

# =============================================================================================
# Seeding and run directory (TRY NOT TO MODIFY)
# =============================================================================================
def seed_everything(seed: int) -> None:
    """Seed python, numpy's global generator and torch, and ask torch for deterministic CPU kernels.

    The environment is seeded separately and explicitly (BS b's k-th day from ``[seed, b, k]``),
    and SB3 seeds its action space from the same ``seed``.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def run_dir_name(config: TrainConfig, when: datetime | None = None) -> str:
    """``<scenario>__<algo>__<seed>__<UTC timestamp>`` (CleanRL's run naming)."""
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
    return f"{config.scenario}__{config.algo}__{config.seed}__{stamp}"


def _new_run_dir(parent: Path, name: str) -> Path:
    """Create ``parent/name``, or ``name_2``, ``name_3``… when runs start in the same second."""
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        path = parent / (name if k == 1 else f"{name}_{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ValueError(f"{parent}: cannot create a run directory named {name}")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, for ``versions.json``."""
    from importlib.metadata import PackageNotFoundError, version
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("aolo", "torch", "snntorch", "stable-baselines3", "gymnasium", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# =============================================================================================
# The run
# =============================================================================================
def sac_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The :class:`aolo.train.sac_policy.EntropyRateSAC` arguments of a config (everything but
    policy, env, seed)."""
    from stable_baselines3.common.utils import LinearSchedule

    ent: Any = config.ent_coef if config.ent_coef.startswith("auto") else float(config.ent_coef)
    lr: Any = config.learning_rate
    if config.learning_rate_end is not None:
        lr = LinearSchedule(config.learning_rate, config.learning_rate_end, end_fraction=1.0)
    return dict(
        learning_rate=lr, buffer_size=config.buffer_size,
        learning_starts=config.learning_starts, batch_size=config.batch_size, tau=config.tau, gamma=config.gamma,
        train_freq=config.train_freq, gradient_steps=config.gradient_steps, ent_coef=ent, ent_coef_lr=config.ent_coef_lr,
        target_entropy=config.target_entropy if config.target_entropy is not None else "auto",
        policy_kwargs={"net_arch": {"pi": list(config.actor_hidden), "qf": list(config.critic_hidden)}},
        device=config.torch_device, verbose=0,
    )


def _print_config(config: TrainConfig, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"aolo train -> {run_dir}", show_header=True)
    table.add_column("field")
    table.add_column("value")
    for k, v in config.to_dict().items():
        table.add_row(k, str(v))
    Console(stderr=True).print(table)


def train(config: TrainConfig, resume: str | Path | None = None, show_progress: bool = True,
          on_validation: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train SDRL or SAC on a scenario and write (or continue) a run directory.

    :param config: the run's config; with ``resume``, the run dir's own config is used and only
        ``steps`` (the new total), ``torch_threads`` and ``device`` are taken from this one
    :param resume: a run dir to continue from its last checkpoint (its step count, simulator day
        counters and, if saved, replay buffer)
    :param show_progress: show the rich progress bar and the config table (stderr)
    :param on_validation: called after each validation with its evaluations.jsonl line as a dict
        (:class:`aolo.train.monitor.TrainingMonitor`; ``aolo sweep`` reports it to Ray Tune)
    :return: the run directory
    """
    import torch

    from .monitor import TrainingMonitor, make_logger
    from .run import CONFIG_FILE, VERSIONS_FILE
    from .sb3_vec_env import ServiceVecEnv
    from .scenario import get_scenario
    from .simulator import ServiceModel

    # --- config and run dir -------------------------------------------------------------------
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device 'cuda': torch sees no CUDA device here")
    state: dict[str, Any] = {}
    if resume is not None:
        run_dir, config, state = _resume_point(Path(resume), config, show_progress)
    else:
        run_dir = _new_run_dir(Path(config.out_dir), run_dir_name(config))
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    write_json_atomic(run_dir / VERSIONS_FILE, library_versions())
    if show_progress:
        _print_config(config, run_dir)

    # --- seeding ------------------------------------------------------------------------------
    torch.set_num_threads(config.torch_threads)
    seed_everything(config.seed)

    # --- environment: n_envs base stations, one numpy simulator ----------------------------------
    scenario = get_scenario(config.scenario)
    env = ServiceVecEnv(scenario, n_envs=config.n_envs, model=ServiceModel(scenario), seed=config.seed,
                        quality_bonus=config.quality_bonus, deficit_bonus=config.deficit_bonus)

    # --- ALGO LOGIC: SAC with the PopSAN actor (sdrl) or the MLP actor (sac) ----------------------
    model = _make_model(config, env) if resume is None else _load_model(config, env, run_dir, state)
    average = _actor_average(config, run_dir if resume is not None else None)
    model.set_logger(make_logger(run_dir, int(state["num_timesteps"]) if resume is not None else None))
    if resume is None:
        model.logger.record("config", json.dumps(config.to_dict(), indent=1), exclude=("stdout", "log", "csv", "json"))

    # --- learn ----------------------------------------------------------------------------------
    remaining = config.steps - model.num_timesteps
    if remaining > 0:
        monitor = TrainingMonitor(config, run_dir, env, show_progress, wall_offset_s=float(state.get("wall_s", 0.0)),
                                  average=average, on_validation=on_validation)
        # log_interval=None: the monitor dumps the logs (a day is ~4k steps per BS, too rare for SB3's)
        model.learn(total_timesteps=remaining, callback=monitor, log_interval=None,  # type: ignore[arg-type]
                    reset_num_timesteps=resume is None)
    model.logger.close()
    return run_dir


def _resume_point(run_dir: Path, config: TrainConfig, show_progress: bool) -> tuple[Path, TrainConfig, dict[str, Any]]:
    """The run dir's own config (with ``config``'s steps, torch threads and device) and its last
    checkpoint's state, after finishing or discarding a checkpoint that a kill interrupted.

    :raises ValueError: not a run directory with a checkpoint (named)
    """
    from .checkpoint import recover_checkpoint
    from .run import CONFIG_FILE, MODEL_FILE, STATE_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    recovered = recover_checkpoint(run_dir)
    if recovered is not None and show_progress:
        print(recovered, file=sys.stderr)
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / STATE_FILE).is_file():
        raise ValueError(f"{run_dir}: the run has no checkpoint yet (no {MODEL_FILE} or {STATE_FILE})")
    saved = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()), str(run_dir / CONFIG_FILE))
    config = saved.with_(steps=config.steps, torch_threads=config.torch_threads, device=config.device)
    return run_dir, config, json.loads((run_dir / STATE_FILE).read_text())


def _make_model(config: TrainConfig, env: Any) -> Any:
    """A fresh :class:`aolo.train.sac_policy.EntropyRateSAC` of the config on ``env``."""
    from .sac_policy import make_sac

    return make_sac(config.algo, env, seed=config.seed, popsan=config.popsan if config.algo == "sdrl" else None,
                    **sac_kwargs(config))


def _load_model(config: TrainConfig, env: Any, run_dir: Path, state: dict[str, Any]) -> Any:
    """The checkpoint's model on ``env``, its replay buffer if saved, the env's days continued
    where the checkpoint left them.

    :raises ValueError: the model and train_state.json disagree on the step, or an unreadable buffer
    """
    from .run import MODEL_FILE, REPLAY_FILE, STATE_FILE, sb3_custom_objects
    from .sac_policy import EntropyRateSAC

    model = EntropyRateSAC.load(run_dir / MODEL_FILE, env=env, device=config.torch_device,
                                custom_objects=sb3_custom_objects())
    if model.num_timesteps != int(state["num_timesteps"]):
        raise ValueError(f"{run_dir / MODEL_FILE}: step {model.num_timesteps} does not match {STATE_FILE}'s "
                         f"{state['num_timesteps']} (a checkpoint written before checkpoints were staged, interrupted)")
    if config.save_replay_buffer and (run_dir / REPLAY_FILE).is_file():
        try:
            model.load_replay_buffer(run_dir / REPLAY_FILE)
        except (ModuleNotFoundError, AttributeError) as e:
            raise ValueError(f"{run_dir / REPLAY_FILE}: written by an older aolo ({e}); delete it to resume "
                             "without the buffer") from None
    env.start_days_at(np.asarray(state.get("episode_count", np.zeros(config.n_envs)), dtype=np.int64))
    return model


def _actor_average(config: TrainConfig, resumed_run: Path | None) -> Any:
    """The run's :class:`aolo.train.actor_average.ActorAverage` (None when it averages nothing):
    a resumed run keeps its saved average if that lies inside this run's window (an interrupted
    run); a run resumed to more steps moves the window past it, and averaging starts again."""
    from .actor_average import ActorAverage
    from .run import ACTOR_AVERAGE_FILE

    if not config.actor_average_window:
        return None
    if resumed_run is not None and (resumed_run / ACTOR_AVERAGE_FILE).is_file():
        saved = ActorAverage.load(resumed_run / ACTOR_AVERAGE_FILE)
        if saved.first_step is not None and saved.first_step > config.actor_average_start:
            return saved
    return ActorAverage()
