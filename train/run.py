"""A training run directory, read back: config, deterministic actor, actor spec, curves.

A run dir (``runs/<scenario>__<algo>__<seed>__<timestamp>/``, written by
:func:`aolo.train.training.train`) holds::

    config.json          the TrainConfig (plain values)
    versions.json        torch, snntorch, stable-baselines3, gymnasium, numpy, aolo versions
    model.zip            the SB3 SAC model at the last checkpoint (pickled: read only by train --resume)
    actor.safetensors    the actor's last weights, and actor_kwargs.json what rebuilds it (aolo.train.actor_weights)
    actor_average.pt     the averaged actor weights, unless actor_average_steps is 0 (aolo.train.actor_average)
    actor_spec.json      the shipped deterministic actor (the average, if any) as an ActorSpec
    train_state.json     steps done, simulator day counters, wall time (for --resume)
    evaluations.jsonl    one line per periodic evaluation on the validation seeds
    progress.csv, tb/    SB3 logger output (csv, TensorBoard)
    replay_buffer.pkl    only with save_replay_buffer (pickled: read only by train --resume)
    run_manifest.json    SHA-256 and size of every file of the last checkpoint

Every checkpoint replaces config.json, model.zip, the actor's files, actor_average.pt,
actor_spec.json, evaluations.jsonl, replay_buffer.pkl, run_manifest.json and train_state.json
together, through ``.checkpoint/`` (:mod:`aolo.train.checkpoint`), so that they always describe
the same step.

A run directory is something people hand around, so :func:`load_run` (``aolo export``,
``evaluate -p RUN_DIR``, ``compare``, the pipeline) unpickles nothing: it reads JSON, the actor's
safetensors and the actor average (``torch.load(weights_only=True)``), every file a plain file of
bounded size. Only ``aolo train --resume`` loads SB3's pickled files, after checking them against
``run_manifest.json`` (:func:`aolo.train.checkpoint.verified_checkpoint`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aolo.runtime.actor_spec import ActorSpec

from .run_files import read_run_file

__all__ = ["TrainedRun", "load_run", "is_run_dir", "deterministic_actor", "read_evaluations",
           "CONFIG_FILE", "MODEL_FILE", "ACTOR_SPEC_FILE", "EVALUATIONS_FILE", "STATE_FILE", "VERSIONS_FILE",
           "REPLAY_FILE", "ACTOR_AVERAGE_FILE", "ACTOR_WEIGHTS_FILE", "ACTOR_KWARGS_FILE", "PROGRESS_FILE",
           "sb3_custom_objects"]

CONFIG_FILE = "config.json"
VERSIONS_FILE = "versions.json"
MODEL_FILE = "model.zip"
ACTOR_SPEC_FILE = "actor_spec.json"
STATE_FILE = "train_state.json"
EVALUATIONS_FILE = "evaluations.jsonl"
PROGRESS_FILE = "progress.csv"
REPLAY_FILE = "replay_buffer.pkl"
ACTOR_AVERAGE_FILE = "actor_average.pt"
ACTOR_WEIGHTS_FILE = "actor.safetensors"
ACTOR_KWARGS_FILE = "actor_kwargs.json"

def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_run_file(path))
    except (ValueError, UnicodeDecodeError) as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not JSON ({e})") from None


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


def deterministic_actor(actor: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The deployed action of an SB3 SAC/SDRL actor as a numpy function.

    :param actor: an SB3 SAC ``Actor`` (or :class:`aolo.train.sac_policy.SpikingActor`), e.g. ``policy.actor``
    :return: ``act(obs (n, obs_dim) float32) -> action (n, act_dim) float32 in [-1, 1]``, the
        squashed mean (no sampling), computed in inference mode
    """
    import torch

    from .sac_policy import deployed_action

    device = actor.device

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():  # no_grad's numbers with less bookkeeping per operation
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
            return deployed_action(actor, x).cpu().numpy()

    return act


def read_evaluations(run_dir: str | Path) -> list[dict[str, Any]]:
    """The periodic validation evaluations of a run, in step order.

    :return: dicts ``{"step": int, "wall_s": float, "result": EvalResult dict, "summary": summary row}``
    """
    path = Path(run_dir) / EVALUATIONS_FILE
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in read_run_file(path).decode().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON lines ({e})") from None
    return sorted(rows, key=lambda r: r["step"])


@dataclass
class TrainedRun:
    """A loaded run.

    :param run_dir: the directory
    :param config: its :class:`aolo.train.train_config.TrainConfig`
    :param actor: the SB3 SAC actor (:class:`stable_baselines3.sac.policies.Actor` or
        :class:`aolo.train.sac_policy.SpikingActor`) on CPU in evaluation mode, holding the shipped
        weights (the actor average, if the run has one and it was loaded)
    :param spec: the deterministic actor as an :class:`ActorSpec`, read from ``actor_spec.json``
    :param state: ``train_state.json`` (``num_timesteps``, ``episode_count``, ``wall_s``)
    """

    run_dir: Path
    config: Any
    actor: Any
    spec: ActorSpec
    state: dict[str, Any]

    @property
    def name(self) -> str:
        """``<algo>:<run dir name>``, the policy name in evaluation tables."""
        return f"{self.config.algo}:{self.run_dir.name}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action. ``obs``: (n, obs_dim) float32 -> (n, act_dim) float32 in [-1, 1]."""
        return deterministic_actor(self.actor)(obs)

    def policy(self) -> Any:
        """An :class:`aolo.train.policies.ActorPolicy` of the deterministic actor, for evaluate_policy."""
        from .policies import ActorPolicy

        return ActorPolicy(self.name, deterministic_actor(self.actor))


def load_run(run_dir: str | Path, averaged: bool = True) -> TrainedRun:
    """Load a run directory written by :func:`aolo.train.training.train`, unpickling nothing.

    The actor is rebuilt from ``actor_kwargs.json`` and its weights read from
    ``actor.safetensors``; a run saved before those files existed gives its weights from the
    ``policy.pth`` entry of SB3's ``model.zip`` (a plain ``torch.save`` of tensors, read with
    ``weights_only=True``; the pickled ``data`` entry is never read) and its shape from
    ``config.json`` (:mod:`aolo.train.actor_weights`).

    :param run_dir: the run directory
    :param averaged: load the actor average (``actor_average.pt``, ``weights_only=True``) into the
        actor when the run has one, as the run ships it; False: the actor's last weights
        (``actor_spec.json`` still describes the average)
    :return: the run with its config, actor (on CPU), actor spec and training state
    :raises ValueError: not a run directory, or a file in it missing, a link, too large, malformed
        or not fitting the actor (named)
    """
    from .actor_weights import (ActorKwargs, actor_kwargs_from_config, actor_state_from_sb3_zip, load_actor,
                                load_actor_state)
    from .train_config import TrainConfig

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    config = TrainConfig.from_dict(_read_json(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    if (run_dir / ACTOR_WEIGHTS_FILE).exists() or (run_dir / ACTOR_WEIGHTS_FILE).is_symlink():
        kwargs = ActorKwargs.read(run_dir / ACTOR_KWARGS_FILE)
        if (kwargs.actor_class == "SpikingActor") != (config.algo == "sdrl"):
            raise ValueError(f"{run_dir / ACTOR_KWARGS_FILE}: field 'actor_class': {kwargs.actor_class!r} is not the "
                             f"actor of algo {config.algo!r} ({CONFIG_FILE})")
        actor = load_actor(run_dir / ACTOR_WEIGHTS_FILE, kwargs, run_dir / ACTOR_KWARGS_FILE)
    elif (run_dir / MODEL_FILE).is_file():  # saved before runs wrote actor.safetensors
        try:
            actor = actor_kwargs_from_config(config).build()
        except ValueError as e:
            raise ValueError(f"{run_dir / CONFIG_FILE}: {e}") from None
        load_actor_state(actor, actor_state_from_sb3_zip(run_dir / MODEL_FILE), run_dir / MODEL_FILE)
    else:
        raise ValueError(f"{run_dir / ACTOR_WEIGHTS_FILE}: missing, and no {MODEL_FILE} either (the run has no "
                         "checkpoint yet)")
    if averaged and (run_dir / ACTOR_AVERAGE_FILE).exists():
        from .actor_average import ActorAverage

        average = ActorAverage.load(run_dir / ACTOR_AVERAGE_FILE)  # names the file if unreadable
        if average.count:  # an empty average: no snapshot yet, the run ships its last weights
            try:
                average.load_into(actor)
            except ValueError as e:
                raise ValueError(f"{run_dir / ACTOR_AVERAGE_FILE}: {e}") from e
    if not (run_dir / ACTOR_SPEC_FILE).is_file():
        raise ValueError(f"{run_dir / ACTOR_SPEC_FILE}: missing (the run has no checkpoint yet)")
    try:
        spec = ActorSpec.from_dict(_read_json(run_dir / ACTOR_SPEC_FILE))
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(f"{run_dir / ACTOR_SPEC_FILE}: not a valid actor spec ({e!r})") from None
    except ValueError as e:
        raise ValueError(e if str(e).startswith(str(run_dir)) else f"{run_dir / ACTOR_SPEC_FILE}: {e}") from None
    state_path = run_dir / STATE_FILE
    state = _read_json(state_path) if state_path.exists() else {}
    if not isinstance(state, dict):
        raise ValueError(f"{state_path}: must be a JSON object")
    return TrainedRun(run_dir=run_dir, config=config, actor=actor, spec=spec, state=state)
