"""The config of a training run (:class:`TrainConfig`), validated by pydantic and torch-free, so
that the CLI reads it without importing torch. A run saves it whole as ``config.json``; ``aolo
train --config run.toml`` reads one from TOML (or JSON). Why each default is what it is, and
what was tried and removed, is in docs/model.md section 6 ("Training configuration").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, \
    model_validator

from .config_errors import drop_removed_fields, one_line
from .popsan_config import PopSANConfig
from .seeds import EVAL_SEEDS, RESERVED_SEEDS, VALIDATION_SEEDS

__all__ = ["TrainConfig", "PopSANConfig", "read_config_file"]


class TrainConfig(BaseModel):
    """Everything that defines a training run; an invalid value raises ``ValueError`` (pydantic's
    ``ValidationError``) naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- what people change (aolo train's options) ------------------------------------------------
    algo: Literal["sdrl", "sac"] = Field("sdrl", description="sdrl (PopSAN spiking actor) or sac (MLP actor)")
    scenario: str = Field("default", description="scenario preset: default, tiny, sprout-repro")
    seed: NonNegativeInt = Field(0, description="run seed (python, numpy, torch, SB3 and the training days)")
    steps: PositiveInt = Field(150_000, description="training budget, environment steps summed over base stations")
    actor_hidden: tuple[PositiveInt, ...] = Field(
        (64, 64), min_length=1, description="hidden sizes of SAC's MLP actor and of SDRL's log-std network")
    popsan: PopSANConfig = Field(default_factory=PopSANConfig, description="PopSAN shape and neurons (sdrl only)")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate at the start of the run")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="torch device (SB3's): cpu, cuda, or auto = cpu for these small networks (docs/model.md)")
    torch_threads: PositiveInt = Field(1, description="torch.set_num_threads for the run")
    out_dir: str = Field("runs", description="parent folder of run directories")

    # --- SAC (settable from a config file) ----------------------------------------------------------
    n_envs: PositiveInt = Field(16, description="base stations stepped at once")
    learning_starts: NonNegativeInt = Field(5_000, description="steps of uniformly random actions before updates")
    batch_size: PositiveInt = Field(256, description="minibatch size of each gradient step")
    buffer_size: PositiveInt = Field(200_000, description="replay buffer capacity, transitions")
    train_freq: PositiveInt = Field(1, description="vector steps between two rounds of updates")
    gradient_steps: int = Field(1, description="gradient steps per round of updates (-1: one per transition)")
    learning_rate_end: float | None = Field(
        3e-5, gt=0, description="learning rate at the end, reached linearly (None: constant)")
    gamma: float = Field(0.5, gt=0, le=1, description="discount per request")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak coefficient of the target critics")
    ent_coef: str = Field("auto_0.1", description="entropy coefficient: auto, auto_<initial value>, or a number")
    ent_coef_lr: float | None = Field(
        3e-4, gt=0, description="constant learning rate of the entropy coefficient (None: the common schedule)")
    target_entropy: float | None = Field(None, description="entropy target (None: minus the action dimension)")
    critic_hidden: tuple[PositiveInt, ...] = Field((256, 256), min_length=1, description="hidden sizes of both critics")

    # --- the training reward (docs/model.md section 6, Reward) --------------------------------------
    quality_bonus: float = Field(2.2, ge=0, description="training-only multiplier lambda: each reward gains lambda q")
    deficit_bonus: float = Field(
        5.0, ge=0, description="training-only kappa: lambda rises by kappa times the floor deficit")

    # --- what the run ships, evaluations, logs, checkpoints ----------------------------------------
    actor_average_steps: NonNegativeInt | None = Field(
        None, description="last steps whose actor weights are averaged and shipped (None: the last third; 0: none)")
    eval_every_steps: NonNegativeInt = Field(
        25_000, description="steps between validation evaluations and checkpoints (0: only at the end)")
    eval_seeds: tuple[int, ...] = Field(VALIDATION_SEEDS, min_length=1, description="validation seeds")
    eval_n_bs: PositiveInt = Field(4, description="base stations per validation seed")
    log_every_steps: PositiveInt = Field(4_000, description="steps between two rows of progress.csv")
    save_replay_buffer: bool = Field(False, description="also checkpoint the replay buffer, for an exact resume")

    REMOVED: ClassVar[dict[str, Any]] = {
        "quality_penalty": None, "latency_penalty": None,  # the scenario's latency_penalty and quality_penalty
        "quality_target": None, "quality_target_rate": 5e-4, "quality_target_start": 40_000,  # quality targeting
        "reward_scale": 1.0,
    }
    """Fields of older runs' configs, with the one value this version reproduces (docs/model.md section 6)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_removed(cls, data: Any) -> Any:
        return drop_removed_fields(data, cls.REMOVED, "TrainConfig")

    @field_validator("gradient_steps")
    @classmethod
    def _gradient_steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"must be >= 1 or -1, got {value}")
        return value

    @field_validator("ent_coef")
    @classmethod
    def _ent_coef(cls, value: str) -> str:
        if value != "auto" and not value.startswith("auto_"):
            try:
                float(value)
            except ValueError:
                raise ValueError(f"must be 'auto', 'auto_<init>' or a number, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _seeds_and_schedule(self) -> "TrainConfig":
        if self.learning_rate_end is not None and self.learning_rate_end > self.learning_rate:
            raise ValueError(f"learning_rate_end {self.learning_rate_end} must be at most learning_rate "
                             f"{self.learning_rate}")
        reserved = set(RESERVED_SEEDS)
        if reserved & set(self.eval_seeds):
            raise ValueError(f"eval_seeds must not include the evaluation seeds {EVAL_SEEDS}")
        if self.seed in reserved | set(self.eval_seeds):
            raise ValueError(f"seed {self.seed} is an evaluation or validation seed")
        return self

    @property
    def actor_average_window(self) -> int:
        """Environment steps at the end of the run whose actor weights are averaged (0: none):
        ``actor_average_steps``, or the last third of the run when that is None."""
        return self.steps // 3 if self.actor_average_steps is None else self.actor_average_steps

    @property
    def actor_average_start(self) -> int:
        """Environment step after which each step adds the actor's weights to the average: the
        last :attr:`actor_average_window` steps of the run, never before ``learning_starts``."""
        return max(self.learning_starts, self.steps - self.actor_average_window)

    AUTO_DEVICE: ClassVar[str] = "cpu"
    """What ``device="auto"`` picks. These networks are small (SAC's 64 x 64 MLP actor or PopSAN's
    32 x 32 LIF layers unrolled over T steps, two 256 x 256 critics, minibatches of 256): a gradient
    step is a few hundred kernels of microseconds each, so on a GPU the launch latency (~5-10 us a
    kernel) and the host-device copies of every environment step (the simulator runs in numpy on
    the CPU) cost more than the arithmetic saves, and one CPU thread keeps up. cpu is chosen until
    a measurement says otherwise: ``scripts/device_check.sh`` times SAC and SDRL env steps/s on
    cuda against cpu on a GPU machine and prints which was faster."""

    @property
    def torch_device(self) -> str:
        """The torch device of the networks: ``device``, with auto meaning :attr:`AUTO_DEVICE`."""
        return self.AUTO_DEVICE if self.device == "auto" else self.device

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists, the popsan config as a nested dict)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "TrainConfig") -> "TrainConfig":
        """Inverse of :meth:`to_dict`, also for older runs' configs (removed fields at the value
        this version reproduces are dropped).

        :param source: what the data came from (a file), for the message
        :raises ValueError: one line naming the source and the field
        """
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(one_line(e, source)) from None

    def with_(self, **changes: Any) -> "TrainConfig":
        """A copy with fields changed, validated (``popsan`` may be a dict of its fields to change)."""
        data = self.model_dump()
        if isinstance(changes.get("popsan"), dict):
            changes["popsan"] = {**data["popsan"], **changes["popsan"]}
        return TrainConfig.from_dict({**data, **changes})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The fields a config file sets: TOML (top-level fields, PopSAN's in a ``[popsan]`` table;
    a field left out keeps its default) or JSON (``.json``, e.g. a run's ``config.json``).

    :raises ValueError: an unreadable file or bad syntax, one line naming the file (and line)
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomli.loads(text)
    except (json.JSONDecodeError, tomli.TOMLDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of config fields")
    return data
