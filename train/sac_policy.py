"""SB3 SAC with a PopSAN actor (SDRL) or its plain ANN twin (SAC).

The two differ in one method, :meth:`SpikingActor.get_action_dist_params`; critics, replay,
entropy tuning and the squashed Gaussian are SB3's and identical (docs/style.md section 2). Both
are :class:`EntropyRateSAC`, SB3's ``SAC`` with one option on the entropy coefficient's learning rate.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn

from .popsan import PopSAN, PopSANConfig

__all__ = ["SpikingActor", "SDRLPolicy", "EntropyRateSAC", "make_sac", "check_spaces", "deployed_action"]


class SpikingActor(Actor):
    """SAC actor whose action mean comes from a PopSAN.

    The log-std comes, as in PopSAN's ``SquashedGaussianPopSpikeActor``, from a separate ANN on
    the observation (``log_std_network``, an MLP with ReLU): here SB3's own ``latent_pi`` MLP
    (sizes ``net_arch``) followed by its ``log_std`` Linear, clamped to [-20, 2]. It only shapes
    exploration and is not deployed; SB3's ``mu`` head is removed.

    :param popsan: PopSAN shape and neuron constants
    :param kwargs: :class:`stable_baselines3.sac.policies.Actor` arguments; ``use_sde`` must be False
    """

    def __init__(self, *args: Any, popsan: PopSANConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_sde:
            raise ValueError("SpikingActor: use_sde must be False (gSDE needs SB3's latent features)")
        del self.mu
        self.popsan_config = PopSANConfig.coerce(popsan)
        self.popsan = PopSAN(self.features_dim, int(np.prod(self.action_space.shape)), self.popsan_config)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["popsan"] = self.popsan_config.to_dict()
        return data

    def get_action_dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """:param obs: (batch, obs_dim) float32
        :return: mean (batch, act_dim), log_std (batch, act_dim), and an empty dict
        """
        features = self.extract_features(obs, self.features_extractor)
        mean = self.popsan(features)
        log_std = self.log_std(self.latent_pi(features))
        return mean, torch.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX), {}


def deployed_action(actor: Actor, obs: torch.Tensor) -> torch.Tensor:
    """The deterministic action of a SAC or SDRL actor, ``tanh(mean)``: what
    ``actor(obs, deterministic=True)`` returns, bit for bit, without computing the log-std head and
    the distribution object SB3 builds around the mean, which take most of a decision's time at
    the small batches of an evaluation (``tests/test_popsan_actor.py`` checks both algorithms).

    :param actor: an SB3 SAC :class:`Actor` or a :class:`SpikingActor` (no gSDE)
    :param obs: (batch, obs_dim) float32
    :return: (batch, act_dim) float32 in [-1, 1]
    """
    features = actor.extract_features(obs, actor.features_extractor)
    mean = actor.popsan(features) if isinstance(actor, SpikingActor) else actor.mu(actor.latent_pi(features))
    return torch.tanh(mean)


class SDRLPolicy(SACPolicy):
    """:class:`SACPolicy` with a :class:`SpikingActor`.

    :param observation_space: a Box
    :param action_space: a Box, exactly [-1, 1]^act_dim
    :param lr_schedule: learning rate schedule
    :param popsan: PopSAN shape and neuron constants (a dict of plain values is accepted)
    :param kwargs: every other :class:`SACPolicy` argument, unchanged
    """

    actor: SpikingActor

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, lr_schedule: Any,
                 popsan: PopSANConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        # SACPolicy.__init__ calls _build, hence make_actor, before returning.
        self.popsan_config = PopSANConfig.coerce(popsan)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_actor(self, features_extractor: nn.Module | None = None) -> SpikingActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SpikingActor(popsan=self.popsan_config, **actor_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["popsan"] = self.popsan_config.to_dict()
        return data


class EntropyRateSAC(SAC):
    """SB3 :class:`SAC` whose entropy coefficient may learn at its own constant rate.

    SB3 applies the one learning-rate schedule to actor, critics and the entropy coefficient. With
    an annealed schedule, log(alpha) can move at most about one learning rate per gradient step,
    so alpha lags its target entropy for the whole run; ``ent_coef_lr`` lets it keep pace while
    actor and critics anneal.

    :param ent_coef_lr: constant Adam learning rate of log(alpha) when ``ent_coef`` is ``'auto…'``;
        None: SB3's behaviour (the common schedule)
    :param args: :class:`SAC` arguments
    :param kwargs: :class:`SAC` arguments
    """

    def __init__(self, *args: Any, ent_coef_lr: float | None = None, **kwargs: Any) -> None:
        if ent_coef_lr is not None and not ent_coef_lr > 0:
            raise ValueError(f"EntropyRateSAC: ent_coef_lr must be > 0 or None, got {ent_coef_lr}")
        self.ent_coef_lr = ent_coef_lr
        super().__init__(*args, **kwargs)

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        own = self.ent_coef_optimizer if self.ent_coef_lr is not None else None
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        super()._update_learning_rate([o for o in optimizers if o is not own])
        if own is not None:
            update_learning_rate(own, self.ent_coef_lr)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise ValueError unless observations are a 1-D Box and actions exactly [-1, 1]^act_dim,
    so that SB3's action rescaling is the identity and the exported actor needs none."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"observation space must be a 1-D Box, got {observation_space}")
    if not (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1
            and np.all(action_space.low == -1.0) and np.all(action_space.high == 1.0)):
        raise ValueError(f"action space must be Box(-1, 1, (act_dim,)), got {action_space}")


def make_sac(algo: Literal["sdrl", "sac"], env: GymEnv | str, seed: int,
             popsan: PopSANConfig | dict[str, Any] | None = None, **hyper: Any) -> EntropyRateSAC:
    """SB3 SAC with the PopSAN actor (``"sdrl"``) or SB3's MLP actor (``"sac"``), all else equal.

    :param algo: ``"sdrl"`` or ``"sac"``
    :param env: environment (or id) with a 1-D Box observation and a [-1, 1]^act_dim action space
    :param seed: seed for SB3 (python, numpy, torch, action space)
    :param popsan: PopSAN constants, ``"sdrl"`` only
    :param hyper: further :class:`SAC` arguments (``policy_kwargs["net_arch"]`` sizes the actor's
        MLP, SDRL's log-std network, and the critics; SB3's default without it); ``use_sde`` must
        stay False
    :return: an unlearned :class:`EntropyRateSAC` model (``hyper`` may hold ``ent_coef_lr``)
    """
    if algo not in ("sdrl", "sac"):
        raise ValueError(f"make_sac: algo must be 'sdrl' or 'sac', got {algo!r}")
    if hyper.get("use_sde"):
        raise ValueError("make_sac: use_sde must be False")
    if popsan is not None and algo != "sdrl":
        raise ValueError("make_sac: popsan is an 'sdrl' option")
    policy_kwargs: dict[str, Any] = dict(hyper.pop("policy_kwargs", None) or {})
    policy: type[SACPolicy] = SACPolicy
    if algo == "sdrl":
        policy = SDRLPolicy
        policy_kwargs["popsan"] = PopSANConfig.coerce(popsan).to_dict()
    model = EntropyRateSAC(policy, env, seed=seed, policy_kwargs=policy_kwargs, **hyper)
    check_spaces(model.observation_space, model.action_space)
    return model
