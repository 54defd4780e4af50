"""Reference backend: the bundle's :class:`~aolo.runtime.actor_spec.ActorSpec` run in numpy.

The parity reference for every other backend (same bundle, same observations, same actions
within tolerance) and a dependency-free way to serve a bundle. numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from . import BackendError, check_obs

if TYPE_CHECKING:
    from ..actor_spec import ActorSpec
    from ..bundle import PolicyBundle

__all__ = ["ReferenceBackend"]


class ReferenceBackend:
    """``ActorSpec.forward`` behind the backend protocol; stateless, so thread-safe.

    :param spec: the actor
    """

    name = "reference"
    precision = "float"
    thread_safe = True
    execution_provider = "numpy (CPU)"

    def __init__(self, spec: "ActorSpec") -> None:
        self.spec = spec
        self.energy_per_decision_j: Optional[float] = None

    @classmethod
    def load(cls, bundle: "PolicyBundle", precision: str = "float") -> "ReferenceBackend":
        """:param precision: only "float"."""
        if precision != "float":
            raise BackendError(f"precision: backend 'reference' runs float, not {precision!r}")
        return cls(bundle.spec)

    def decide(self, obs: np.ndarray) -> np.ndarray:
        """``obs``: (n, obs_dim) float32 -> action (n, act_dim) float32 in [-1, 1]."""
        return self.spec.forward(check_obs(obs, self.spec.obs_dim))

    def close(self) -> None:
        """Nothing to release."""
