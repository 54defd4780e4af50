"""The base station's decide/record cycle: telemetry -> observation -> backend -> decision ->
outcome -> carbon -> ledger row.

``decide`` turns request telemetry into the policy's observation exactly as the training env does
(:func:`aolo.runtime.policy_io.build_observation`), runs the backend on the whole batch at once
and maps actions to a directive level and a transmit power (:func:`action_to_decision`, with the
bundle's power range). If the backend raises, or returns anything but finite (n, 2) actions, the
configured safe policy answers instead and the failure is counted and logged. ``record`` prices
the served request with the one carbon model (:func:`aolo.runtime.carbon.request_carbon`) and
commits it to the ledger before returning.

What the service fills in when telemetry leaves it out:

* ``ci_g_per_kwh``: the grid trace at the request's UTC hour. Outside the trace the hour wraps
  modulo the trace length (a whole number of days keeps the hour of day), so a year-long
  embedded profile serves any date.
* ``ci_norm``: ``(ci - lo) / (hi - lo)`` with lo, hi the min and max of the trace over the
  trailing week (``grid.trailing_minmax``) and the request's own ``ci`` (= ``grid.trailing_minmax_norm``
  when ``ci`` is the trace's value), 0.5 when hi == lo.
* ``quality_slack``: :func:`aolo.runtime.policy_io.quality_slack` of the means of quality and
  quality_base over the last ``quality_window`` recorded outcomes; an empty window counts as
  quality 1 and base 1 (the simulator's rule). An outcome that reports no quality counts at its
  class and level's expected quality (:mod:`aolo.runtime.sprout_tables`) until feedback replaces it.

Decisions waiting for their outcome live in memory and in the ledger's ``pending`` table, with an
expiry (``pending_ttl_s``): a restarted service loads them back, so their outcomes are still
accepted. Beyond ``max_pending`` live decisions a decide is refused (:class:`PendingFullError`,
HTTP 429) rather than evicting one.

Every numeric input has an upper bound (:data:`INPUT_BOUNDS`), so no accepted value can make a
carbon figure or a ledger sum overflow: the largest accepted request costs below 1e6 g, and a
float64 sum of such rows cannot overflow before 1e300 of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, Optional, Sequence

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from aolo.hw_profiles import LLMServerProfile, RadioProfile

from .limits import INPUT_BOUNDS, TIMESTAMP_RANGE_UTC
from .backends import PolicyBackend
from .bundle import ObservationSpec, PolicyBundle
from .carbon import CarbonParams, request_carbon
from .grid import HOUR, GridTrace, minmax_scale, trailing_minmax
from .ledger import DuplicateRequestError, Ledger, LedgerRow, LedgerWrite, PendingRecord, format_utc
from .policy_io import LEVELS, TASK_CLASSES, action_to_decision, build_observation, quality_slack
from .sprout_tables import expected_quality_table
from .radio import LinkParams, transmit

__all__ = [
    "Decision",
    "INPUT_BOUNDS",
    "Outcome",
    "PendingFullError",
    "PolicyService",
    "Served",
    "SafePolicy",
    "ServiceError",
    "Telemetry",
    "UnknownRequestError",
]

log = logging.getLogger("aolo.runtime.service")

def _bounded(name: str, kind: type = float, gt: bool = False) -> object:
    """A strict number of ``kind`` within :data:`aolo.runtime.limits.INPUT_BOUNDS` ``[name]``."""
    lo, hi = INPUT_BOUNDS[name]
    low = {"gt": lo} if gt else {"ge": lo}
    return Annotated[kind, Field(strict=True, le=hi, **low)]


_Frac = Annotated[float, Field(strict=True, ge=0, le=1)]


def _check_timestamp(t: datetime) -> datetime:
    lo, hi = TIMESTAMP_RANGE_UTC
    if not lo <= t < hi:
        raise ValueError(f"must be in [{lo:%Y-%m-%d}, {hi:%Y-%m-%d}) UTC")
    return t


class ServiceError(ValueError):
    """A request the service refuses; ``field`` names the offending field.

    :param message: what is wrong
    :param field: the field, e.g. "request_id"
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownRequestError(ServiceError):
    """An outcome whose ``request_id`` was never decided (or was already recorded)."""


class PendingFullError(ServiceError):
    """A decide refused because ``max_pending`` decisions are already waiting for their outcome."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Telemetry(_Input):
    """What the BS knows about one request when it asks for a decision.

    :param request_id: client id, unique per request (1-128 characters)
    :param timestamp_utc: when the request is served, ISO-8601 with a UTC offset, 1970-2099
    :param task_class: one of ``policy_io.TASK_CLASSES``
    :param prompt_tokens: prompt length, tokens (1 to 1,000,000)
    :param deadline_s: latency budget, s (> 0, at most 86,400)
    :param gain_db: large-scale downlink gain to the user, dB (-250 to 0, typically -150..-60)
    :param active_sessions: sessions active at the BS (0 to 1,000,000)
    :param ci_g_per_kwh: grid intensity now, gCO2e/kWh (0 to 5,000); default the service's trace
    :param ci_norm: intensity normalised to [0, 1]; default trailing-normalised from the trace
    :param quality_slack: rolling quality minus the floor, [-1, 1]; default from the service's window

    Bounds: :data:`aolo.runtime.limits.INPUT_BOUNDS`.
    """

    request_id: str = Field(min_length=1, max_length=128)
    timestamp_utc: AwareDatetime
    task_class: Literal[TASK_CLASSES]  # type: ignore[valid-type]
    prompt_tokens: _bounded("prompt_tokens", int)  # type: ignore[valid-type]
    deadline_s: _bounded("deadline_s", gt=True)  # type: ignore[valid-type]
    gain_db: _bounded("gain_db")  # type: ignore[valid-type]
    active_sessions: _bounded("active_sessions", int)  # type: ignore[valid-type]
    ci_g_per_kwh: Optional[_bounded("ci_g_per_kwh")] = None  # type: ignore[valid-type]
    ci_norm: Optional[_Frac] = None
    quality_slack: Optional[Annotated[float, Field(strict=True, ge=-1, le=1)]] = None

    _timestamp_in_range = field_validator("timestamp_utc")(_check_timestamp)


class Outcome(_Input):
    """What happened to a decided request.

    :param request_id: the id given to ``decide``
    :param output_tokens: answer length, tokens
    :param inference_energy_j: GPU energy of the answer, J; default from the server profile
        (``e_pre * prompt_tokens + e_tok * output_tokens``)
    :param inference_energy_kind: what a reported ``inference_energy_j`` is: ``measured`` (a
        counter of the serving stack read it; the default) or ``modelled`` (a simulator's figure,
        as aolo's replay of a synthetic day reports); the ledger row's ``inference_kind`` says it
    :param inference_latency_s: generation time, s; default from the server profile likewise
    :param airtime_s: downlink airtime over all HARQ tries, s
    :param harq_tries: tries used
    :param outage: all tries failed
    :param tx_power_w: power actually used, W; default the decided power
    :param quality: answer quality in [0, 1]; with ``quality_base`` it feeds the slack window
        (both absent: the class and level's expected quality counts until feedback)
    :param quality_base: quality the L0 answer would have had, [0, 1]

    Bounds: :data:`aolo.runtime.limits.INPUT_BOUNDS`.
    """

    request_id: str = Field(min_length=1, max_length=128)
    output_tokens: _bounded("output_tokens", int)  # type: ignore[valid-type]
    inference_energy_j: Optional[_bounded("inference_energy_j")] = None  # type: ignore[valid-type]
    inference_latency_s: Optional[_bounded("inference_latency_s")] = None  # type: ignore[valid-type]
    inference_energy_kind: Literal["measured", "modelled"] = "measured"
    airtime_s: _bounded("airtime_s")  # type: ignore[valid-type]
    harq_tries: _bounded("harq_tries", int)  # type: ignore[valid-type]
    outage: Annotated[bool, Field(strict=True)]
    tx_power_w: Optional[_bounded("tx_power_w", gt=True)] = None  # type: ignore[valid-type]
    quality: Optional[_Frac] = None
    quality_base: Optional[_Frac] = None

    @model_validator(mode="after")
    def _quality_pair(self) -> "Outcome":
        if (self.quality is None) != (self.quality_base is None):
            missing = "quality_base" if self.quality_base is None else "quality"
            raise ValueError(f"field '{missing}': quality and quality_base come together")
        return self


class Decision(BaseModel):
    """The policy's answer for one request.

    :param level: directive level name ("L0", "L1", "L2"); ``level_index`` its index
    :param max_new_tokens: optional generation cap (None: the level's own)
    :param tx_power_w: downlink transmit power, W
    :param actor_energy_j: the decision's energy on the actor hardware, J (0 if unknown)
    :param backend: backend name; ``precision`` its precision
    :param fallback: True when the safe policy answered because the backend failed
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    level: Literal[LEVELS]  # type: ignore[valid-type]
    level_index: int
    max_new_tokens: Optional[int] = None
    tx_power_w: float
    actor_energy_j: float
    backend: str
    precision: str
    fallback: bool


@dataclass(frozen=True)
class SafePolicy:
    """What to answer when the backend fails: a fixed level and power.

    :param level_index: directive level, default 0 (L0: the full answer, no quality risk)
    :param tx_power_w: power, W; None = the radio's P_max (the most robust link)
    """

    level_index: int = 0
    tx_power_w: Optional[float] = None


class _Pending(BaseModel):
    """A decided request waiting for its outcome (kept in the ledger's pending table as JSON)."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    telemetry: Telemetry
    ci_g_per_kwh: float
    ci_norm: float
    decided_utc: str
    expires_utc: str


@dataclass(frozen=True)
class Served:
    """A request the gateway decided and forwards itself (no pending decision: the outcome comes
    from the same HTTP exchange).

    :param decision: the policy's decision
    :param telemetry: what it was decided on
    :param ci_g_per_kwh: grid intensity used, gCO2e/kWh; ``ci_norm`` its normalised value
    :param decided_utc: when, ledger UTC text
    """

    decision: Decision
    telemetry: Telemetry
    ci_g_per_kwh: float
    ci_norm: float
    decided_utc: str


class PolicyService:
    """Decide and record LLM requests at one BS.

    :param bundle: the verified policy bundle
    :param backend: a backend loaded from it (see :func:`aolo.runtime.backends.make_backend`)
    :param ledger: where recorded requests go
    :param server: LLM server profile (default inference energy and latency; embodied carbon, PUE)
    :param radio: radio profile (power range, EARTH constants, BS embodied carbon)
    :param grid: carbon-intensity trace for telemetry that carries no intensity
    :param safe_policy: the fallback answer; default L0 at P_max
    :param quality_tolerance_xi: xi of the quality floor (the scenario's, 0.1)
    :param quality_window: outcomes in the rolling quality window (the scenario's, 200)
    :param max_pending: most decisions waiting for their outcome; a decide beyond it is refused
        (:class:`PendingFullError`) rather than evicting a live one
    :param pending_ttl_s: how long a decision waits for its outcome before it expires, s
    :param include_radio: False drops the radio terms from carbon (computation-only accounting)
    :param bundle_signer: key id of the trusted key whose signature of the bundle was verified
        (:func:`aolo.runtime.signing.verify_signer`), recorded on every ledger row; None if unchecked
    """

    def __init__(
        self,
        bundle: PolicyBundle,
        backend: PolicyBackend,
        ledger: Ledger,
        server: LLMServerProfile,
        radio: RadioProfile,
        grid: GridTrace,
        safe_policy: SafePolicy | None = None,
        quality_tolerance_xi: float = 0.1,
        quality_window: int = 200,
        max_pending: int = 100_000,
        pending_ttl_s: float = 3600.0,
        include_radio: bool = True,
        bundle_signer: Optional[str] = None,
    ) -> None:
        if bundle.manifest.observation.fields != ObservationSpec.default().fields:
            names = [f.name for f in bundle.manifest.observation.fields]
            raise ServiceError(f"{bundle.path}: manifest field 'observation.fields' ({names}) is not this runtime's "
                               "observation contract (policy_io.OBSERVATION)", "observation.fields")
        self.bundle, self.backend, self.ledger = bundle, backend, ledger
        self.bundle_signer = bundle_signer
        self.server, self.radio, self.grid = server, radio, grid
        self.params = CarbonParams.from_profiles(server, radio, include_radio=include_radio)
        self.p_min_w, self.p_max_w = radio.si("p_min"), radio.si("p_max")
        action = bundle.manifest.action
        self.action_p_min_w, self.action_p_max_w = action.p_min_w, action.p_max_w
        if (action.radio.name, action.p_min_w, action.p_max_w) != (radio.name, self.p_min_w, self.p_max_w):
            log.warning("bundle was trained for radio %s [%g, %g] W, serving on %s [%g, %g] W: powers are clipped",
                        action.radio.name, action.p_min_w, action.p_max_w, radio.name, self.p_min_w, self.p_max_w)
        self.safe_policy = safe_policy or SafePolicy()
        if not 0 <= self.safe_policy.level_index < len(LEVELS):
            raise ServiceError(f"safe policy: level_index {self.safe_policy.level_index} is not a level",
                               "safe_policy.level_index")
        self.safe_power_w = self.p_max_w if self.safe_policy.tx_power_w is None else float(self.safe_policy.tx_power_w)
        if not self.p_min_w <= self.safe_power_w <= self.p_max_w:
            raise ServiceError(f"safe policy: {self.safe_power_w} W is outside [{self.p_min_w}, {self.p_max_w}] W",
                               "safe_policy.tx_power_w")
        self.xi = float(quality_tolerance_xi)
        self.link = LinkParams.from_profile(radio)
        self.expected_quality = expected_quality_table()
        # request_id -> (quality, quality_base), newest last; keyed so that feedback can replace a value
        self._quality: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._quality_window = int(quality_window)
        # request_id -> (expires_utc, the _Pending's JSON), in expiry order. Kept as text, not as
        # models: strings and tuples of strings are outside Python's cyclic GC, so tens of thousands
        # of waiting decisions add nothing to a collection (as models, ~9 tracked objects each made
        # full collections the gateway's p99 under load: 64-86 ms against 8-14 ms with GC off,
        # wrk at 8 connections). An outcome parses its entry once (~20 us).
        self._pending: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._max_pending = int(max_pending)
        if not pending_ttl_s > 0:
            raise ServiceError(f"pending_ttl_s: must be > 0, got {pending_ttl_s}", "pending_ttl_s")
        self.pending_ttl = timedelta(seconds=float(pending_ttl_s))
        self._lock = threading.Lock()  # pending map, quality window, counters
        self._backend_lock = None if backend.thread_safe else threading.Lock()
        self._ci_lo, self._ci_hi = trailing_minmax(grid.ci_g_per_kwh)  # per hour, for ci_norm
        self.fallback_count = 0  # backend calls that failed, wholly or for some rows
        self.refused_pending_count = 0
        self._last_prune = time.monotonic()
        for rec in ledger.load_pending(datetime.now(timezone.utc)):
            p = _Pending.model_validate_json(rec.decision)  # a damaged row is refused here, naming itself
            self._pending[p.decision.request_id] = (p.expires_utc, rec.decision)
        if self._pending:
            log.info("%d decisions waiting for their outcome loaded from %s", len(self._pending), ledger.path)

    # --- decide -------------------------------------------------------------------------------
    def _hour_index(self, t: datetime) -> int:
        h = int((t - self.grid.start_utc) // HOUR)
        return h % self.grid.n_hours

    def _intensity(self, tel: Telemetry) -> tuple[float, float, float]:
        """(ci_g_per_kwh, ci_norm, hour_of_day_utc) of one request; the hour is whole, as in training."""
        h = self._hour_index(tel.timestamp_utc)
        ci = float(self.grid.ci_g_per_kwh[h]) if tel.ci_g_per_kwh is None else tel.ci_g_per_kwh
        if tel.ci_norm is not None:
            norm = tel.ci_norm
        else:
            norm = float(minmax_scale(ci, min(self._ci_lo[h], ci), max(self._ci_hi[h], ci)))
        return ci, norm, float(tel.timestamp_utc.astimezone(timezone.utc).hour)

    def rolling_quality(self) -> tuple[float, float]:
        """Means of quality and quality_base over the window; (1, 1) while it is empty."""
        with self._lock:
            n = len(self._quality)
            if n == 0:
                return 1.0, 1.0
            values = self._quality.values()
            return sum(x for x, _ in values) / n, sum(y for _, y in values) / n

    def quality_slack(self, ci_norm: float, rolling: tuple[float, float] | None = None) -> float:
        """Slack at intensity ``ci_norm``, [-1, 1] (see the module docstring).

        :param rolling: (quality, quality_base) means; default :meth:`rolling_quality`
        """
        q, q0 = self.rolling_quality() if rolling is None else rolling
        return float(quality_slack(q, q0, ci_norm, self.xi))

    def observe(self, batch: Sequence[Telemetry]) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Observations of a batch and the (ci_g_per_kwh, ci_norm) each used.

        :return: obs (n, obs_dim) float32; per request (ci_g_per_kwh, ci_norm)
        """
        inputs: dict[str, list[float]] = {k: [] for k in ("ci_norm", "ci_g_per_kwh", "hour_of_day_utc", "quality_slack")}
        rolling = self.rolling_quality()  # one snapshot per batch
        for tel in batch:
            ci, norm, hour = self._intensity(tel)
            slack = self.quality_slack(norm, rolling) if tel.quality_slack is None else tel.quality_slack
            for k, v in zip(inputs, (norm, ci, hour, slack)):
                inputs[k].append(v)
        obs = build_observation(
            **{k: np.array(v) for k, v in inputs.items()},
            task_class=np.array([TASK_CLASSES.index(t.task_class) for t in batch]),
            prompt_tokens=np.array([t.prompt_tokens for t in batch], dtype=np.float64),
            deadline_s=np.array([t.deadline_s for t in batch]),
            gain_db=np.array([t.gain_db for t in batch]),
            active_sessions=np.array([t.active_sessions for t in batch], dtype=np.float64),
        )
        return obs, list(zip(inputs["ci_g_per_kwh"], inputs["ci_norm"]))

    def _run_backend(self, obs: np.ndarray) -> np.ndarray:
        """The backend's actions, (n, 2); rows that are not finite are the caller's to replace.

        :raises ValueError: a result of the wrong shape
        """
        if self._backend_lock is None:
            action = self.backend.decide(obs)
        else:
            with self._backend_lock:
                action = self.backend.decide(obs)
        action = np.asarray(action)
        if action.shape != (obs.shape[0], 2):
            raise ValueError(f"backend {self.backend.name!r} returned {action.dtype} {action.shape}, "
                             f"expected finite ({obs.shape[0]}, 2)")
        return action

    def _decisions(self, batch: list[Telemetry]) -> tuple[list[Decision], list[tuple[float, float]], str]:
        """Run the policy on a batch: decisions, (ci, ci_norm) used, and the decision time.

        A backend that raises makes the safe policy answer the whole batch; a backend whose
        action is not finite for some rows (an overflow on extreme inputs) makes it answer those
        rows only, so requests decided together never fall back for one another.
        """
        ids = [t.request_id for t in batch]
        if len(set(ids)) != len(ids):
            raise ServiceError("request_id: repeated within the batch", "request_id")
        obs, used = self.observe(batch)
        n = len(batch)
        energy_j = float(self.backend.energy_per_decision_j or 0.0)
        try:
            action = self._run_backend(obs)
            bad = ~np.all(np.isfinite(action), axis=1)
            level, power = action_to_decision(np.where(bad[:, None], 0.0, action), self.action_p_min_w,
                                              self.action_p_max_w)
            power = np.clip(power, self.p_min_w, self.p_max_w)
        except Exception:
            log.exception("backend %r failed on a batch of %d; the safe policy answers", self.backend.name, n)
            bad = np.ones(n, dtype=bool)
            level, power = np.zeros(n, dtype=np.int64), np.zeros(n)
        if bad.any():
            if not bad.all():
                log.error("backend %r returned non-finite actions for %d of %d requests; the safe policy answers "
                          "those", self.backend.name, int(bad.sum()), n)
            level = np.where(bad, self.safe_policy.level_index, level)
            power = np.where(bad, self.safe_power_w, power)
            with self._lock:
                self.fallback_count += 1
        decisions = [
            # the safe policy is a constant: no actor decision happened, no actor energy
            Decision(request_id=t.request_id, level=LEVELS[int(lv)], level_index=int(lv), tx_power_w=float(p),
                     actor_energy_j=0.0 if fb else energy_j, backend=self.backend.name,
                     precision=self.backend.precision, fallback=bool(fb))
            for t, lv, p, fb in zip(batch, level, power, bad)
        ]
        return decisions, used, format_utc(datetime.now(timezone.utc))

    def _expire_locked(self, now: datetime) -> None:
        """Drop expired pending decisions from memory (and, at most once a minute, from the file)."""
        cutoff = format_utc(now)
        while self._pending:
            first_expires_utc, _ = next(iter(self._pending.values()))
            if first_expires_utc >= cutoff:
                break
            self._pending.popitem(last=False)
        if time.monotonic() - self._last_prune > 60.0:
            self._last_prune = time.monotonic()
            self.ledger.submit("expire", cutoff)  # nobody waits on it

    def decide_begin(self, telemetry: Sequence[Telemetry]) -> tuple[list[Decision], LedgerWrite]:
        """Decide a batch and queue its pending decisions for the ledger file.

        The caller may answer at once: the decisions are already waiting in memory, and the
        writer commits them (``synchronous=NORMAL``) at its next poll, at most
        ``ledger.LAZY_FLUSH_S`` (50 ms) later; a process killed in between loses them (their outcomes then get 404 and the client decides
        again), a graceful stop never does (the ledger drains its queue on close). Waiting on the
        returned write makes the decide durable against a kill.

        :raises ServiceError: a request_id repeated in the batch, waiting for its outcome, or
            already in the ledger
        :raises PendingFullError: ``max_pending`` decisions are already waiting
        """
        batch = list(telemetry)
        decisions, used, now = self._decisions(batch)
        now_dt = datetime.now(timezone.utc)
        expires = format_utc(now_dt + self.pending_ttl)
        pendings = [_Pending(decision=d, telemetry=t, ci_g_per_kwh=ci, ci_norm=norm, decided_utc=now, expires_utc=expires)
                    for d, t, (ci, norm) in zip(decisions, batch, used)]
        ids = [d.request_id for d in decisions]
        recorded = self.ledger.find_recorded(ids)
        if recorded is not None:
            raise ServiceError(f"request_id {recorded!r} is already in the ledger {self.ledger.path}", "request_id")
        with self._lock:
            self._expire_locked(now_dt)
            clash = [i for i in ids if i in self._pending]
            if clash:
                raise ServiceError(f"request_id {clash[0]!r}: already decided and waiting for its outcome",
                                   "request_id")
            if len(self._pending) + len(pendings) > self._max_pending:
                self.refused_pending_count += len(pendings)
                raise PendingFullError(f"{len(self._pending)} decisions are waiting for their outcome (the limit is "
                                       f"{self._max_pending}); send outcomes, or retry after expiry "
                                       f"({self.pending_ttl.total_seconds():g} s)", "request_id")
            records = [PendingRecord(p.decision.request_id, p.expires_utc, p.model_dump_json()) for p in pendings]
            for r in records:
                self._pending[r.request_id] = (r.expires_utc, r.decision)
            write = self.ledger.submit("pending", records)
        write.add_done_callback(self._after_pending)
        return decisions, write

    @staticmethod
    def _after_pending(write: LedgerWrite) -> None:
        if write.error is not None:  # the decisions still serve from memory; a restart would lose them
            log.error("pending decisions not kept in the ledger file: %s", write.error)

    def decide(self, telemetry: Telemetry | Sequence[Telemetry]) -> Decision | list[Decision]:
        """Decide one request or a batch (one backend call for the whole batch).

        :param telemetry: one :class:`Telemetry` or a sequence of them
        :return: one :class:`Decision`, or a list in the batch's order
        :raises ServiceError: a request_id repeated in the batch, waiting for its outcome, or
            already in the ledger
        :raises PendingFullError: ``max_pending`` decisions are already waiting
        """
        single = isinstance(telemetry, Telemetry)
        batch = [telemetry] if single else list(telemetry)  # type: ignore[list-item]
        if not batch:
            return []
        decisions, _ = self.decide_begin(batch)
        return decisions[0] if single else decisions

    def decide_served(self, telemetry: Telemetry) -> Served:
        """Decide a request the gateway serves itself: nothing is kept pending.

        :raises ServiceError: its id is waiting for an outcome from a decide
        """
        with self._lock:
            if telemetry.request_id in self._pending:
                raise ServiceError(f"request_id {telemetry.request_id!r}: already decided and waiting for its "
                                   "outcome", "request_id")
        decisions, used, now = self._decisions([telemetry])
        (ci, norm), = used
        return Served(decisions[0], telemetry, ci, norm, now)

    # --- record -------------------------------------------------------------------------------
    def record_begin(self, outcome: Outcome) -> tuple[LedgerRow, LedgerWrite]:
        """Price a served request and queue its ledger row; the caller waits on the write, then
        calls :meth:`record_settle`.

        :raises UnknownRequestError: no decision is waiting under ``outcome.request_id``
        """
        with self._lock:
            entry = self._pending.pop(outcome.request_id, None)
        if entry is None or entry[0] < format_utc(datetime.now(timezone.utc)):
            raise UnknownRequestError(f"request_id {outcome.request_id!r}: no decision is waiting for this outcome "
                                      "(never decided, already recorded, or expired)", "request_id")
        try:
            row = self._row(_Pending.model_validate_json(entry[1]), outcome)
            write = self.ledger.submit("row", row)
        except Exception:
            with self._lock:
                self._pending[outcome.request_id] = entry
            raise
        write.add_done_callback(lambda w: self._after_record(w, entry))
        return row, write

    def _after_record(self, write: LedgerWrite, pending: tuple[str, str]) -> None:
        """In the writer thread: a failed row puts its decision back (the client may retry) unless
        the ledger already holds the id; a committed row enters the quality window."""
        row = write.payload[0]
        if write.error is not None:
            if not isinstance(write.error, DuplicateRequestError):
                with self._lock:
                    self._pending[row.request_id] = pending
            return
        self._remember_quality(row)

    def _remember_quality(self, row: LedgerRow) -> None:
        if row.quality is None or row.quality_base is None:
            return
        with self._lock:
            self._quality[row.request_id] = (row.quality, row.quality_base)
            while len(self._quality) > self._quality_window:
                self._quality.popitem(last=False)

    @staticmethod
    def record_settle(write: LedgerWrite) -> None:
        """Raise the write's error, if any (DuplicateRequestError, LedgerError)."""
        if write.error is not None:
            raise write.error

    def record(self, outcome: Outcome) -> LedgerRow:
        """Price a served request and commit it to the ledger.

        :param outcome: what happened; ``request_id`` must have been decided
        :return: the committed ledger row
        :raises UnknownRequestError: no decision is waiting under ``outcome.request_id``
        :raises LedgerError: the ledger refused the row (the decision stays pending unless the
            ledger already holds the id)
        """
        row, write = self.record_begin(outcome)
        write.done.wait()
        self.record_settle(write)
        return row

    def served_row(self, served: Served, prompt_tokens: int, output_tokens: int, output_tokens_source: str,
                   payload_bytes: int, upstream_latency_s: float,
                   inference_energy_j: Optional[float] = None) -> LedgerRow:
        """The ledger row of a request the gateway forwarded: LLM energy and latency from the
        server profile by tokens (modelled) unless the gateway measured the energy (then the
        measured energy and the upstream's wall time, measured), airtime from the answer's payload
        over the reported link at the channel's mean (modelled), actor energy as for decide,
        quality expected.

        :param prompt_tokens: prompt tokens (the upstream's usage, else the gateway's estimate)
        :param output_tokens: answer tokens
        :param output_tokens_source: ``usage`` or ``counted_chunks``
        :param payload_bytes: bytes of answer text sent to the user (UTF-8)
        :param upstream_latency_s: measured wall time of the upstream call, s
        :param inference_energy_j: the answer's measured share of the upstream GPUs' energy, J
            (:mod:`aolo.runtime.llm_energy`); None models it
        """
        d, tel = served.decision, served.telemetry
        gain = np.array([10.0 ** (tel.gain_db / 10.0)])
        tx = transmit(self.link, np.array([8.0 * payload_bytes]), np.array([d.tx_power_w]), gain,
                      np.ones((1, self.link.harq_max_tries)))
        outcome = Outcome(request_id=d.request_id, output_tokens=min(output_tokens, INPUT_BOUNDS["output_tokens"][1]),
                          airtime_s=min(float(tx.airtime_s[0]), INPUT_BOUNDS["airtime_s"][1]),
                          harq_tries=int(tx.tries[0]), outage=bool(tx.outage[0]),
                          **({} if inference_energy_j is None else {
                              "inference_energy_j": min(float(inference_energy_j), INPUT_BOUNDS["inference_energy_j"][1]),
                              "inference_latency_s": min(float(upstream_latency_s), INPUT_BOUNDS["inference_latency_s"][1])}))
        tel = tel.model_copy(update={"prompt_tokens": max(1, min(prompt_tokens, INPUT_BOUNDS["prompt_tokens"][1]))})
        pending = _Pending(decision=d, telemetry=tel, ci_g_per_kwh=served.ci_g_per_kwh, ci_norm=served.ci_norm,
                           decided_utc=served.decided_utc, expires_utc=served.decided_utc)
        row = self._row(pending, outcome)
        return replace(row, served_via="proxy", output_tokens_source=output_tokens_source,
                       radio_kind="modelled", upstream_latency_s=float(upstream_latency_s))

    def record_served_begin(self, row: LedgerRow) -> LedgerWrite:
        """Queue a proxy row; its quality enters the window once committed."""
        write = self.ledger.submit("row", row)
        write.add_done_callback(lambda w: None if w.error is not None else self._remember_quality(row))
        return write

    # --- feedback -----------------------------------------------------------------------------
    def feedback_begin(self, request_id: str, quality: float) -> LedgerWrite:
        """Queue a client's judgement of a recorded answer; it replaces the expected quality in the
        ledger row and, if the request is still in it, in the rolling window."""
        write = self.ledger.submit("quality", (request_id, float(quality), "feedback"))

        def done(w: LedgerWrite) -> None:
            if w.error is None:
                with self._lock:
                    if request_id in self._quality:
                        self._quality[request_id] = (float(quality), self._quality[request_id][1])
        write.add_done_callback(done)
        return write

    def _row(self, p: _Pending, o: Outcome) -> LedgerRow:
        tel, d, srv = p.telemetry, p.decision, self.server
        e_inf = (srv.energy_per_input_token_j * tel.prompt_tokens + srv.energy_per_output_token_j * o.output_tokens
                 if o.inference_energy_j is None else o.inference_energy_j)
        t_inf = (srv.latency_per_input_token_s * tel.prompt_tokens + srv.latency_per_output_token_s * o.output_tokens
                 if o.inference_latency_s is None else o.inference_latency_s)
        power = d.tx_power_w if o.tx_power_w is None else o.tx_power_w
        b = request_carbon(self.params, p.ci_g_per_kwh, e_inf, t_inf, power, o.airtime_s, tel.active_sessions,
                           d.actor_energy_j)
        if o.quality is not None and o.quality_base is not None:
            quality, quality_base, quality_source = o.quality, o.quality_base, "reported"
        else:
            (quality, quality_base), quality_source = self.expected_quality.quality(tel.task_class, d.level_index), "expected"
        return LedgerRow(
            request_id=d.request_id, timestamp_utc=format_utc(tel.timestamp_utc), decided_utc=p.decided_utc,
            recorded_utc=format_utc(datetime.now(timezone.utc)), task_class=tel.task_class,
            prompt_tokens=tel.prompt_tokens, output_tokens=o.output_tokens, level=d.level, level_index=d.level_index,
            tx_power_w=float(power), airtime_s=o.airtime_s, harq_tries=o.harq_tries, outage=o.outage,
            active_sessions=tel.active_sessions, ci_g_per_kwh=p.ci_g_per_kwh, ci_norm=p.ci_norm,
            inference_energy_j=float(b.inference_energy_j), inference_latency_s=float(t_inf),
            radio_dynamic_energy_j=float(b.radio_dynamic_energy_j), radio_static_energy_j=float(b.radio_static_energy_j),
            actor_energy_j=float(b.actor_energy_j), session_s=float(b.session_s), inference_g=float(b.inference_g),
            radio_g=float(b.radio_g), actor_g=float(b.actor_g), embodied_gpu_g=float(b.embodied_gpu_g),
            embodied_bs_g=float(b.embodied_bs_g), total_g=float(b.total_g), quality=quality,
            quality_base=quality_base, fallback=d.fallback, backend=d.backend, precision=d.precision,
            bundle_sha256=self.bundle.sha256, bundle_signer=self.bundle_signer, server_profile=srv.name, server_profile_version=srv.version,
            radio_profile=self.radio.name, radio_profile_version=self.radio.version, grid_zone=self.grid.zone_id,
            served_via="sidecar", output_tokens_source="reported",
            inference_kind=o.inference_energy_kind if o.inference_energy_j is not None else "modelled",
            radio_kind="modelled", actor_kind="estimated" if d.actor_energy_j > 0 else "unknown",
            quality_source=quality_source,
        )

    @property
    def pending_count(self) -> int:
        """Decisions waiting for their outcome."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Close the backend, then the ledger."""
        try:
            self.backend.close()
        finally:
            self.ledger.close()
