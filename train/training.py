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

import io
import json
import random
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aolo.runtime.atomic_files import write_json_atomic

from .train_config import TrainConfig

__all__ = ["seed_everything", "train", "run_dir_name", "library_versions", "sac_kwargs", "load_checkpoint"]

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
          trust_run: bool = False, on_validation: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train SDRL or SAC on a scenario and write (or continue) a run directory.

    :param config: the run's config; with ``resume``, the run dir's own config is used and only
        ``steps`` (the new total), ``torch_threads`` and ``device`` are taken from this one
    :param resume: a run dir to continue from its last checkpoint (its step count, simulator day
        counters and, if saved, replay buffer), whose files must match its ``run_manifest.json``
        (:func:`aolo.train.checkpoint.verified_checkpoint`: resume unpickles SB3's files)
    :param show_progress: show the rich progress bar and the config table (stderr)
    :param trust_run: resume without checking the files against the manifest (a run directory
        saved by an older aolo, which has none, and that you trust)
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
    pickled: dict[str, bytes] = {}
    if resume is not None:  # config.json: rewritten by the next checkpoint, which the manifest covers
        run_dir, config, state, pickled = _resume_point(Path(resume), config, show_progress, trust_run)
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
    model = _make_model(config, env) if resume is None else _load_model(config, env, run_dir, state, pickled)
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


def _resume_point(run_dir: Path, config: TrainConfig, show_progress: bool,
                  trust_run: bool) -> tuple[Path, TrainConfig, dict[str, Any], dict[str, bytes]]:
    """The run dir's own config (with ``config``'s steps, torch threads and device), its last
    checkpoint's state and the bytes of its pickled files, checked against its manifest, after
    finishing or discarding a checkpoint that a kill interrupted.

    :raises ValueError: not a run directory with a checkpoint, or files that do not match the
        manifest (named)
    """
    from .checkpoint import recover_checkpoint, verified_checkpoint
    from .run import CONFIG_FILE, MODEL_FILE, STATE_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    recovered = recover_checkpoint(run_dir)
    if recovered is not None and show_progress:
        print(recovered, file=sys.stderr)
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / STATE_FILE).is_file():
        raise ValueError(f"{run_dir}: the run has no checkpoint yet (no {MODEL_FILE} or {STATE_FILE})")
    pickled = verified_checkpoint(run_dir, trust_run=trust_run)
    saved = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()), str(run_dir / CONFIG_FILE))
    config = saved.with_(steps=config.steps, torch_threads=config.torch_threads, device=config.device)
    return run_dir, config, json.loads((run_dir / STATE_FILE).read_text()), pickled


def _make_model(config: TrainConfig, env: Any) -> Any:
    """A fresh :class:`aolo.train.sac_policy.EntropyRateSAC` of the config on ``env``."""
    from .sac_policy import make_sac

    return make_sac(config.algo, env, seed=config.seed, popsan=config.popsan if config.algo == "sdrl" else None,
                    **sac_kwargs(config))


def _load_model(config: TrainConfig, env: Any, run_dir: Path, state: dict[str, Any], pickled: dict[str, bytes]) -> Any:
    """The checkpoint's model on ``env``, its replay buffer if saved, the env's days continued
    where the checkpoint left them.

    :param pickled: the bytes of ``model.zip`` and (if present) ``replay_buffer.pkl`` that
        :func:`aolo.train.checkpoint.verified_checkpoint` checked: SB3 unpickles exactly those
    :raises ValueError: the model and train_state.json disagree on the step, or an unreadable buffer
    """
    from .run import MODEL_FILE, REPLAY_FILE, STATE_FILE

    model = _sb3_model(pickled[MODEL_FILE], env, config.torch_device)
    if model.num_timesteps != int(state["num_timesteps"]):
        raise ValueError(f"{run_dir / MODEL_FILE}: step {model.num_timesteps} does not match {STATE_FILE}'s "
                         f"{state['num_timesteps']} (a checkpoint written before checkpoints were staged, interrupted)")
    if config.save_replay_buffer and REPLAY_FILE in pickled:
        try:
            model.load_replay_buffer(io.BytesIO(pickled[REPLAY_FILE]))
        except (ModuleNotFoundError, AttributeError) as e:
            raise ValueError(f"{run_dir / REPLAY_FILE}: written by an older aolo ({e}); delete it to resume "
                             "without the buffer") from None
    env.start_days_at(np.asarray(state.get("episode_count", np.zeros(config.n_envs)), dtype=np.int64))
    return model


def _sb3_model(model_zip: bytes, env: Any, device: str) -> Any:
    """SB3's ``load`` of a ``model.zip``'s bytes (it unpickles them: only bytes checked against a
    run's manifest, or that the user vouched for)."""
    from .run import sb3_custom_objects
    from .sac_policy import EntropyRateSAC

    return EntropyRateSAC.load(io.BytesIO(model_zip), env=env, device=device, custom_objects=sb3_custom_objects())


def load_checkpoint(run_dir: str | Path, trust_run: bool = False) -> Any:
    """The SB3 model of a run's last checkpoint (optimisers, entropy coefficient, step count), on
    CPU and without an env, after its files are checked against ``run_manifest.json``; for
    inspecting training state. The deployed actor needs none of this:
    :func:`aolo.train.run.load_run` reads it without unpickling.

    :param trust_run: skip the manifest check (a run saved by an older aolo that you trust)
    :raises ValueError: no checkpoint, or files that do not match the manifest (named)
    """
    from .checkpoint import verified_checkpoint
    from .run import MODEL_FILE

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise ValueError(f"{run_dir / MODEL_FILE}: missing (the run has no checkpoint yet)")
    return _sb3_model(verified_checkpoint(run_dir, trust_run=trust_run)[MODEL_FILE], None, "cpu")


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
