"""A training run directory, read back: config, SB3 model, deterministic actor, actor spec, curves.

A run dir (``runs/<scenario>__<algo>__<seed>__<timestamp>/``, written by
:func:`aolo.train.training.train`) holds::

    config.json          the TrainConfig (plain values)
    versions.json        torch, snntorch, stable-baselines3, gymnasium, numpy, aolo versions
    model.zip            the SB3 SAC model at the last checkpoint (the actor's last weights)
    actor_average.pt     the averaged actor weights, unless actor_average_steps is 0 (aolo.train.actor_average)
    actor_spec.json      the shipped deterministic actor (the average, if any) as an ActorSpec
    train_state.json     steps done, simulator day counters, wall time (for --resume)
    evaluations.jsonl    one line per periodic evaluation on the validation seeds
    progress.csv, tb/    SB3 logger output (csv, TensorBoard)
    replay_buffer.pkl    only with save_replay_buffer

Every checkpoint replaces model.zip, actor_average.pt, actor_spec.json, evaluations.jsonl,
replay_buffer.pkl and train_state.json together, through ``.checkpoint/``
(:mod:`aolo.train.checkpoint`), so that they always describe the same step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aolo.runtime.actor_spec import ActorSpec

__all__ = ["TrainedRun", "load_run", "is_run_dir", "deterministic_actor", "read_evaluations",
           "CONFIG_FILE", "MODEL_FILE", "ACTOR_SPEC_FILE", "EVALUATIONS_FILE", "STATE_FILE", "VERSIONS_FILE",
           "REPLAY_FILE", "ACTOR_AVERAGE_FILE", "PROGRESS_FILE", "sb3_custom_objects"]

CONFIG_FILE = "config.json"
VERSIONS_FILE = "versions.json"
MODEL_FILE = "model.zip"
ACTOR_SPEC_FILE = "actor_spec.json"
STATE_FILE = "train_state.json"
EVALUATIONS_FILE = "evaluations.jsonl"
PROGRESS_FILE = "progress.csv"
REPLAY_FILE = "replay_buffer.pkl"
ACTOR_AVERAGE_FILE = "actor_average.pt"


def sb3_custom_objects() -> dict[str, Any]:
    """What :meth:`SAC.load` must take as given rather than unpickle from a ``model.zip``: older
    runs name a replay buffer class that no longer exists (their ShapedReplayBuffer sampled what
    SB3's ReplayBuffer samples with the fixed multiplier every run used)."""
    from stable_baselines3.common.buffers import ReplayBuffer

    return {"replay_buffer_class": ReplayBuffer}


def is_run_dir(path: str | Path) -> bool:
    """True for a directory holding a ``config.json`` (a training run)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file()


def deterministic_actor(policy: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The deployed action of an SB3 SAC/SDRL policy as a numpy function.

    :param policy: an SB3 ``SACPolicy`` (or :class:`aolo.train.sac_policy.SDRLPolicy`)
    :return: ``act(obs (n, obs_dim) float32) -> action (n, act_dim) float32 in [-1, 1]``, the
        squashed mean (no sampling), computed in inference mode
    """
    import torch

    from .sac_policy import deployed_action

    actor = policy.actor

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():  # no_grad's numbers with less bookkeeping per operation
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=policy.device)
            return deployed_action(actor, x).cpu().numpy()

    return act


def read_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """The periodic validation evaluations of a run, in step order.

    :return: dicts ``{"step": int, "wall_s": float, "result": EvalResult dict, "summary": summary row}``
    """
    path = Path(run_dir) / EVALUATIONS_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["step"])


@dataclass
class TrainedRun:
    """A loaded run.

    :param run_dir: the directory
    :param config: its :class:`aolo.train.train_config.TrainConfig`
    :param model: the SB3 SAC model (no env attached); its actor holds the shipped weights (the
        actor average, if the run has one and it was loaded)
    :param spec: the deterministic actor as an :class:`ActorSpec`, read from ``actor_spec.json``
    :param state: ``train_state.json`` (``num_timesteps``, ``episode_count``, ``wall_s``)
    """

    run_dir: Path
    config: Any
    model: Any
    spec: ActorSpec
    state: dict[str, Any]

    @property
    def name(self) -> str:
        """``<algo>:<run dir name>``, the policy name in evaluation tables."""
        return f"{self.config.algo}:{self.run_dir.name}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action. ``obs``: (n, obs_dim) float32 -> (n, act_dim) float32 in [-1, 1]."""
        return deterministic_actor(self.model.policy)(obs)

    def policy(self) -> Any:
        """An :class:`aolo.train.policies.ActorPolicy` of the deterministic actor, for evaluate_policy."""
        from .policies import ActorPolicy

        return ActorPolicy(self.name, deterministic_actor(self.model.policy))


def load_run(run_dir: str | Path, averaged: bool = True) -> TrainedRun:
    """Load a run directory written by :func:`aolo.train.training.train`.

    :param run_dir: the run directory
    :param averaged: load the actor average (``actor_average.pt``) into the actor when the run has
        one, as the run ships it; False: the actor's last weights (``actor_spec.json`` still
        describes the average)
    :return: the run with its config, SB3 model (on CPU), actor spec and training state
    :raises ValueError: not a run directory, or a file in it is missing or unreadable (named)
    """
    from stable_baselines3 import SAC

    from .train_config import TrainConfig

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    for name in (MODEL_FILE, ACTOR_SPEC_FILE):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir / name}: missing (the run has no checkpoint yet)")
    try:
        data = json.loads((run_dir / CONFIG_FILE).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{run_dir / CONFIG_FILE}: not JSON ({e})") from None
    config = TrainConfig.from_dict(data, str(run_dir / CONFIG_FILE))
    model = SAC.load(run_dir / MODEL_FILE, device="cpu", custom_objects=sb3_custom_objects())
    if averaged and (run_dir / ACTOR_AVERAGE_FILE).is_file():
        from .actor_average import ActorAverage

        average = ActorAverage.load(run_dir / ACTOR_AVERAGE_FILE)  # names the file if unreadable
        try:
            average.load_into(model.policy.actor)
        except ValueError as e:
            raise ValueError(f"{run_dir / ACTOR_AVERAGE_FILE}: {e}") from e
    spec = ActorSpec.from_dict(json.loads((run_dir / ACTOR_SPEC_FILE).read_text()))
    state_path = run_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    return TrainedRun(run_dir=run_dir, config=config, model=model, spec=spec, state=state)
