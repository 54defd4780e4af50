"""Workload: when requests arrive and which task classes they are, hour by hour.

A :class:`Workload` answers two questions for an hour index ``h`` (whole hours since the episode
start; the episode starts at hour of day ``start_hour_of_day``):

* ``rate_per_s(h)``: the Poisson arrival rate during that hour (requests/s), and
* ``class_mix(h)``: the (6,) probabilities of the task classes (alpaca, math, mmlu, naturalqa,
  scienceqa, triviaqa) during that hour.

Two sources:

* :class:`DiurnalWorkload`, the embedded default: ``rate = base_rate_per_s * shape[hour of day]``
  with ``shape`` the mean Alibaba PAI hourly job submissions by (hour_index mod 24), normalised to
  mean 1 (``workload.diurnal_rate_shape`` in ``sprout_defaults.json``); the class mix is a daily
  Dirichlet draw around the class frequencies of Sprout's judged data.
* :class:`PaiTraceWorkload`, Sprout's reproduction mode: the rate follows the PAI trace hour by
  hour, and the class mix changes every 24 trace hours with a concentration that scales with that
  day's job volume.

Helpers turn either into a request stream: :func:`sample_arrivals` (Poisson arrivals under a
piecewise-constant hourly rate), :func:`sample_classes` and :func:`sample_arrival_stream`.

Data: Alibaba PAI GPU-cluster trace (Weng et al., "MLaaS in the Wild", NSDI 2022), hourly job
submissions, as used by Sprout (Li et al., EMNLP 2024) to drive load and request-mix changes.
numpy and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from numpy.typing import ArrayLike

from aolo.runtime.csv_rows import read_csv_rows

from .request_batch import N_CLASSES, RequestDataError
from .request_tables import RequestModelTables

__all__ = [
    "HOUR_S",
    "DiurnalWorkload",
    "PaiTraceWorkload",
    "Workload",
    "WorkloadDataError",
    "read_pai_hourly_jobs",
    "sample_arrival_stream",
    "sample_arrivals",
    "sample_classes",
]

HOUR_S = 3600.0
MIX_STREAM_TAG = 0x6D6978  # "mix": keeps the daily-mix draws apart from other users of the seed


class WorkloadDataError(RequestDataError):
    """A workload trace that cannot be read; the message names the file, line and column."""


class Workload(Protocol):
    """Arrival rate and class mix per hour since the episode start.

    :ivar start_hour_of_day: hour of day (0..23) at which hour index 0 begins
    """

    start_hour_of_day: int

    def rate_per_s(self, hour: ArrayLike) -> np.ndarray:
        """Arrival rate during hour(s) ``hour`` ((k,) or scalar int >= 0): same shape, requests/s."""
        ...

    def class_mix(self, hour: ArrayLike) -> np.ndarray:
        """Class probabilities during hour(s) ``hour``: shape ``hour.shape + (6,)``, rows sum to 1."""
        ...


def _hours(hour: ArrayLike) -> np.ndarray:
    h = np.asarray(hour)
    if not np.issubdtype(h.dtype, np.integer):
        if not np.all(h == np.floor(h)):
            raise ValueError("hour: whole hours since the episode start expected")
        h = h.astype(np.int64)
    if np.any(h < 0):
        raise ValueError("hour: must be >= 0 (hours since the episode start)")
    return h.astype(np.int64, copy=False)


def _daily_dirichlet(seed: int, day: int, alpha: np.ndarray) -> np.ndarray:
    """The class mix of one day: Dirichlet(alpha) from a generator keyed by (seed, tag, day)."""
    rng = np.random.default_rng([seed, MIX_STREAM_TAG, day])
    return rng.dirichlet(alpha)


def _daily_mixes(day: np.ndarray, seed: int, base_mix: np.ndarray, concentration: Callable[[int], float],
                 cache: dict[int, np.ndarray]) -> np.ndarray:
    """The class mix of each local day in ``day`` (any shape of int), ``day.shape + (6,)``: day ``d``'s
    is ``Dirichlet(concentration(d) * base_mix)`` (:func:`_daily_dirichlet`), drawn once and kept in
    ``cache`` (both workloads)."""
    days, inverse = np.unique(day, return_inverse=True)
    table = []
    for d in days.reshape(-1).tolist():
        if d not in cache:
            cache[d] = _daily_dirichlet(seed, d, concentration(d) * base_mix)
        table.append(cache[d])
    return np.stack(table)[inverse.reshape(day.shape)]


def _check_mix(mix: np.ndarray, name: str) -> np.ndarray:
    mix = np.asarray(mix, dtype=np.float64)
    if mix.shape != (N_CLASSES,) or np.any(mix < 0) or not math.isclose(mix.sum(), 1.0, abs_tol=1e-4):
        raise ValueError(f"{name}: must be ({N_CLASSES},) non-negative probabilities summing to 1")
    return mix / mix.sum()


@dataclass(frozen=True, eq=False)
class DiurnalWorkload:
    """The embedded default workload.

    ``rate_per_s(h) = base_rate_per_s * rate_shape[(start_hour_of_day + h) mod 24]``, and the class
    mix of local day ``d = (start_hour_of_day + h) // 24`` is ``Dirichlet(mix_concentration *
    base_mix)`` drawn from a generator keyed by ``(seed, d)``: the mix changes at local midnight,
    its mean is ``base_mix`` and its per-class standard deviation about
    ``sqrt(p (1 - p) / (mix_concentration + 1))``. The same seed gives the same days in any
    query order.

    :param base_rate_per_s: mean arrival rate over a day, requests/s
    :param start_hour_of_day: hour of day (0..23) at which the episode starts
    :param mix_concentration: Dirichlet concentration of the daily mix; None keeps ``base_mix``
        fixed
    :param seed: scenario seed of the daily mixes
    :param rate_shape: (24,) rate multiplier per hour of day, mean 1; None: the embedded PAI shape
    :param base_mix: (6,) mean class mix; None: the class frequencies of Sprout's judged data
    """

    base_rate_per_s: float
    start_hour_of_day: int = 0
    mix_concentration: float | None = 200.0
    seed: int = 0
    rate_shape: np.ndarray | None = None
    base_mix: np.ndarray | None = None
    _mix_cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.base_rate_per_s >= 0 and math.isfinite(self.base_rate_per_s)):
            raise ValueError(f"DiurnalWorkload.base_rate_per_s: must be finite and >= 0, got {self.base_rate_per_s}")
        if not 0 <= self.start_hour_of_day <= 23:
            raise ValueError(f"DiurnalWorkload.start_hour_of_day: must be in 0..23, got {self.start_hour_of_day}")
        if self.mix_concentration is not None and not self.mix_concentration > 0:
            raise ValueError(f"DiurnalWorkload.mix_concentration: must be > 0 or None, got {self.mix_concentration}")
        tables = RequestModelTables.embedded() if self.rate_shape is None or self.base_mix is None else None
        shape = np.asarray(tables.diurnal_rate_shape if self.rate_shape is None else self.rate_shape, dtype=np.float64)
        if shape.shape != (24,) or np.any(shape < 0) or not math.isclose(shape.mean(), 1.0, rel_tol=1e-3):
            raise ValueError("DiurnalWorkload.rate_shape: must be (24,) non-negative with mean 1")
        shape = shape / shape.mean()  # exact mean 1 (the JSON holds 6 significant digits)
        mix = _check_mix(tables.class_frequency if self.base_mix is None else self.base_mix, "DiurnalWorkload.base_mix")
        object.__setattr__(self, "rate_shape", shape)
        object.__setattr__(self, "base_mix", mix)

    def rate_per_s(self, hour: ArrayLike) -> np.ndarray:
        """Arrival rate during hour(s) ``hour`` since the episode start.

        :param hour: scalar or (k,) int >= 0
        :return: same shape float64, requests/s
        """
        h = _hours(hour)
        return self.base_rate_per_s * self.rate_shape[(self.start_hour_of_day + h) % 24]

    def class_mix(self, hour: ArrayLike) -> np.ndarray:
        """Class probabilities during hour(s) ``hour`` since the episode start.

        :param hour: scalar or (k,) int >= 0
        :return: ``hour.shape + (6,)`` float64, rows sum to 1
        """
        h = _hours(hour)
        day = (self.start_hour_of_day + h) // 24
        if self.mix_concentration is None:
            return np.broadcast_to(self.base_mix, day.shape + (N_CLASSES,)).copy()
        return _daily_mixes(day, self.seed, self.base_mix, lambda d: self.mix_concentration, self._mix_cache)


def read_pai_hourly_jobs(path: str | Path) -> np.ndarray:
    """Read the PAI hourly job counts (columns ``hour_index``, ``jobs``).

    ``hour_index`` must run 0, 1, 2, ... without gaps (one row per consecutive hour).

    :param path: the CSV file
    :return: (n_hours,) float64 job submissions per hour
    :raises WorkloadDataError: naming the file, line and column of a missing column, a bad number
        or a gap
    """
    path = Path(path)
    jobs: list[float] = []
    for row in read_csv_rows(path, ("hour_index", "jobs"), error=WorkloadDataError):
        hour = row.integer("hour_index")
        if hour != len(jobs):
            raise row.error("hour_index", f"expected {len(jobs)} (consecutive hours), got {hour}")
        jobs.append(row.number("jobs"))
    if not jobs:
        raise WorkloadDataError(f"{path}: line 2: no data rows after the header")
    array = np.array(jobs, dtype=np.float64)
    if array.sum() <= 0:
        raise WorkloadDataError(f"{path}: column 'jobs': every count is 0")
    return array


@dataclass(frozen=True, eq=False)
class PaiTraceWorkload:
    """Sprout's reproduction mode: load and class mix follow the Alibaba PAI hourly job trace.

    With ``J[k]`` the trace's jobs in trace hour ``k`` (n_hours of them) and ``k(h) = (start_hour +
    h) mod n_hours`` (the trace wraps around):

    * ``rate_per_s(h) = base_rate_per_s * J[k(h)] / mean(J)``, so the rate has mean
      ``base_rate_per_s`` over the trace;
    * aolo's reading of Sprout's "class mix changing about daily from the PAI trace": trace day
      ``d = k(h) // 24`` has the mix ``Dirichlet(alpha_d * base_mix)`` drawn from a generator keyed
      by ``(seed, d)``, with ``alpha_d = mix_concentration * V_d / mean(V)`` and ``V_d`` the mean
      hourly jobs of trace day ``d``. A busy day aggregates more independent jobs, so its mix
      stays closer to ``base_mix``; a quiet day wanders further. The mix changes at trace-hour
      multiples of 24, whatever ``start_hour``.

    The trace has no clock time; aolo takes trace hour 0 as 00:00, so ``start_hour_of_day =
    start_hour mod 24``.

    :param jobs_per_hour: (n_hours,) job submissions per trace hour
    :param base_rate_per_s: mean arrival rate, requests/s
    :param start_hour: trace hour at which the episode starts
    :param mix_concentration: Dirichlet concentration on a day of mean volume
    :param seed: scenario seed of the daily mixes
    :param base_mix: (6,) mean class mix; None: the class frequencies of Sprout's judged data
    :param source: where the trace came from (for messages)
    """

    jobs_per_hour: np.ndarray
    base_rate_per_s: float
    start_hour: int = 0
    mix_concentration: float = 200.0
    seed: int = 0
    base_mix: np.ndarray | None = None
    source: str = "<array>"
    day_concentration: np.ndarray | None = field(default=None, init=False, repr=False)
    """(n_days,) Dirichlet concentration alpha_d of each trace day (derived)."""
    _mix_cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        jobs = np.asarray(self.jobs_per_hour, dtype=np.float64)
        if jobs.ndim != 1 or jobs.size == 0 or np.any(jobs < 0) or jobs.sum() <= 0:
            raise ValueError(f"PaiTraceWorkload.jobs_per_hour ({self.source}): must be (n_hours,) >= 0, not all 0")
        if not (self.base_rate_per_s >= 0 and math.isfinite(self.base_rate_per_s)):
            raise ValueError(f"PaiTraceWorkload.base_rate_per_s: must be finite and >= 0, got {self.base_rate_per_s}")
        if not 0 <= self.start_hour < jobs.size:
            raise ValueError(f"PaiTraceWorkload.start_hour: must be in 0..{jobs.size - 1}, got {self.start_hour}")
        if not self.mix_concentration > 0:
            raise ValueError(f"PaiTraceWorkload.mix_concentration: must be > 0, got {self.mix_concentration}")
        base = RequestModelTables.embedded().class_frequency if self.base_mix is None else self.base_mix
        object.__setattr__(self, "jobs_per_hour", jobs)
        object.__setattr__(self, "base_mix", _check_mix(base, "PaiTraceWorkload.base_mix"))
        n_days = -(-jobs.size // 24)
        day_mean = np.array([jobs[24 * d : 24 * (d + 1)].mean() for d in range(n_days)])
        object.__setattr__(self, "day_concentration", self.mix_concentration * day_mean / day_mean.mean())

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        base_rate_per_s: float,
        start_hour: int = 0,
        *,
        mix_concentration: float = 200.0,
        seed: int = 0,
        base_mix: ArrayLike | None = None,
    ) -> PaiTraceWorkload:
        """Build from ``pai_hourly_jobs.csv`` (see :func:`read_pai_hourly_jobs`).

        :param path: the CSV file
        :param base_rate_per_s: mean arrival rate, requests/s
        :param start_hour: trace hour at which the episode starts
        :param mix_concentration: Dirichlet concentration on a day of mean volume
        :param seed: scenario seed of the daily mixes
        :param base_mix: (6,) mean class mix; None: the judged-data frequencies
        """
        return cls(
            jobs_per_hour=read_pai_hourly_jobs(path),
            base_rate_per_s=base_rate_per_s,
            start_hour=start_hour,
            mix_concentration=mix_concentration,
            seed=seed,
            base_mix=None if base_mix is None else np.asarray(base_mix, dtype=np.float64),
            source=str(path),
        )

    @property
    def n_hours(self) -> int:
        """Length of the trace, hours."""
        return int(self.jobs_per_hour.size)

    @property
    def start_hour_of_day(self) -> int:
        """Hour of day of the episode start (trace hour 0 taken as 00:00)."""
        return self.start_hour % 24

    def trace_hour(self, hour: ArrayLike) -> np.ndarray:
        """Trace hour of episode hour(s) ``hour`` (wrapping around the trace): same shape int64."""
        return (self.start_hour + _hours(hour)) % self.n_hours

    def rate_per_s(self, hour: ArrayLike) -> np.ndarray:
        """Arrival rate during hour(s) ``hour`` since the episode start.

        :param hour: scalar or (k,) int >= 0
        :return: same shape float64, requests/s
        """
        return self.base_rate_per_s * self.jobs_per_hour[self.trace_hour(hour)] / self.jobs_per_hour.mean()

    def class_mix(self, hour: ArrayLike) -> np.ndarray:
        """Class probabilities during hour(s) ``hour`` since the episode start.

        :param hour: scalar or (k,) int >= 0
        :return: ``hour.shape + (6,)`` float64, rows sum to 1
        """
        day = self.trace_hour(hour) // 24
        return _daily_mixes(day, self.seed, self.base_mix, lambda d: self.day_concentration[d], self._mix_cache)


# ---------------------------------------------------------------------------------------------
# Sampling helpers
# ---------------------------------------------------------------------------------------------


def sample_arrivals(
    rng: np.random.Generator, rate_per_s: ArrayLike, horizon_s: float, hour_s: float = HOUR_S
) -> np.ndarray:
    """Poisson arrival times under a piecewise-constant rate, one value per hour.

    Hour ``k`` covers ``[k hour_s, (k + 1) hour_s)``; its count is Poisson(rate_k x its length
    within the horizon) and its arrivals are uniform within it, which is exactly a
    non-homogeneous Poisson process with that rate.

    :param rng: the random generator
    :param rate_per_s: scalar (constant rate) or (n_hours,) requests/s, n_hours * hour_s >= horizon_s
    :param horizon_s: length of the window, s
    :param hour_s: length of one rate step, s (3600 unless testing)
    :return: (n,) float64 sorted arrival times in [0, horizon_s), s since the window start
    """
    if not (horizon_s >= 0 and math.isfinite(horizon_s)):
        raise ValueError(f"horizon_s: must be finite and >= 0, got {horizon_s}")
    n_steps = max(1, math.ceil(horizon_s / hour_s))
    rate = np.asarray(rate_per_s, dtype=np.float64)
    if rate.ndim == 0:
        rate = np.full(n_steps, float(rate))
    if rate.ndim != 1 or rate.size < n_steps:
        raise ValueError(f"rate_per_s: needs {n_steps} hourly values to cover {horizon_s} s, got shape {rate.shape}")
    rate = rate[:n_steps]
    if np.any(rate < 0) or not np.all(np.isfinite(rate)):
        raise ValueError("rate_per_s: must be finite and >= 0")
    start = np.arange(n_steps) * hour_s
    length = np.minimum(hour_s, horizon_s - start)
    counts = rng.poisson(rate * length)
    times = np.repeat(start, counts) + rng.random(int(counts.sum())) * np.repeat(length, counts)
    # uniform within each hour; hours are already in order, so a per-hour sort suffices, but one
    # global sort of float64 is as fast and simpler
    times.sort()
    return times


def sample_classes(rng: np.random.Generator, mix: ArrayLike, n: int | None = None) -> np.ndarray:
    """Task classes drawn from a class mix.

    :param rng: the random generator
    :param mix: (6,) probabilities (with ``n``), or (n, 6) one row per request
    :param n: number of draws when ``mix`` is (6,)
    :return: (n,) int64 in 0..5
    """
    p = np.asarray(mix, dtype=np.float64)
    if p.shape[-1:] != (N_CLASSES,) or p.ndim not in (1, 2):
        raise ValueError(f"mix: expected (6,) or (n, 6), got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError("mix: probabilities must be >= 0 and each row sum to 1")
    if p.ndim == 1:
        if n is None:
            raise ValueError("n: required when mix is (6,)")
        u = rng.random(n)
        cdf = np.cumsum(p)
        return np.minimum(np.searchsorted(cdf, u, side="right"), N_CLASSES - 1).astype(np.int64)
    if n is not None and n != p.shape[0]:
        raise ValueError(f"n: {n} does not match mix rows {p.shape[0]}")
    u = rng.random(p.shape[0])
    cdf = np.cumsum(p, axis=1)
    return np.minimum((u[:, None] >= cdf).sum(axis=1), N_CLASSES - 1).astype(np.int64)


def sample_arrival_stream(
    rng: np.random.Generator, workload: Workload, horizon_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times and task classes of one episode window under ``workload``.

    :param rng: the random generator
    :param workload: rate and mix per hour
    :param horizon_s: window length, s
    :return: arrival_s (n,) float64 sorted in [0, horizon_s); task_class (n,) int64
    """
    n_hours = max(1, math.ceil(horizon_s / HOUR_S))
    hours = np.arange(n_hours)
    arrival_s = sample_arrivals(rng, workload.rate_per_s(hours), horizon_s)
    mix = workload.class_mix(hours)  # (n_hours, 6)
    hour_of_arrival = np.minimum((arrival_s // HOUR_S).astype(np.int64), n_hours - 1)
    return arrival_s, sample_classes(rng, mix[hour_of_arrival])
