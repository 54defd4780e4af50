"""One training run of SDRL (PopSAN actor) or SAC (MLP actor), readable top to bottom.

    config -> seed_everything -> vector env of n_envs base stations -> make_sac -> SB3 learn with
    make_monitor (rich progress bar, logs, validation, checkpoints) -> run dir

The two algorithms share everything but the actor (:func:`aolo.train.sac_policy.make_sac`). A run
writes ``runs/<scenario>__<algo>__<seed>__<timestamp>/`` (see :mod:`aolo.train.run` for its files)
and can be resumed from it. Periodic evaluations use the validation seeds
(:data:`aolo.train.seeds.VALIDATION_SEEDS`); the evaluation seeds of ``aolo evaluate``/``aolo compare``
(:data:`aolo.train.seeds.EVAL_SEEDS`) are never used here, nor are training seeds among either.

Training-only reward shaping (``quality_bonus``, ``quality_target``, ``reward_scale``, penalty
overrides; :mod:`aolo.train.reward_shaping`) changes what the agent optimises, never what is
measured: evaluations report carbon and QoE from the simulator.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aolo.runtime.atomic_files import write_json_atomic, write_text_atomic

from .seeds import CALIBRATION_SEED
from .train_config import TrainConfig

__all__ = ["seed_everything", "train", "run_dir_name", "library_versions", "sac_kwargs", "make_monitor"]

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


def _append_line(path: Path, line: str, out: Path) -> None:
    """Write ``path``'s lines (if it exists) and then ``line`` to ``out``."""
    old = path.read_text() if path.is_file() else ""
    out.write_text(old + line + "\n")


# =============================================================================================
# Logging, validation and checkpoints: one SB3 callback
# =============================================================================================
def _make_logger(run_dir: Path, resume_step: int | None) -> Any:
    """SB3 logger writing ``progress.csv`` and TensorBoard events under ``run_dir/tb``. On resume
    the csv keeps its rows up to the checkpoint and appends after them."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

    class ResumableCSV(CSVOutputFormat):
        def __init__(self, filename: Path) -> None:
            if resume_step is None or not filename.is_file() or filename.stat().st_size == 0:
                super().__init__(str(filename))
                return
            lines = filename.read_text().splitlines()
            keys = lines[0].split(",")
            step_col = keys.index("global_step") if "global_step" in keys else None
            kept = [ln for ln in lines[1:] if step_col is None or not ln.split(",")[step_col]
                    or float(ln.split(",")[step_col]) <= resume_step]
            write_text_atomic(filename, "\n".join([lines[0], *kept]) + "\n")
            self.file = open(filename, "r+")  # noqa: SIM115 (closed by Logger.close)
            self.file.seek(0, os.SEEK_END)
            self.keys = keys
            self.separator, self.quotechar = ",", '"'

    return Logger(folder=str(run_dir), output_formats=[ResumableCSV(run_dir / "progress.csv"),
                                                       TensorBoardOutputFormat(str(run_dir / "tb"))])


def make_monitor(config: TrainConfig, run_dir: Path, env: Any, show_progress: bool, total_steps: int,
                 wall_offset_s: float, controller: Any = None, average: Any = None) -> Any:
    """The SB3 callback of a run (built here so that importing this module does not import SB3).

    :param config: the run's config
    :param run_dir: where checkpoints, evaluations.jsonl and logs go
    :param env: the run's :class:`aolo.train.sb3_vec_env.ServiceVecEnv` (its model and day counters)
    :param show_progress: show the rich progress bar
    :param total_steps: the run's total environment steps (the bar's end)
    :param wall_offset_s: wall time already spent before a resume, s
    :param controller: a :class:`aolo.train.reward_shaping.QualityController` that adapts
        ``env.shaping.quality_bonus`` every step after ``learning_starts`` and ``quality_target_start``
        (None: fixed multiplier)
    :param average: an :class:`aolo.train.actor_average.ActorAverage` that takes the actor's weights
        every step after ``config.actor_average_start`` and is what validations and checkpoints
        evaluate and export once it holds any (None: no averaging)
    """
    from stable_baselines3.common.callbacks import BaseCallback

    from .evaluate import evaluate_policy, summary_row
    from .policies import ActorPolicy, BasePolicy
    from .actor_average import averaged_weights
    from .run import (ACTOR_AVERAGE_FILE, ACTOR_SPEC_FILE, EVALUATIONS_FILE, MODEL_FILE, REPLAY_FILE, STATE_FILE,
                      deterministic_actor)
    from .actor_export import actor_spec_from_policy
    from .checkpoint import write_checkpoint
    from aolo.runtime.policy_io import action_to_decision

    class _Monitor(BaseCallback):
        """Per step: accumulate reward, carbon and violations from the infos. Every
        ``log_every_steps``: log them (``rollout/…``, ``carbon/train_g_per_request``) with the
        SB3 ``train/…`` losses against ``global_step``. Every ``eval_every_steps`` and at the end:
        evaluate the deterministic actor on the validation seeds (``carbon/mean_g_per_request``,
        ``eval/…``) and checkpoint. A rich progress bar shows the live numbers. With a quality
        controller, every step also decides the step's requests with the deterministic actor and
        feeds the quality its levels would have served to the controller. With an actor average,
        every step in the averaging window adds the actor's weights to it."""

        def __init__(self) -> None:
            super().__init__()
            self.sums = np.zeros(6)  # reward, carbon_g, late, floor, quality, quality_base
            self.det_sums = np.zeros(2)  # deterministic actor's quality, quality_base (controller only)
            self.count = 0
            self.live = {"reward": float("nan"), "carbon": float("nan"), "val": float("nan")}
            self.last_log = 0
            self.last_eval = 0
            self.t_start = time.perf_counter()
            self.steps_at_start = 0
            self.base_val = None
            self.progress = None
            self.task = None

        # --- lifecycle ----------------------------------------------------------------------
        def _on_training_start(self) -> None:
            self.steps_at_start = self.last_log = self.last_eval = self.num_timesteps
            self.t_start = time.perf_counter()
            self.base_val = evaluate_policy(BasePolicy(), env.model, config.eval_seeds, n_bs=config.eval_n_bs)
            if show_progress:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                self.progress = Progress(
                    TextColumn(f"[bold]{config.algo}[/] seed {config.seed}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>6.0f} steps/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("reward/req {task.fields[reward]:+.3f}  carbon {task.fields[carbon]:.4f} g/req  "
                               "val {task.fields[val]:.4f} g/req"))
                self.progress.start()
                self.task = self.progress.add_task("train", total=total_steps, completed=self.num_timesteps,
                                                   rate=0.0, **self.live)

        def _on_step(self) -> bool:
            rewards = self.locals["rewards"]
            infos = self.locals["infos"]
            self.sums[0] += float(np.sum(rewards))
            for info in infos:
                self.sums[1] += info["carbon_g"]
                self.sums[2] += info["latency_violation"]
                self.sums[3] += info["floor_violation"]
                self.sums[4] += info["quality"]
                self.sums[5] += info["quality_base"]
            self.count += len(infos)
            if controller is not None and self.num_timesteps > max(config.learning_starts, config.quality_target_start):
                self._control_quality(infos)
            if average is not None and self.num_timesteps > config.actor_average_start:
                average.update(self.model.policy.actor, self.num_timesteps)
            if config.eval_every_steps and self.num_timesteps - self.last_eval >= config.eval_every_steps:
                self._evaluate_and_checkpoint()  # logs too: one row per step in progress.csv
            elif self.num_timesteps - self.last_log >= config.log_every_steps:
                self._log()
            if self.progress is not None:
                self.progress.update(self.task, completed=self.num_timesteps, rate=self._rate(), **self.live)
            return True

        def _on_training_end(self) -> None:
            if self.last_eval != self.num_timesteps:
                self._evaluate_and_checkpoint()  # logs too
            elif self.last_log != self.num_timesteps:
                self._log()
            if self.progress is not None:
                self.progress.stop()

        # --- pieces -----------------------------------------------------------------------
        def _rate(self) -> float:
            return (self.num_timesteps - self.steps_at_start) / max(time.perf_counter() - self.t_start, 1e-9)

        def _control_quality(self, infos: list[dict[str, Any]]) -> None:
            # SB3 has not yet stored the transition, so _last_obs is what these requests were decided on
            actions, _ = self.model.predict(self.model._last_obs, deterministic=True)
            link = env.model.link
            level, _ = action_to_decision(actions, link.p_min_w, link.p_max_w)
            q_det = (level == np.array([info["preferred_level"] for info in infos])).astype(np.float64)
            q0 = np.array([info["quality_base"] for info in infos])
            controller.update(env.shaping, q_det, q0)
            self.det_sums += (q_det.sum(), q0.sum())

        def _log(self) -> None:
            if self.count:
                n = self.count
                reward, carbon = self.sums[0] / n, self.sums[1] / n
                self.logger.record("rollout/reward_per_request", reward)
                self.logger.record("carbon/train_g_per_request", carbon)
                self.logger.record("rollout/latency_violation_frac", self.sums[2] / n)
                self.logger.record("rollout/floor_violation_frac", self.sums[3] / n)
                self.logger.record("rollout/quality_vs_base_frac", self.sums[4] / max(self.sums[5], 1e-12))
                self.live.update(reward=reward, carbon=carbon)
            if controller is not None:
                self.logger.record("train/quality_bonus", env.shaping.quality_bonus)
                if self.det_sums[1] > 0:
                    self.logger.record("rollout/det_quality_vs_base_frac", self.det_sums[0] / self.det_sums[1])
                self.det_sums[:] = 0.0
            self.logger.record("global_step", self.num_timesteps)
            self.logger.record("time/steps_per_s", self._rate())
            self.logger.record("time/wall_s", wall_offset_s + time.perf_counter() - self.t_start)
            self.logger.dump(step=self.num_timesteps)
            self.sums[:] = 0.0
            self.count = 0
            self.last_log = self.num_timesteps

        def _evaluate_and_checkpoint(self) -> None:
            policy = self.model.policy
            policy.set_training_mode(False)
            with averaged_weights(policy.actor, average):  # the actor this checkpoint ships
                result = evaluate_policy(ActorPolicy(config.algo, deterministic_actor(policy)), env.model,
                                         config.eval_seeds, n_bs=config.eval_n_bs)
                spec = actor_spec_from_policy(policy)
            row = summary_row(result, self.base_val)
            self.logger.record("carbon/mean_g_per_request", row["carbon_g_per_request"])
            for key in ("saving_vs_base_frac", "quality_vs_base_frac", "latency_violation_frac", "outage_frac",
                        "floor_violation_frac"):
                self.logger.record(f"eval/{key}", row[key])
            self.live["val"] = row["carbon_g_per_request"]
            wall_s = wall_offset_s + time.perf_counter() - self.t_start
            evaluation = json.dumps({"step": self.num_timesteps, "wall_s": wall_s, "summary": row,
                                     "quality_bonus": env.shaping.quality_bonus,
                                     "actor_average_count": average.count if average is not None else 0,
                                     "result": result.to_dict()})
            state = {"num_timesteps": self.num_timesteps, "wall_s": wall_s,
                     "episode_count": env.sim.episode_count.tolist(), "quality_bonus": env.shaping.quality_bonus,
                     "quality_controller": controller.state() if controller is not None else None}
            # model.zip holds the raw weights to resume from, actor_spec.json the shipped actor;
            # all of them or none (aolo.train.checkpoint)
            writers = {MODEL_FILE: self.model.save, ACTOR_SPEC_FILE: lambda p: write_json_atomic(p, spec.to_dict()),
                       EVALUATIONS_FILE: lambda p: _append_line(run_dir / EVALUATIONS_FILE, evaluation, p),
                       STATE_FILE: lambda p: write_json_atomic(p, state)}
            if config.save_replay_buffer:
                writers[REPLAY_FILE] = self.model.save_replay_buffer
            if average is not None and average.count:
                writers[ACTOR_AVERAGE_FILE] = average.save
            write_checkpoint(run_dir, writers)
            self.last_eval = self.num_timesteps
            self._log()

    return _Monitor()


# =============================================================================================
# The run
# =============================================================================================
def observation_stats(model: Any, n_bs: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every observation dimension, (OBS_DIM,) each, over one day
    of ``n_bs`` base stations served by the class-aware LP on the calibration seed (never a
    training, validation or evaluation seed). The LP keeps the quality window near its floor, as a
    trained actor does; random actions would not (their quality slack sits 0.05 lower)."""
    from .policies import LPPolicy
    from .simulator import BatchSimulator, observe

    sim = BatchSimulator(model, n_bs=n_bs, seed=CALIBRATION_SEED)
    ctx = sim.reset(seed=CALIBRATION_SEED)
    policy = LPPolicy(per_class=True)
    policy.reset(sim, CALIBRATION_SEED)
    seen = []
    while (sim.episode_count < 2).any():  # every BS through its first episode
        obs = observe(ctx)
        seen.append(obs)
        sim.step(*policy.decide(ctx, obs))
        ctx = sim.context
    obs = np.concatenate(seen)
    return obs.mean(axis=0), obs.std(axis=0)


def sac_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The :class:`aolo.train.sac_policy.EntropyRateSAC` arguments of a config (everything but
    policy, env, seed)."""
    ent: Any = config.ent_coef if config.ent_coef.startswith("auto") else float(config.ent_coef)
    from stable_baselines3.common.utils import LinearSchedule

    from .shaped_replay import ShapedReplayBuffer

    lr: Any = config.learning_rate
    if config.learning_rate_end is not None:
        lr = LinearSchedule(config.learning_rate, config.learning_rate_end, end_fraction=1.0)
    return dict(
        learning_rate=lr, buffer_size=config.buffer_size, replay_buffer_class=ShapedReplayBuffer,
        learning_starts=config.learning_starts, batch_size=config.batch_size, tau=config.tau, gamma=config.gamma,
        train_freq=config.train_freq, gradient_steps=config.gradient_steps, ent_coef=ent, ent_coef_lr=config.ent_coef_lr,
        target_entropy=config.target_entropy if config.target_entropy is not None else "auto",
        policy_kwargs={"net_arch": {"pi": list(config.actor_hidden), "qf": list(config.critic_hidden)}},
        device="cpu", verbose=0,
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


def train(config: TrainConfig, resume: str | Path | None = None, show_progress: bool = True) -> Path:
    """Train SDRL or SAC on a scenario and write (or continue) a run directory.

    :param config: the run's config; with ``resume``, the run dir's own config is used and only
        ``steps`` (the new total) and ``torch_threads`` are taken from this one
    :param resume: a run dir to continue from its last checkpoint (its step count, simulator day
        counters and, if saved, replay buffer)
    :param show_progress: show the rich progress bar and the config table (stderr)
    :return: the run directory
    """
    import torch

    from .actor_average import ActorAverage
    from .checkpoint import recover_checkpoint
    from .reward_shaping import QualityController
    from .run import ACTOR_AVERAGE_FILE, CONFIG_FILE, MODEL_FILE, REPLAY_FILE, STATE_FILE, VERSIONS_FILE
    from .sac_policy import EntropyRateSAC, make_sac
    from .sb3_vec_env import ServiceVecEnv
    from .scenario import get_scenario
    from .simulator import ServiceModel

    # --- config and run dir -------------------------------------------------------------------
    state: dict[str, Any] = {}
    if resume is not None:
        run_dir = Path(resume)
        recovered = recover_checkpoint(run_dir) if (run_dir / CONFIG_FILE).is_file() else None
        if recovered is not None and show_progress:
            print(recovered, file=sys.stderr)
        if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
            raise ValueError(f"{run_dir}: not a run directory with a checkpoint (no {CONFIG_FILE} or {MODEL_FILE})")
        saved = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
        config = saved.with_(steps=config.steps, torch_threads=config.torch_threads)
        state = json.loads((run_dir / STATE_FILE).read_text())
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
    scenario = get_scenario(config.scenario, quality_penalty=config.quality_penalty,
                            latency_penalty=config.latency_penalty)
    env = ServiceVecEnv(scenario, n_envs=config.n_envs, model=ServiceModel(scenario), seed=config.seed,
                        quality_bonus=config.quality_bonus, deficit_bonus=config.deficit_bonus,
                        reward_scale=config.reward_scale)
    controller = None
    if config.quality_target is not None:
        controller = QualityController(config.quality_target, config.quality_target_rate)
    if resume is not None:  # the multiplier where the controller left it
        env.shaping.quality_bonus = float(state.get("quality_bonus", config.quality_bonus))
        if controller is not None and state.get("quality_controller"):
            controller.load_state(state["quality_controller"])

    # --- ALGO LOGIC: SAC with the PopSAN actor (sdrl) or the MLP actor (sac) ----------------------
    if resume is None:
        model = make_sac(config.algo, env, seed=config.seed, popsan=config.popsan if config.algo == "sdrl" else None,
                         **sac_kwargs(config))
        if config.algo == "sdrl" and config.popsan.encoder_init == "standardized":
            model.actor.popsan.encoder.standardize(*observation_stats(env.model))
    else:
        model = EntropyRateSAC.load(run_dir / MODEL_FILE, env=env, device="cpu")
        if model.num_timesteps != int(state["num_timesteps"]):
            raise ValueError(f"{run_dir / MODEL_FILE}: step {model.num_timesteps} does not match {STATE_FILE}'s "
                             f"{state['num_timesteps']} (a checkpoint written before checkpoints were staged, "
                             "interrupted)")
        if config.save_replay_buffer and (run_dir / REPLAY_FILE).is_file():
            model.load_replay_buffer(run_dir / REPLAY_FILE)
        # continue the training days where the checkpoint left them
        env.start_days_at(np.asarray(state.get("episode_count", np.zeros(config.n_envs)), dtype=np.int64))
    model.replay_buffer.shaping = env.shaping  # sampled rewards follow the current multiplier
    average = None
    if config.actor_average_window:
        average = ActorAverage()
        if resume is not None and (run_dir / ACTOR_AVERAGE_FILE).is_file():
            saved_average = ActorAverage.load(run_dir / ACTOR_AVERAGE_FILE)
            # kept if it lies inside this run's window (an interrupted run); a run resumed to more
            # steps moves the window past it, and averaging starts again at the resume point
            if saved_average.first_step is not None and saved_average.first_step > config.actor_average_start:
                average = saved_average
    resume_step = int(state["num_timesteps"]) if resume is not None else None
    model.set_logger(_make_logger(run_dir, resume_step))
    if resume is None:
        model.logger.record("config", json.dumps(config.to_dict(), indent=1), exclude=("stdout", "log", "csv", "json"))

    # --- learn ----------------------------------------------------------------------------------
    remaining = config.steps - model.num_timesteps
    if remaining > 0:
        monitor = make_monitor(config, run_dir, env, show_progress, config.steps,
                               wall_offset_s=float(state.get("wall_s", 0.0)), controller=controller,
                               average=average)
        # log_interval=None: the monitor dumps the logs (a day is ~4k steps per BS, too rare for SB3's)
        model.learn(total_timesteps=remaining, callback=monitor, log_interval=None,  # type: ignore[arg-type]
                    reset_num_timesteps=resume is None)
    model.logger.close()
    return run_dir
