"""Measured LLM energy per request: the GPU energy over each request's window, shared among the
requests in flight by the tokens each generated.

The gateway calls :meth:`TokenShareMeter.start` when it forwards a request, :meth:`~TokenShareMeter.tokens`
for each streamed content chunk, and :meth:`~TokenShareMeter.finish` with the answer's output
tokens when the answer is complete (or :meth:`~TokenShareMeter.cancel` when it fails). Every start
and finish reads the counters (the upstream's GPUs, :mod:`.energy_counters`), which cuts time into
segments k with energy dE_k and length dt_k, during which the set of requests in flight is
constant. A finishing request i is charged::

    E_i = sum over the segments k of its window of  dE_k * n_i,k / sum_j n_j,k

where n_j,k is the number of tokens request j generated in segment k:

* a streamed request: its counted chunks in the segment, scaled to its output tokens when it has
  finished (chunks are the time profile, ``usage`` the count);
* a plain (non-streamed) request that has finished: its output tokens spread evenly over its window;
* a plain request still running, whose tokens the gateway has not seen yet: at the rate of the
  finishing request (output tokens over window). This is the continuous-batching assumption of
  llama.cpp, vLLM and TGI: every sequence in the running batch gains one token per decode step.

With one request in flight E_i is the whole energy of its window. When every request's tokens
are known the shares of each segment sum to one, so the energy of the segments is shared out
exactly; the third rule makes the split an approximation while plain answers overlap. The GPU's
whole draw is shared, its idle power included: keeping the GPU on is what serving costs (the
server profiles' per-token energies, docs/model.md section 1, are Sprout's NVML whole-GPU figures too). Time
with no request in flight is charged to none. A segment's energy is only as fine as the counter's
updates (NVML: a few tens of ms), so answers of a few ms see zero or a whole tick.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .energy_counters import EnergyCounter

__all__ = ["LLMEnergy", "TokenShareMeter"]


@dataclass(frozen=True)
class LLMEnergy:
    """One request's measured LLM energy.

    :param energy_j: its share, J
    :param window_s: its window, s
    :param window_energy_j: the GPUs' whole energy over its window, J
    :param max_concurrent: most requests in flight in one segment of its window (itself included)
    """

    energy_j: float
    window_s: float
    window_energy_j: float
    max_concurrent: int
    kind: str = "measured"


@dataclass
class _Request:
    start: int  # absolute index of the mark at its start
    end: Optional[int] = None  # absolute index of the mark at its finish
    output_tokens: Optional[int] = None
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens) of streamed chunks


class TokenShareMeter:
    """See the module docstring.

    :param counters: the GPU counters of the upstream (their readings are summed)
    :param clock: monotonic seconds (a parameter for tests)
    """

    def __init__(self, counters: Sequence[EnergyCounter], clock: Callable[[], float] = time.monotonic) -> None:
        if not counters:
            raise ValueError("TokenShareMeter: no energy counter")
        self.counters = list(counters)
        self._clock = clock
        self._lock = threading.Lock()
        self._marks: list[tuple[float, float]] = []  # (t s, E J), absolute index = position + self._base
        self._base = 0
        self._open: dict[str, _Request] = {}
        self._closed: list[_Request] = []

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.counters)

    def _mark(self) -> int:
        e = sum(c.read_j() for c in self.counters)
        self._marks.append((self._clock(), e))
        return self._base + len(self._marks) - 1

    def _at(self, index: int) -> tuple[float, float]:
        return self._marks[index - self._base]

    def start(self, key: str) -> None:
        """A request was forwarded.

        :raises ValueError: ``key`` is already in flight
        """
        with self._lock:
            if key in self._open:
                raise ValueError(f"request {key!r} is already being measured")
            self._open[key] = _Request(start=self._mark())

    def tokens(self, key: str, n: int = 1) -> None:
        """``n`` tokens of ``key`` arrived now (a streamed chunk); unknown keys are ignored."""
        with self._lock:
            req = self._open.get(key)
            if req is not None:
                req.chunks.append((self._clock(), int(n)))

    def cancel(self, key: str) -> None:
        """Stop measuring ``key`` without charging it (a failed answer); its energy stays with
        the others in flight."""
        with self._lock:
            if self._open.pop(key, None) is not None:
                self._prune()

    def finish(self, key: str, output_tokens: int) -> LLMEnergy:
        """``key``'s answer is complete with ``output_tokens``: its share of the GPU energy.

        :raises KeyError: ``key`` was never started, or already finished or cancelled
        """
        with self._lock:
            req = self._open.pop(key)
            req.end, req.output_tokens = self._mark(), max(0, int(output_tokens))
            t_start, e_start = self._at(req.start)
            t_end, e_end = self._at(req.end)
            window_s = t_end - t_start
            rate = req.output_tokens / window_s if window_s > 0 else 0.0
            others = [r for r in self._closed + list(self._open.values())]
            energy, most = 0.0, 1
            for k in range(req.start, req.end):
                (t0, e0), (t1, e1) = self._at(k), self._at(k + 1)
                mine = self._tokens_in(req, t0, t1, rate)
                present = [r for r in others if r.start <= k and (r.end is None or r.end >= k + 1)]
                theirs = [self._tokens_in(r, t0, t1, rate) for r in present]
                total = mine + sum(theirs)
                share = mine / total if total > 0 else 1.0 / (1 + len(present))
                energy += (e1 - e0) * share
                most = max(most, 1 + len(present))
            self._closed.append(req)
            self._prune()
            return LLMEnergy(energy_j=max(0.0, energy), window_s=window_s, window_energy_j=e_end - e_start,
                             max_concurrent=most)

    def _tokens_in(self, r: _Request, t0: float, t1: float, rate: float) -> float:
        """Tokens ``r`` generated in (t0, t1] by the rules of the module docstring."""
        if r.chunks:
            n = sum(c for t, c in r.chunks if t0 < t <= t1)
            if r.output_tokens is not None:
                seen = sum(c for _, c in r.chunks)
                return r.output_tokens * n / seen if seen else 0.0
            return float(n)
        if r.output_tokens is not None:  # finished, plain: spread evenly over its window
            (ts, _), (te, _) = self._at(r.start), self._at(r.end)  # type: ignore[arg-type]
            overlap = max(0.0, min(t1, te) - max(t0, ts))
            return r.output_tokens * overlap / (te - ts) if te > ts else 0.0
        return rate * (t1 - t0)  # running, plain: the finishing request's rate

    def _prune(self) -> None:
        """Forget marks and finished requests that no request in flight can reach."""
        if not self._open:
            self._base += len(self._marks)
            self._marks.clear()
            self._closed.clear()
            return
        first_open = min(r.start for r in self._open.values())
        self._closed = [r for r in self._closed if r.end is not None and r.end > first_open]
        first = min([first_open] + [r.start for r in self._closed])  # a kept request needs its own start
        drop = first - self._base
        if drop > 0:
            del self._marks[:drop]
            self._base = first

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._open)


LLM_ENERGY_MODES = ("auto", "measure", "model")


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_llm_meter(upstream_url: Optional[str], mode: str) -> tuple[Optional[TokenShareMeter], str]:
    """The gateway's LLM energy meter, and one line saying how LLM energy is accounted.

    :param upstream_url: the upstream's base URL (None: no upstream)
    :param mode: ``model`` (the server profile, always), ``measure`` (the GPUs of this machine
        through NVML; an error when none is readable), ``auto`` (measure the GPUs that some
        process computes on when the gateway starts, if the upstream is on this machine's loopback
        and a GPU counter is readable; else model)
    :return: (meter or None, e.g. "measured: nvml:gpu0 (NVIDIA H100)" or "modelled: ...")
    :raises ValueError: ``measure`` without a readable GPU counter, naming why; an unknown mode
    """
    from .energy_counters import gpu_counters

    if mode not in LLM_ENERGY_MODES:
        raise ValueError(f"{mode!r} is not one of {', '.join(LLM_ENERGY_MODES)}")
    if mode == "model":
        return None, "modelled: the server profile's per-token figures (--llm-energy model)"
    if upstream_url is None:
        return None, "modelled: no upstream"
    if mode == "auto" and not _is_loopback(upstream_url):
        return None, ("modelled: the upstream is not on this machine's loopback, so its GPUs cannot be read here "
                      "(--llm-energy measure reads this machine's GPUs anyway)")
    found = gpu_counters()
    if not found.counters:
        why = "; ".join(found.reasons) or "no GPU counter"
        if mode == "measure":
            raise ValueError(f"measure: no GPU energy counter readable ({why})")
        return None, f"modelled: no GPU energy counter readable ({why})"
    counters = found.counters
    if mode == "auto":  # only GPUs something computes on: an LLM server on this machine's CPU is not measured
        busy = [c for c in counters if _computing(c)]
        if not busy:
            return None, ("modelled: no process computes on this machine's GPUs at start, so the upstream is taken "
                          "to run elsewhere (--llm-energy measure measures them anyway)")
        counters = busy
    meter = TokenShareMeter(counters)
    return meter, "measured: " + ", ".join(f"{c.name} ({c.where})" for c in counters)


def _computing(counter: EnergyCounter) -> bool:
    """Whether a process computes on the counter's GPU (NVML's running compute processes); True
    where that cannot be asked (AMD, a driver without the call), so auto measures rather than guesses."""
    gpus, index = getattr(counter, "gpus", None), getattr(counter, "index", None)
    try:
        import pynvml

        handle = gpus.gpus[index].handle  # type: ignore[union-attr, index]
        return len(pynvml.nvmlDeviceGetComputeRunningProcesses(handle)) > 0
    except Exception:  # noqa: BLE001 - not NVIDIA, or NVML without the call
        return True
