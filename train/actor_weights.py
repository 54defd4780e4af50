"""A run's actor as tensors and JSON, so that reading a run directory someone handed over never
runs code from it.

SB3's ``model.zip`` stores the model's settings with cloudpickle (its ``data`` entry): ``SAC.load``
unpickles them, and a pickled call planted there runs. So every checkpoint also writes

    actor.safetensors   the actor's ``state_dict`` (its last weights, as in model.zip): safetensors,
                        a JSON header and raw little-endian tensor bytes, nothing to unpickle
    actor_kwargs.json   the actor's construction parameters (SB3's ``_get_constructor_parameters``
                        of :class:`stable_baselines3.sac.policies.Actor` or
                        :class:`aolo.train.sac_policy.SpikingActor`) as plain values

and :func:`load_actor` rebuilds the actor from them (``aolo export``, ``evaluate -p RUN_DIR``,
``compare`` and the pipeline, through :func:`aolo.train.run.load_run`). safetensors (Hugging
Face's format, the one ``transformers`` and ``diffusers`` ship weights in) rather than
``torch.save``: reading it parses a bounded JSON header and copies bytes, where even
``torch.load(weights_only=True)`` runs a (restricted) unpickler.

A run saved before these files existed has only ``model.zip``. Its ``policy.pth`` entry is SB3's
``torch.save`` of the policy's ``state_dict``, a plain dict of tensors:
:func:`actor_state_from_sb3_zip` reads that one entry with ``torch.load(weights_only=True)``, never
the pickled ``data`` entry, and :func:`actor_kwargs_from_config` gives what training built it from.
"""

from __future__ import annotations

import inspect
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from aolo.runtime.actor_spec import MAX_NODES, MAX_PARAMETERS, MAX_TIMESTEPS, MAX_WIDTH
from aolo.runtime.policy_io import ACT_DIM, OBS_DIM

from .env import action_space, observation_space
from .popsan_config import PopSANConfig
from .run_files import MAX_RUN_FILE_READ_BYTES, read_run_file
from .sac_policy import SpikingActor

__all__ = ["ActorKwargs", "save_actor_weights", "load_actor", "load_actor_state", "actor_state_from_sb3_zip",
           "actor_kwargs_from_config"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "ELU": nn.ELU, "LeakyReLU": nn.LeakyReLU}
"""Activation functions an actor may name (SB3's SAC uses ReLU)."""
SB3_POLICY_ENTRY = "policy.pth"
"""The entry of SB3's model.zip that holds ``torch.save(policy.state_dict())``."""


class ActorKwargs(BaseModel):
    """``actor_kwargs.json``: what rebuilds a run's actor, every value plain and bounded.

    :param actor_class: ``"Actor"`` (SAC's MLP actor) or ``"SpikingActor"`` (SDRL's PopSAN actor)
    :param obs_dim: observation size (this aolo's observation is ``OBS_DIM`` values)
    :param act_dim: action size (``ACT_DIM``)
    :param net_arch: hidden sizes of SB3's ``latent_pi`` MLP (SAC's actor; SDRL's log-std network)
    :param features_dim: size of the flattened observation (= ``obs_dim``)
    :param activation_fn: name of the MLP's activation in :data:`ACTIVATIONS`
    :param log_std_init: SB3's initial log-std (gSDE only; kept for a faithful rebuild)
    :param full_std: SB3's gSDE option (unused without gSDE)
    :param use_expln: SB3's gSDE option (unused without gSDE)
    :param clip_mean: SB3's gSDE mean clip (unused without gSDE)
    :param normalize_images: SB3's option (a Box observation is never an image)
    :param use_sde: always False
    :param popsan: the PopSAN's constants, ``"SpikingActor"`` only
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor_class: Literal["Actor", "SpikingActor"]
    obs_dim: int = Field(ge=1, le=MAX_WIDTH)
    act_dim: int = Field(ge=1, le=MAX_WIDTH)
    net_arch: tuple[PositiveInt, ...] = Field(max_length=MAX_NODES)
    features_dim: int = Field(ge=1, le=MAX_WIDTH)
    activation_fn: Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]
    log_std_init: float = Field(allow_inf_nan=False)
    full_std: bool
    use_expln: bool
    clip_mean: float = Field(allow_inf_nan=False)
    normalize_images: bool
    use_sde: Literal[False]
    popsan: PopSANConfig | None = None

    @model_validator(mode="after")
    def _consistent_and_bounded(self) -> "ActorKwargs":
        if (self.actor_class == "SpikingActor") != (self.popsan is not None):
            raise ValueError("popsan: given exactly when actor_class is 'SpikingActor'")
        if self.features_dim != self.obs_dim:
            raise ValueError(f"features_dim: {self.features_dim} must equal obs_dim {self.obs_dim} (a flat observation)")
        widths = list(self.net_arch)
        if self.popsan is not None:
            p = self.popsan
            if p.timesteps > MAX_TIMESTEPS:
                raise ValueError(f"popsan.timesteps: {p.timesteps} is more than {MAX_TIMESTEPS}")
            if len(p.hidden_sizes) > MAX_NODES:
                raise ValueError(f"popsan.hidden_sizes: more than {MAX_NODES} layers")
            widths += [*p.hidden_sizes, self.obs_dim * p.pop_per_obs_dim, self.act_dim * p.pop_per_act_dim]
        if max(widths, default=0) > MAX_WIDTH:
            raise ValueError(f"a layer wider than {MAX_WIDTH} neurons")
        if self.n_parameters() > MAX_PARAMETERS:
            raise ValueError(f"the actor would have {self.n_parameters()} parameters, more than {MAX_PARAMETERS}")
        return self

    def n_parameters(self) -> int:
        """The actor's parameter count, computed from these values before anything is allocated
        (``tests/test_run_trust.py`` checks it against built actors of both kinds)."""
        dims = [self.features_dim, *self.net_arch]
        latent = sum(a * b + b for a, b in zip(dims, dims[1:]))
        head = dims[-1] * self.act_dim + self.act_dim  # SB3's log_std Linear (and mu, for the MLP actor)
        if self.popsan is None:
            return latent + 2 * head
        p = self.popsan
        sizes = [self.obs_dim * p.pop_per_obs_dim, *p.hidden_sizes, self.act_dim * p.pop_per_act_dim]
        encoder, decoder = 2 * sizes[0], sizes[-1] + self.act_dim  # mean and std; weight and bias
        return latent + head + encoder + sum(a * b for a, b in zip(sizes, sizes[1:])) + decoder

    @classmethod
    def of(cls, actor: Actor) -> "ActorKwargs":
        """The construction parameters of a built actor (what :meth:`build` rebuilds it from).

        :raises ValueError: an actor this module cannot rebuild (another features extractor or
            activation, gSDE)
        """
        data = actor._get_constructor_parameters()
        obs_space, act_space = data["observation_space"], data["action_space"]
        if type(data["features_extractor"]) is not FlattenExtractor:
            raise ValueError(f"ActorKwargs: features_extractor {type(data['features_extractor']).__name__} "
                             "is not SB3's FlattenExtractor")
        activation = data["activation_fn"].__name__
        if ACTIVATIONS.get(activation) is not data["activation_fn"]:
            raise ValueError(f"ActorKwargs: activation_fn {activation} is not one of {', '.join(ACTIVATIONS)}")
        return _validated(actor_class=type(actor).__name__, obs_dim=int(obs_space.shape[0]), act_dim=int(act_space.shape[0]),
                   net_arch=tuple(data["net_arch"]), features_dim=int(data["features_dim"]), activation_fn=activation,
                   log_std_init=float(data["log_std_init"]), full_std=bool(data["full_std"]),
                   use_expln=bool(data["use_expln"]), clip_mean=float(data["clip_mean"]),
                   normalize_images=bool(data["normalize_images"]), use_sde=bool(data["use_sde"]),
                   popsan=data.get("popsan"))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def read(cls, path: Path) -> "ActorKwargs":
        """Read ``actor_kwargs.json``.

        :raises ValueError: not JSON, or a field missing or out of bounds (named)
        """
        try:
            raw = json.loads(read_run_file(path))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ValueError(f"{path}: {_first_error(e)}") from None

    def build(self) -> Actor:
        """A fresh actor (random weights) of these parameters, on CPU, in evaluation mode.

        :raises ValueError: dimensions other than this aolo's observation and action
        """
        if (self.obs_dim, self.act_dim) != (OBS_DIM, ACT_DIM):
            raise ValueError(f"obs_dim, act_dim: the actor takes {self.obs_dim} values to {self.act_dim}, this aolo's "
                             f"observation has {OBS_DIM} and its action {ACT_DIM}")
        obs_space = observation_space()
        kwargs: dict[str, Any] = dict(
            observation_space=obs_space, action_space=action_space(), net_arch=list(self.net_arch),
            features_extractor=FlattenExtractor(obs_space), features_dim=self.features_dim,
            activation_fn=ACTIVATIONS[self.activation_fn], use_sde=False, log_std_init=self.log_std_init,
            full_std=self.full_std, use_expln=self.use_expln, clip_mean=self.clip_mean,
            normalize_images=self.normalize_images)
        actor = SpikingActor(popsan=self.popsan, **kwargs) if self.popsan is not None else Actor(**kwargs)
        actor.set_training_mode(False)
        return actor


def save_actor_weights(actor: nn.Module, path: str | Path) -> None:
    """Write the actor's ``state_dict`` (parameters and buffers) as safetensors at ``path``."""
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage, and a state_dict may hold views
    save_file({k: v.detach().cpu().clone() for k, v in actor.state_dict().items()}, str(path),
              metadata={"format": "pt", "writer": "aolo.train.actor_weights"})


def load_actor_state(actor: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``state`` into ``actor``: exactly the actor's tensors, with their shapes, every one finite.

    :param source: what ``state`` came from, for messages
    :raises ValueError: a tensor missing, unexpected, of another shape or not finite (named)
    """
    own = actor.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"tensor {missing[0]!r} missing" if missing else f"unexpected tensor {unexpected[0]!r}"
        raise ValueError(f"{source}: {what} (not the weights of the actor its config describes)")
    for name, value in state.items():
        if value.shape != own[name].shape:
            raise ValueError(f"{source}: tensor {name!r} has shape {tuple(value.shape)}, the actor's is "
                             f"{tuple(own[name].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: tensor {name!r} holds non-finite values")
    actor.load_state_dict(state, strict=True)


def load_actor(weights_path: Path, kwargs: ActorKwargs, kwargs_path: Path) -> Actor:
    """Rebuild a run's actor from ``actor.safetensors`` and its :class:`ActorKwargs`.

    :param kwargs_path: where ``kwargs`` were read (``actor_kwargs.json``), for messages
    :return: the actor, on CPU, in evaluation mode
    :raises ValueError: the weights unreadable or malformed, or not fitting the actor (the file
        and the tensor named); an actor this aolo cannot build (``kwargs_path`` named)
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(read_run_file(weights_path))
    except (SafetensorError, RuntimeError) as e:
        raise ValueError(f"{weights_path}: not a safetensors file ({str(e).splitlines()[0] if str(e) else e!r})") from None
    try:
        actor = kwargs.build()
    except ValueError as e:
        raise ValueError(f"{kwargs_path}: {e}") from None
    load_actor_state(actor, state, weights_path)
    return actor


def actor_state_from_sb3_zip(path: Path) -> dict[str, torch.Tensor]:
    """The actor's tensors from SB3's ``model.zip``, reading only its ``policy.pth`` entry with
    ``torch.load(weights_only=True)`` (never the cloudpickled ``data`` entry).

    :return: actor tensor name (without SB3's ``actor.`` prefix) -> tensor
    :raises ValueError: not a zip, no ``policy.pth``, an entry too large, or one that is not a
        plain dict of tensors (named)
    """
    data = read_run_file(path)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        info = archive.getinfo(SB3_POLICY_ENTRY)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not a zip file (SB3's model.zip)") from None
    except KeyError:
        raise ValueError(f"{path}: no {SB3_POLICY_ENTRY} entry (not an SB3 model)") from None
    if info.file_size > MAX_RUN_FILE_READ_BYTES:  # read() stops at the declared size, so this bounds it
        raise ValueError(f"{path}: entry {SB3_POLICY_ENTRY} is larger than {MAX_RUN_FILE_READ_BYTES} bytes")
    try:
        state = torch.load(io.BytesIO(archive.read(info)), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for a file that is not plain weights
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: entry {SB3_POLICY_ENTRY} is not a plain dict of tensors, refusing to load it "
                         f"({first[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{path}: entry {SB3_POLICY_ENTRY} is not a dict of named tensors")
    return {k.removeprefix("actor."): v for k, v in state.items() if k.startswith("actor.")}


def actor_kwargs_from_config(config: Any) -> ActorKwargs:
    """The construction parameters of a run's actor from its
    :class:`aolo.train.train_config.TrainConfig`, for a run saved without ``actor_kwargs.json``:
    what training passes (``net_arch`` = ``actor_hidden``, PopSAN's constants for SDRL) and
    SB3's ``SACPolicy`` defaults for the rest, as training leaves them.

    :raises ValueError: an actor beyond the bounds of :class:`ActorKwargs` (one line)
    """
    defaults = {name: p.default for name, p in inspect.signature(SACPolicy.__init__).parameters.items()}
    full_std = inspect.signature(Actor.__init__).parameters["full_std"].default  # SACPolicy does not pass it
    spiking = config.algo == "sdrl"
    return _validated(
        actor_class="SpikingActor" if spiking else "Actor", obs_dim=OBS_DIM, act_dim=ACT_DIM,
        net_arch=tuple(config.actor_hidden), features_dim=OBS_DIM, activation_fn=defaults["activation_fn"].__name__,
        log_std_init=defaults["log_std_init"], full_std=full_std, use_expln=defaults["use_expln"],
        clip_mean=defaults["clip_mean"], normalize_images=defaults["normalize_images"], use_sde=False,
        popsan=config.popsan if spiking else None)


def _validated(**values: Any) -> ActorKwargs:
    """:class:`ActorKwargs` of ``values``; a ValueError of one line naming the field."""
    try:
        return ActorKwargs(**values)
    except ValidationError as e:
        raise ValueError(_first_error(e)) from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "(root)"
    return f"field {where!r}: {err['msg'].removeprefix('Value error, ')}"
