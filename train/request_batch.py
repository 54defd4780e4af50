"""A batch of LLM requests with their outcomes at every directive level, and what every request
source shares: the task classes and levels, the error of unusable request data, the Wh-to-J
conversion, and the :class:`RequestSource` protocol (:mod:`aolo.train.requests` holds the sources).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from aolo.runtime.policy_io import LEVELS, TASK_CLASSES  # the one definition, shared with the runtime

__all__ = ["CLASS_INDEX", "LEVEL_INDEX", "LEVELS", "N_CLASSES", "N_LEVELS", "TASK_CLASSES", "RequestBatch",
           "RequestDataError", "RequestSource", "wh_to_j"]

N_CLASSES = len(TASK_CLASSES)
N_LEVELS = len(LEVELS)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(TASK_CLASSES)}
LEVEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}

J_PER_WH = 3600.0


class RequestDataError(ValueError):
    """Request data that cannot be used; the message names the file (and line, column or field)."""


def wh_to_j(energy_wh: ArrayLike) -> np.ndarray:
    """Convert energy from Wh (Sprout's CSV unit) to J; the one place this conversion happens.

    :param energy_wh: any shape, Wh
    :return: same shape float64, J
    """
    return np.asarray(energy_wh, dtype=np.float64) * J_PER_WH


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class RequestBatch:
    """``n`` LLM requests, each with its outcome at every directive level (columns, row = request).

    :param task_class: (n,) int64 in 0..5, index into :data:`TASK_CLASSES`
    :param prompt_tokens: (n,) int64 >= 1, prompt length n_in (tokens)
    :param output_tokens: (n, 3) float64 >= 0, output tokens kappa at L0, L1, L2
    :param inference_energy_j: (n, 3) float64 >= 0, GPU inference energy at L0, L1, L2 (J)
    :param inference_latency_s: (n, 3) float64 >= 0, inference latency at L0, L1, L2 (s)
    :param preferred_level: (n,) int64 in 0..2, the level the judge prefers; quality of choosing
        level ``l`` is ``q = 1[l == preferred_level]``
    :param deadline_s: (n,) float64 > 0, latency budget T_max(c) of the request (s)
    :param output_tokens_imputed: (n, 3) bool, True where ``output_tokens`` was imputed from
        energy rather than measured; all False when omitted
    """

    task_class: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    inference_energy_j: np.ndarray
    inference_latency_s: np.ndarray
    preferred_level: np.ndarray
    deadline_s: np.ndarray
    output_tokens_imputed: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.task_class = np.asarray(self.task_class, dtype=np.int64)
        if self.task_class.ndim != 1:
            raise ValueError(f"RequestBatch.task_class: expected shape (n,), got {self.task_class.shape}")
        n = self.task_class.shape[0]
        self.prompt_tokens = _column(self.prompt_tokens, "prompt_tokens", np.int64, (n,))
        self.output_tokens = _column(self.output_tokens, "output_tokens", np.float64, (n, N_LEVELS))
        self.inference_energy_j = _column(self.inference_energy_j, "inference_energy_j", np.float64, (n, N_LEVELS))
        self.inference_latency_s = _column(self.inference_latency_s, "inference_latency_s", np.float64, (n, N_LEVELS))
        self.preferred_level = _column(self.preferred_level, "preferred_level", np.int64, (n,))
        self.deadline_s = _column(self.deadline_s, "deadline_s", np.float64, (n,))
        if self.output_tokens_imputed is None:
            self.output_tokens_imputed = np.zeros((n, N_LEVELS), dtype=bool)
        else:
            self.output_tokens_imputed = _column(self.output_tokens_imputed, "output_tokens_imputed", np.bool_, (n, N_LEVELS))
        if n:
            _check_range(self.task_class, "task_class", 0, N_CLASSES - 1)
            _check_range(self.preferred_level, "preferred_level", 0, N_LEVELS - 1)
            _check_range(self.prompt_tokens, "prompt_tokens", 1, None)
            for name in ("output_tokens", "inference_energy_j", "inference_latency_s"):
                _check_range(getattr(self, name), name, 0.0, None)
            if not np.all(self.deadline_s > 0):
                raise ValueError("RequestBatch.deadline_s: every deadline must be > 0 s")

    def __len__(self) -> int:
        return int(self.task_class.shape[0])

    def take(self, idx: ArrayLike | slice) -> RequestBatch:
        """The requests at ``idx`` (an int, a slice, an int array or a (n,) bool mask), as a batch.

        :param idx: int, slice, (k,) int or (n,) bool
        :return: a new batch (an int gives a batch of one)
        """
        if isinstance(idx, (int, np.integer)):
            idx = np.array([idx])
        return RequestBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    __getitem__ = take

    def quality(self, level: ArrayLike) -> np.ndarray:
        """Preference quality of choosing ``level`` for each request (Sprout's metric).

        :param level: (n,) int in 0..2, or a scalar level for all
        :return: (n,) float64, 1.0 where ``level == preferred_level`` else 0.0
        """
        return (np.asarray(level) == self.preferred_level).astype(np.float64)

    @classmethod
    def concatenate(cls, batches: Sequence[RequestBatch]) -> RequestBatch:
        """One batch holding ``batches`` in order.

        :param batches: at least one batch
        :return: a batch of ``sum(len(b))`` requests
        """
        if not batches:
            raise ValueError("RequestBatch.concatenate: needs at least one batch")
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)})


def _column(value: ArrayLike, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.shape != shape:
        raise ValueError(f"RequestBatch.{name}: expected shape {shape}, got {array.shape}")
    return array


def _check_range(array: np.ndarray, name: str, low: float, high: float | None) -> None:
    bad = ~(array >= low) if high is None else ~((array >= low) & (array <= high))
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"RequestBatch.{name}: row {i} is {array[i]!r}, must be {bound}")


class RequestSource(Protocol):
    """Anything that draws requests of given classes: the synthetic model or trace replay."""

    def sample(self, rng: np.random.Generator, task_class: ArrayLike) -> RequestBatch:
        """Draw one request per entry of ``task_class`` ((n,) int in 0..5)."""
        ...
