"""Measured energy per decision: an actor's decide calls run between two readings of energy
counters, with the idle draw measured just before subtracted.

For one batch size b, with counters c (``energy_counters``), an idle window of length t_idle
and R repeated windows of n decide calls each::

    P_idle,c   = (E_c(t_idle end) - E_c(t_idle start)) / t_idle                  W
    e_r        = sum_c [ dE_c,r - P_idle,c * t_r ] / (n * b)                      J per decision
    reported   : mean, standard deviation, min and max of e_1 .. e_R, and P_idle = sum_c P_idle,c

so e is the energy the decisions added above what the machine drew before they started (other
processes included, assumed steady over the few seconds). A window is long enough for the
counters to tick many times (``window_s``; NVML updates its counter every few tens of ms, RAPL
every ms); n is set once per batch size from a timed warm-up so every repeat runs the same calls.
A repeat can come out at or below zero when the decisions add less than the noise of the idle
draw: that is a measurement too, and it is reported, never replaced by zero or by an estimate.

The clock and the idle wait are parameters so that tests drive a fake powercap tree
deterministically; everything else is the code that measures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .energy_counters import EnergyCounter

__all__ = ["BatchEnergy", "IdleBaseline", "RepeatWindow", "idle_baseline", "measure_batch", "net_energy_j",
           "obs_batches", "time_batch"]


def net_energy_j(gross_j: float, seconds: float, idle_power_w: float) -> float:
    """Energy above the idle draw: ``gross_j - idle_power_w * seconds``, J."""
    return float(gross_j) - float(idle_power_w) * float(seconds)


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power of each counter over a window with no decisions.

    :param power_w: counter name -> W
    :param seconds: the window's length, s
    """

    power_w: dict[str, float]
    seconds: float

    @property
    def total_w(self) -> float:
        return float(sum(self.power_w.values()))


@dataclass(frozen=True)
class RepeatWindow:
    """One measured window: its length and each counter's gross energy over it.

    :param seconds: s
    :param energy_j: counter name -> J (idle included)
    """

    seconds: float
    energy_j: dict[str, float]


@dataclass(frozen=True)
class BatchEnergy:
    """Measured energy of decisions at one batch size.

    :param batch: observations per decide call
    :param calls: decide calls per window
    :param idle: the idle baseline measured just before the windows
    :param windows: one per repeat
    """

    batch: int
    calls: int
    idle: IdleBaseline
    windows: list[RepeatWindow] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        """Decisions per window."""
        return self.calls * self.batch

    def net_j_per_decision(self) -> list[float]:
        """Per repeat: energy above idle per decision, summed over counters, J."""
        return [sum(net_energy_j(w.energy_j[name], w.seconds, p) for name, p in self.idle.power_w.items())
                / self.decisions for w in self.windows]

    def by_counter_j(self) -> dict[str, float]:
        """Per counter: mean energy above idle per decision over the repeats, J."""
        return {name: float(np.mean([net_energy_j(w.energy_j[name], w.seconds, p) / self.decisions
                                     for w in self.windows])) for name, p in self.idle.power_w.items()}

    @property
    def mean_j(self) -> float:
        return float(np.mean(self.net_j_per_decision()))

    @property
    def std_j(self) -> float:
        """Sample standard deviation over the repeats (0 for one repeat), J."""
        e = self.net_j_per_decision()
        return float(np.std(e, ddof=1)) if len(e) > 1 else 0.0

    @property
    def min_j(self) -> float:
        return float(min(self.net_j_per_decision()))

    @property
    def max_j(self) -> float:
        return float(max(self.net_j_per_decision()))

    @property
    def latency_s_per_decision(self) -> float:
        """Mean wall time per decision over the windows, s (a batch shares its call's time)."""
        return float(np.mean([w.seconds for w in self.windows])) / self.decisions


Clock = Callable[[], float]
Sleep = Callable[[float], None]


def _read(counters: Sequence[EnergyCounter]) -> dict[str, float]:
    return {c.name: c.read_j() for c in counters}


def idle_baseline(counters: Sequence[EnergyCounter], seconds: float, clock: Clock = time.perf_counter,
                  sleep: Sleep = time.sleep) -> IdleBaseline:
    """Each counter's mean power over ``seconds`` of doing nothing, W.

    :raises ValueError: no counter, or a window that took no time
    """
    if not counters:
        raise ValueError("idle_baseline: no energy counter to read")
    e0, t0 = _read(counters), clock()
    sleep(seconds)
    e1, t1 = _read(counters), clock()
    dt = t1 - t0
    if not dt > 0:
        raise ValueError(f"idle_baseline: the idle window took {dt} s")
    return IdleBaseline(power_w={k: (e1[k] - e0[k]) / dt for k in e0}, seconds=dt)


def obs_batches(obs: np.ndarray, batch: int, n: int = 8) -> list[np.ndarray]:
    """``n`` batches of ``batch`` observations cycled from ``obs`` (n, obs_dim) float32, so calls
    see varied inputs without copying inside the timed loop."""
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    idx = np.arange(n * batch) % len(obs)
    return [np.ascontiguousarray(obs[idx[i * batch:(i + 1) * batch]]) for i in range(n)]


def _calls_for(decide: Callable[[np.ndarray], object], batches: list[np.ndarray], window_s: float,
               clock: Clock) -> int:
    """Decide calls that fill ``window_s``, from a timed warm-up (at least 3 calls and a tenth of the window)."""
    for b in batches[:3]:
        decide(b)
    n, t0 = 0, clock()
    while True:
        decide(batches[n % len(batches)])
        n += 1
        elapsed = clock() - t0
        if n >= 3 and elapsed >= 0.1 * window_s:
            break
    return max(1, math.ceil(window_s / (elapsed / n)))


def measure_batch(decide: Callable[[np.ndarray], object], obs: np.ndarray, batch: int,
                  counters: Sequence[EnergyCounter], repeats: int = 5, window_s: float = 1.0, idle_s: float = 1.0,
                  clock: Clock = time.perf_counter, sleep: Sleep = time.sleep) -> BatchEnergy:
    """Measure decisions of ``batch`` observations: warm up, measure the idle baseline, then
    ``repeats`` windows of the same number of calls.

    :param decide: the actor, (batch, obs_dim) float32 -> actions
    :param obs: (n, obs_dim) float32 observations, cycled into batches
    :param counters: what to read (at least one)
    :param window_s: target length of each window, s
    :param idle_s: length of the idle window, s
    :raises ValueError: no counter, a non-positive batch or repeat count
    """
    if batch < 1 or repeats < 1:
        raise ValueError(f"measure_batch: batch ({batch}) and repeats ({repeats}) must be at least 1")
    if not counters:
        raise ValueError("measure_batch: no energy counter to read")
    batches = obs_batches(obs, batch)
    calls = _calls_for(decide, batches, window_s, clock)
    idle = idle_baseline(counters, idle_s, clock, sleep)
    windows = []
    for _ in range(repeats):
        e0, t0 = _read(counters), clock()
        for i in range(calls):
            decide(batches[i % len(batches)])
        e1, t1 = _read(counters), clock()
        windows.append(RepeatWindow(seconds=t1 - t0, energy_j={k: e1[k] - e0[k] for k in e0}))
    return BatchEnergy(batch=batch, calls=calls, idle=idle, windows=windows)


def time_batch(decide: Callable[[np.ndarray], object], obs: np.ndarray, batch: int, window_s: float = 0.5,
               clock: Clock = time.perf_counter) -> float:
    """Wall time per decision at ``batch`` observations per call, s: the calls of a warm-up-sized
    window, then one timed window of them (where no counter is read, the latency the estimate uses)."""
    batches = obs_batches(obs, batch)
    calls = _calls_for(decide, batches, window_s, clock)
    t0 = clock()
    for i in range(calls):
        decide(batches[i % len(batches)])
    return (clock() - t0) / (calls * batch)
