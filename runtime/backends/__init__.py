"""Policy backends: one small protocol, chosen by name from a registry, each imported lazily.

A backend is the *how* of running a bundle's actor (the *what*). Every backend

* is built by ``load(bundle, precision)`` and holds whatever it needs (a session, a network)
  for the service's life;
* answers ``decide(obs)`` with ``obs``: (n, obs_dim) float32 -> ``action``: (n, act_dim) float32
  in [-1, 1];
* says its ``name``, its ``precision`` ("float" or "fixed"), whether ``decide`` may be called
  from several threads at once (``thread_safe``), what runs it (``execution_provider``: ONNX
  Runtime's provider, e.g. ``CUDAExecutionProvider``; ``numpy (CPU)``; Lava's simulator), and
  its energy per decision in J (``energy_per_decision_j``; None until the energy stage prices it);
* releases its resources in ``close()``.

Registry (Lava's ``select_tag``): ``onnx`` (ONNX Runtime), ``reference`` (numpy
``ActorSpec.forward``), ``lava`` (Lava, float or fixed point). Only the chosen backend's module is
imported, so the runtime imports without onnxruntime's or Lava's cost, and never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..bundle import PolicyBundle

__all__ = [
    "PRECISIONS",
    "BackendEntry",
    "BackendError",
    "BackendUnavailable",
    "PolicyBackend",
    "available_backends",
    "check_against_recorded",
    "check_obs",
    "make_backend",
    "register_backend",
]

PRECISIONS = ("float", "fixed")
LAVA_FIXED_TARGET = "lava_fixed"  # the bundle's quantised actor (fixed_point.save_fixed_point)


class BackendError(ValueError):
    """A backend that cannot be made: unknown name, unsupported precision, unusable bundle."""


class BackendUnavailable(BackendError):
    """A backend whose optional dependency is not installed; the message names what to install."""


@runtime_checkable
class PolicyBackend(Protocol):
    """What the service needs from a backend (see the module docstring)."""

    name: str
    precision: str
    thread_safe: bool
    energy_per_decision_j: Optional[float]

    def decide(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch. ``obs``: (n, obs_dim) float32 -> (n, act_dim) float32 in [-1, 1]."""
        ...

    def close(self) -> None:
        """Release sessions, processes and files; the backend is unusable afterwards."""
        ...


Loader = Callable[["PolicyBundle", str], PolicyBackend]


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: where its loader lives and which precisions it runs.

    :param name: registry name, e.g. "onnx"
    :param target: ``"module:attribute"`` of a callable ``(bundle, precision) -> PolicyBackend``,
        imported on first use; or the callable itself
    :param precisions: the precisions it supports
    :param extra: the pip extra (or package) that provides its dependency, for error messages
    """

    name: str
    target: "str | Loader"
    precisions: tuple[str, ...]
    extra: str = ""

    def loader(self) -> Loader:
        if callable(self.target):
            return self.target
        module_name, attr = self.target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            hint = f" (install it with: pip install {self.extra})" if self.extra else ""
            raise BackendUnavailable(f"backend {self.name!r}: cannot import {e.name!r}{hint}") from e
        obj: object = module
        for part in attr.split("."):  # "Class.method" is allowed
            obj = getattr(obj, part)
        return obj  # type: ignore[return-value]


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(name: str, target: "str | Loader", precisions: tuple[str, ...] = ("float",),
                     extra: str = "") -> None:
    """Add (or replace) a backend in the registry.

    :param name: registry name
    :param target: ``"module:attribute"`` (imported lazily) or a ``(bundle, precision) -> backend`` callable
    :param precisions: supported precisions, a subset of ``PRECISIONS``
    :param extra: what to pip-install when its import fails
    """
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise BackendError(f"backend {name!r}: unknown precisions {bad} (known: {', '.join(PRECISIONS)})")
    _REGISTRY[name] = BackendEntry(name=name, target=target, precisions=tuple(precisions), extra=extra)


def available_backends() -> dict[str, tuple[str, ...]]:
    """Registered backend names and their precisions (registration, not installation)."""
    return {name: e.precisions for name, e in sorted(_REGISTRY.items())}


def make_backend(name: str, bundle: "PolicyBundle", precision: str = "float") -> PolicyBackend:
    """Load ``bundle`` into the backend registered as ``name``.

    :param name: registry name ("onnx", "reference", "lava", ...)
    :param bundle: a loaded, verified bundle
    :param precision: "float" or "fixed", among what the backend supports
    :raises BackendError: unknown name or precision, or a bundle the backend cannot run
    :raises BackendUnavailable: the backend's dependency is not installed
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BackendError(f"backend: unknown name {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    if precision not in entry.precisions:
        raise BackendError(f"precision: backend {name!r} runs {', '.join(entry.precisions)}, not {precision!r}")
    return entry.loader()(bundle, precision)


RECORDED_CHECK_OBS = 32  # recorded observations replayed when a backend starts serving (milliseconds)
RECORDED_CHECK_TOLERANCE = 1e-5  # max |delta action| of a float backend against the numpy reference


def check_against_recorded(backend: PolicyBackend, bundle: "PolicyBundle", n_obs: int = RECORDED_CHECK_OBS) -> float:
    """Replay the bundle's recorded observations through ``backend`` and compare its actions with
    the bundle's own reference: ``actor_spec`` for float backends (max |delta a| <= 1e-5), the
    integer model of ``lava_fixed`` for fixed ones (equal). A cheap parity check at the place a
    bundle is used, so an artefact that disagrees with the spec (a tampered file rehashed into
    its manifest, NaN weights) is refused before it serves.

    :param n_obs: how many of the recorded observations to replay
    :return: max |delta action| seen
    :raises BackendError: the actions differ, naming the bundle, backend and first observation
    """
    obs = bundle.recorded_observations()[:n_obs]
    if backend.precision == "fixed":
        from ..fixed_point import load_fixed_point, quantize_actor

        fixed = (load_fixed_point(bundle.spec, bundle.file(LAVA_FIXED_TARGET)) if LAVA_FIXED_TARGET in bundle.targets
                 else quantize_actor(bundle.spec))
        expected, tolerance = fixed.forward(obs), 0.0
    else:
        expected, tolerance = bundle.spec.forward(obs), RECORDED_CHECK_TOLERANCE
    got = np.asarray(backend.decide(obs), dtype=np.float64)
    diff = np.abs(got - expected)
    worst = float(np.max(diff)) if np.all(np.isfinite(got)) else float("inf")
    if not worst <= tolerance:
        row = int(np.argmax(np.where(np.isfinite(diff), diff, np.inf).max(axis=1)))
        raise BackendError(f"{bundle.path}: backend {backend.name!r} ({backend.precision}) does not reproduce the "
                           f"bundle's reference on recorded observation {row}: max |delta action| {worst:.3g} > "
                           f"{tolerance:g}; refusing to serve it")
    return worst


def check_obs(obs: np.ndarray, obs_dim: int) -> np.ndarray:
    """``obs`` as a C-contiguous (n, obs_dim) float32 array.

    :raises ValueError: another shape
    """
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(f"obs: expected shape (n, {obs_dim}), got {obs.shape}")
    return obs


# ---------------------------------------------------------------------------------------------
# lava: a thin wrapper over aolo.runtime.backends.lava.LavaActorNetwork
# ---------------------------------------------------------------------------------------------


class LavaBackend:
    """Lava actor (float or bit-accurate fixed point) behind the backend protocol.

    The network is built once, in :meth:`load`, and kept for the service's life; ``decide`` hands
    it the batch, which it runs one observation after the other (one network, one state). At
    ``fixed`` precision it runs the bundle's ``lava_fixed`` target (the integers export checked)
    when there is one, else the spec quantised at load. A Lava network holds per-run state and
    processes, so it is not thread-safe: the service serialises calls (``thread_safe = False``).

    :param network: a ``LavaActorNetwork`` with ``decide(obs (n, obs_dim)) -> (action (n, act_dim), spikes)``
    :param obs_dim: observation size
    :param act_dim: action size
    :param precision: "float" or "fixed"
    """

    name = "lava"
    thread_safe = False
    execution_provider = "Lava Loihi2SimCfg (CPU simulation of Loihi 2)"

    def __init__(self, network: object, obs_dim: int, act_dim: int, precision: str) -> None:
        self._net = network
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.precision = precision
        self.energy_per_decision_j: Optional[float] = None

    @classmethod
    def load(cls, bundle: "PolicyBundle", precision: str = "float") -> "LavaBackend":
        try:
            from .lava import LavaActorNetwork  # heavy: imports lava-nc
        except ModuleNotFoundError as e:
            raise BackendUnavailable(f"backend 'lava': cannot import {e.name!r} "
                                     "(install it with: pip install 'aolo[lava]')") from e
        spec = bundle.spec
        kwargs = {}
        if precision == "fixed" and LAVA_FIXED_TARGET in bundle.targets:
            # run the integers the bundle pins (and export checked), not a fresh quantisation
            from ..fixed_point import load_fixed_point
            try:
                kwargs["fixed_point"] = load_fixed_point(spec, bundle.file(LAVA_FIXED_TARGET))
            except (ValueError, KeyError, OSError) as e:
                raise BackendError(f"{bundle.file(LAVA_FIXED_TARGET)}: cannot load the fixed-point actor: {e}") from None
        try:
            network = LavaActorNetwork(spec, precision=precision, **kwargs)  # lava-nc is imported here
        except ModuleNotFoundError as e:
            raise BackendUnavailable(f"backend 'lava': cannot import {e.name!r} "
                                     "(install it with: pip install 'aolo[lava]')") from e
        return cls(network, spec.obs_dim, spec.act_dim, precision)

    def decide(self, obs: np.ndarray) -> np.ndarray:
        """``obs``: (n, obs_dim) float32 -> action (n, act_dim) float32; one network run per row."""
        obs = check_obs(obs, self.obs_dim)
        action, _spikes = self._net.decide(obs)  # type: ignore[attr-defined]  # loops over the rows
        return np.asarray(action, dtype=np.float32).reshape(obs.shape[0], self.act_dim)

    def close(self) -> None:
        close = getattr(self._net, "close", None)
        if close is not None:
            close()


register_backend("onnx", "aolo.runtime.backends.onnx:OnnxBackend.load", ("float",), extra="onnxruntime")
register_backend("reference", "aolo.runtime.backends.reference:ReferenceBackend.load", ("float",))
register_backend("lava", LavaBackend.load, ("float", "fixed"), extra="'aolo[lava]'")
