"""What a run does beside SB3's learning loop, as one SB3 callback: logs, validation, weight
averaging and checkpoints (imported by :func:`aolo.train.training.train` only, since it imports SB3).

Per step the monitor adds the served requests' reward, carbon and violations to its sums and, in
the averaging window, the actor's weights to the average. Every ``log_every_steps`` it logs them
(``rollout/…``, ``carbon/train_g_per_request``) with SB3's ``train/…`` losses against
``global_step``. Every ``eval_every_steps`` and at the end it evaluates the shipped actor on the
validation seeds (``carbon/mean_g_per_request``, ``eval/…``) and writes a checkpoint
(:mod:`aolo.train.checkpoint`). A rich progress bar shows the live numbers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

from aolo.runtime.atomic_files import write_json_atomic, write_text_atomic

from .actor_average import ActorAverage, averaged_weights
from .actor_export import actor_spec_from_policy
from .checkpoint import write_checkpoint
from .evaluate import evaluate_policy, summary_row
from .policies import ActorPolicy, BasePolicy
from .actor_weights import ActorKwargs, save_actor_weights
from .run import (ACTOR_AVERAGE_FILE, ACTOR_KWARGS_FILE, ACTOR_SPEC_FILE, ACTOR_WEIGHTS_FILE, CONFIG_FILE,
                  EVALUATIONS_FILE, MODEL_FILE, PROGRESS_FILE, REPLAY_FILE, deterministic_actor)
from .train_config import TrainConfig

__all__ = ["TrainingMonitor", "make_logger"]


class _ResumableCSV(CSVOutputFormat):
    """SB3's CSV output; on resume it keeps the rows up to the checkpoint's step and appends after them."""

    def __init__(self, filename: Path, resume_step: int | None) -> None:
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


def make_logger(run_dir: Path, resume_step: int | None) -> Logger:
    """SB3 logger writing ``progress.csv`` and TensorBoard events under ``run_dir/tb``.

    :param resume_step: the checkpoint's step when resuming (later rows of progress.csv are dropped)
    """
    return Logger(folder=str(run_dir), output_formats=[_ResumableCSV(run_dir / PROGRESS_FILE, resume_step),
                                                       TensorBoardOutputFormat(str(run_dir / "tb"))])


def _append_line(path: Path, line: str, out: Path) -> None:
    """Write ``path``'s lines (if it exists) and then ``line`` to ``out``."""
    old = path.read_text() if path.is_file() else ""
    out.write_text(old + line + "\n")


class TrainingMonitor(BaseCallback):
    """The SB3 callback of a run (see the module docstring).

    :param config: the run's config
    :param run_dir: where checkpoints, evaluations.jsonl and logs go
    :param env: the run's :class:`aolo.train.sb3_vec_env.ServiceVecEnv` (its model and day counters)
    :param show_progress: show the rich progress bar
    :param wall_offset_s: wall time already spent before a resume, s
    :param average: the actor average that takes the actor's weights every step after
        ``config.actor_average_start`` and is what validations and checkpoints evaluate and export
        once it holds any (None: no averaging)
    :param on_validation: called after each validation, once its checkpoint is written, with the
        line it added to evaluations.jsonl (``step``, ``wall_s``, ``summary``, ``result``, ...) as a
        dict; ``aolo sweep`` reports it to Ray Tune (None: nothing)
    """

    def __init__(self, config: TrainConfig, run_dir: Path, env: Any, show_progress: bool, wall_offset_s: float,
                 average: ActorAverage | None,
                 on_validation: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.config, self.run_dir, self.env, self.show_progress = config, run_dir, env, show_progress
        self.wall_offset_s, self.average, self.on_validation = wall_offset_s, average, on_validation
        self.sums = np.zeros(6)  # reward, carbon_g, late, floor, quality, quality_base
        self.count = 0
        self.live = {"reward": float("nan"), "carbon": float("nan"), "val": float("nan")}
        self.last_log = self.last_eval = self.steps_at_start = 0
        self.t_start = time.perf_counter()
        self.base_val: Any = None
        self.progress: Any = None
        self.task: Any = None

    # --- lifecycle --------------------------------------------------------------------------------
    def _on_training_start(self) -> None:
        config = self.config
        self.steps_at_start = self.last_log = self.last_eval = self.num_timesteps
        self.t_start = time.perf_counter()
        self.base_val = evaluate_policy(BasePolicy(), self.env.model, config.eval_seeds, n_bs=config.eval_n_bs)
        if self.show_progress:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(
                TextColumn(f"[bold]{config.algo}[/] seed {config.seed}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>6.0f} steps/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                TextColumn("reward/req {task.fields[reward]:+.3f}  carbon {task.fields[carbon]:.4f} g/req  "
                           "val {task.fields[val]:.4f} g/req"))
            self.progress.start()
            self.task = self.progress.add_task("train", total=config.steps, completed=self.num_timesteps, rate=0.0,
                                               **self.live)

    def _on_step(self) -> bool:
        config = self.config
        self.sums[0] += float(np.sum(self.locals["rewards"]))
        infos = self.locals["infos"]
        for info in infos:
            self.sums[1:] += (info["carbon_g"], info["latency_violation"], info["floor_violation"], info["quality"],
                              info["quality_base"])
        self.count += len(infos)
        if self.average is not None and self.num_timesteps > config.actor_average_start:
            self.average.update(self.model.policy.actor, self.num_timesteps)
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

    # --- pieces -------------------------------------------------------------------------------------
    def _rate(self) -> float:
        return (self.num_timesteps - self.steps_at_start) / max(time.perf_counter() - self.t_start, 1e-9)

    def _wall_s(self) -> float:
        return self.wall_offset_s + time.perf_counter() - self.t_start

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
        self.logger.record("global_step", self.num_timesteps)
        self.logger.record("time/steps_per_s", self._rate())
        self.logger.record("time/wall_s", self._wall_s())
        self.logger.dump(step=self.num_timesteps)
        self.sums[:] = 0.0
        self.count = 0
        self.last_log = self.num_timesteps

    def _evaluate_and_checkpoint(self) -> None:
        config, policy, average = self.config, self.model.policy, self.average
        policy.set_training_mode(False)
        with averaged_weights(policy.actor, average):  # the actor this checkpoint ships
            result = evaluate_policy(ActorPolicy(config.algo, deterministic_actor(policy.actor)), self.env.model,
                                     config.eval_seeds, n_bs=config.eval_n_bs)
            spec = actor_spec_from_policy(policy)
        row = summary_row(result, self.base_val)
        self.logger.record("carbon/mean_g_per_request", row["carbon_g_per_request"])
        for key in ("saving_vs_base_frac", "quality_vs_base_frac", "latency_violation_frac", "outage_frac",
                    "floor_violation_frac"):
            self.logger.record(f"eval/{key}", row[key])
        self.live["val"] = row["carbon_g_per_request"]
        wall_s = self._wall_s()
        evaluation_row = {"step": self.num_timesteps, "wall_s": wall_s, "summary": row,
                          "actor_average_count": average.count if average is not None else 0,
                          "result": result.to_dict()}
        evaluation = json.dumps(evaluation_row)
        state = {"num_timesteps": self.num_timesteps, "wall_s": wall_s,
                 "episode_count": self.env.sim.episode_count.tolist()}
        # model.zip and actor.safetensors hold the raw weights to resume from, actor_spec.json the
        # shipped actor; all of them or none, with their manifest (aolo.train.checkpoint)
        run_dir, actor = self.run_dir, policy.actor
        writers = {CONFIG_FILE: lambda p: write_json_atomic(p, config.to_dict()), MODEL_FILE: self.model.save,
                   ACTOR_WEIGHTS_FILE: lambda p: save_actor_weights(actor, p),
                   ACTOR_KWARGS_FILE: lambda p: write_json_atomic(p, ActorKwargs.of(actor).to_dict()),
                   ACTOR_SPEC_FILE: lambda p: write_json_atomic(p, spec.to_dict()),
                   EVALUATIONS_FILE: lambda p: _append_line(run_dir / EVALUATIONS_FILE, evaluation, p)}
        if config.save_replay_buffer:
            writers[REPLAY_FILE] = self.model.save_replay_buffer
        if average is not None:  # even before its first snapshot, so no average from before a resume stays behind
            writers[ACTOR_AVERAGE_FILE] = average.save
        write_checkpoint(run_dir, writers, state)
        self.last_eval = self.num_timesteps
        self._log()
        if self.on_validation is not None:
            self.on_validation(evaluation_row)
