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
  quality_base over the last ``quality_window`` recorded outcomes that report quality; an empty
  window counts as quality 1 and base 1 (the simulator's rule).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional, Sequence

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from aolo.hw_profiles import LLMServerProfile, RadioProfile

from . import limits
from .backends import PolicyBackend
from .bundle import ObservationSpec, PolicyBundle
from .carbon import CarbonParams, request_carbon
from .grid import HOUR, GridTrace, minmax_scale, trailing_minmax
from .ledger import DuplicateRequestError, Ledger, LedgerRow, format_utc
from .policy_io import LEVELS, TASK_CLASSES, action_to_decision, build_observation, quality_slack

__all__ = [
    "Decision",
    "Outcome",
    "PolicyService",
    "SafePolicy",
    "ServiceError",
    "Telemetry",
    "UnknownRequestError",
]

log = logging.getLogger("aolo.runtime.service")

_Frac = Annotated[float, Field(strict=True, ge=0, le=1)]


def _bounded(low: float, high: float) -> Any:
    """A strict float in [low, high] (the bounds of :mod:`aolo.runtime.limits`)."""
    return Annotated[float, Field(strict=True, ge=low, le=high)]


def _count(high: int) -> Any:
    return Annotated[int, Field(strict=True, ge=0, le=high)]


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


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Telemetry(_Input):
    """What the BS knows about one request when it asks for a decision.

    :param request_id: client id, unique per request (1-128 characters)
    Every number is bounded by :mod:`aolo.runtime.limits`.

    :param timestamp_utc: when the request is served, ISO-8601 with a UTC offset, 1970-2199
    :param task_class: one of ``policy_io.TASK_CLASSES``
    :param prompt_tokens: prompt length, tokens (>= 1)
    :param deadline_s: latency budget, s (> 0)
    :param gain_db: large-scale downlink gain to the user, dB ([-300, 0], typically -150..-60)
    :param active_sessions: sessions active at the BS (>= 0)
    :param ci_g_per_kwh: grid intensity now, gCO2e/kWh; default the service's trace
    :param ci_norm: intensity normalised to [0, 1]; default trailing-normalised from the trace
    :param quality_slack: rolling quality minus the floor, [-1, 1]; default from the service's window
    """

    request_id: str = Field(min_length=1, max_length=128)
    timestamp_utc: AwareDatetime
    task_class: Literal[TASK_CLASSES]  # type: ignore[valid-type]
    prompt_tokens: Annotated[int, Field(strict=True, ge=1, le=limits.TOKENS_MAX)]
    deadline_s: Annotated[float, Field(strict=True, gt=0, le=limits.DEADLINE_S_MAX)]
    gain_db: _bounded(limits.GAIN_DB_MIN, limits.GAIN_DB_MAX)
    active_sessions: _count(limits.ACTIVE_SESSIONS_MAX)
    ci_g_per_kwh: Optional[_bounded(0.0, limits.CI_G_PER_KWH_MAX)] = None
    ci_norm: Optional[_Frac] = None
    quality_slack: Optional[Annotated[float, Field(strict=True, ge=-1, le=1)]] = None

    @field_validator("timestamp_utc")
    @classmethod
    def _plausible_time(cls, t: datetime) -> datetime:
        if not limits.TIMESTAMP_MIN <= t < limits.TIMESTAMP_MAX:
            raise ValueError(f"must be between {limits.TIMESTAMP_MIN.year} and {limits.TIMESTAMP_MAX.year}")
        return t


class Outcome(_Input):
    """What happened to a decided request.

    :param request_id: the id given to ``decide``
    :param output_tokens: answer length, tokens
    :param inference_energy_j: GPU energy of the answer, J; default from the server profile
        (``e_pre * prompt_tokens + e_tok * output_tokens``)
    :param inference_latency_s: generation time, s; default from the server profile likewise
    :param airtime_s: downlink airtime over all HARQ tries, s
    :param harq_tries: tries used
    :param outage: all tries failed
    :param tx_power_w: power actually used, W; default the decided power
    :param quality: answer quality in [0, 1]; with ``quality_base`` it feeds the slack window
    :param quality_base: quality the L0 answer would have had, [0, 1]
    """

    request_id: str = Field(min_length=1, max_length=128)
    output_tokens: _count(limits.TOKENS_MAX)
    inference_energy_j: Optional[_bounded(0.0, limits.INFERENCE_ENERGY_J_MAX)] = None
    inference_latency_s: Optional[_bounded(0.0, limits.INFERENCE_LATENCY_S_MAX)] = None
    airtime_s: _bounded(0.0, limits.AIRTIME_S_MAX)
    harq_tries: _count(limits.HARQ_TRIES_MAX)
    outage: Annotated[bool, Field(strict=True)]
    tx_power_w: Optional[Annotated[float, Field(strict=True, gt=0, le=limits.TX_POWER_W_MAX)]] = None
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


@dataclass(frozen=True)
class _Pending:
    """A decided request waiting for its outcome."""

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
    :param max_pending: decided-but-unrecorded requests kept; the oldest are dropped beyond it
    :param include_radio: False drops the radio terms from carbon (computation-only accounting)
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
        include_radio: bool = True,
    ) -> None:
        if bundle.manifest.observation.fields != ObservationSpec.default().fields:
            names = [f.name for f in bundle.manifest.observation.fields]
            raise ServiceError(f"{bundle.path}: manifest field 'observation.fields' ({names}) is not this runtime's "
                               "observation contract (policy_io.OBSERVATION)", "observation.fields")
        self.bundle, self.backend, self.ledger = bundle, backend, ledger
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
        self._quality: deque[tuple[float, float]] = deque(maxlen=int(quality_window))
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._max_pending = int(max_pending)
        self._lock = threading.Lock()  # pending map, quality window, counters
        self._backend_lock = None if backend.thread_safe else threading.Lock()
        self._ci_lo, self._ci_hi = trailing_minmax(grid.ci_g_per_kwh)  # per hour, for ci_norm
        self.fallback_count = 0
        self.dropped_pending_count = 0

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
            return sum(x for x, _ in self._quality) / n, sum(y for _, y in self._quality) / n

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
        if self._backend_lock is None:
            action = self.backend.decide(obs)
        else:
            with self._backend_lock:
                action = self.backend.decide(obs)
        action = np.asarray(action)
        if action.shape != (obs.shape[0], 2) or not np.all(np.isfinite(action)):
            raise ValueError(f"backend {self.backend.name!r} returned {action.dtype} {action.shape}, "
                             f"expected finite ({obs.shape[0]}, 2)")
        return action

    def decide(self, telemetry: Telemetry | Sequence[Telemetry]) -> Decision | list[Decision]:
        """Decide one request or a batch (one backend call for the whole batch).

        :param telemetry: one :class:`Telemetry` or a sequence of them
        :return: one :class:`Decision`, or a list in the batch's order
        :raises ServiceError: a request_id repeated in the batch or already waiting for its outcome
        """
        single = isinstance(telemetry, Telemetry)
        batch = [telemetry] if single else list(telemetry)  # type: ignore[list-item]
        if not batch:
            return []
        ids = [t.request_id for t in batch]
        if len(set(ids)) != len(ids):
            raise ServiceError("request_id: repeated within the batch", "request_id")
        obs, used = self.observe(batch)
        fallback = False
        try:
            action = self._run_backend(obs)
            level, power = action_to_decision(action, self.action_p_min_w, self.action_p_max_w)
            power = np.clip(power, self.p_min_w, self.p_max_w)
            energy_j = float(self.backend.energy_per_decision_j or 0.0)
        except Exception:
            log.exception("backend %r failed on a batch of %d; the safe policy answers", self.backend.name, len(batch))
            fallback = True
            level = np.full(len(batch), self.safe_policy.level_index)
            power = np.full(len(batch), self.safe_power_w)
            energy_j = 0.0  # the safe policy is a constant: no actor decision happened
        now = format_utc(datetime.now(timezone.utc))
        decisions = [
            Decision(request_id=t.request_id, level=LEVELS[int(lv)], level_index=int(lv), tx_power_w=float(p),
                     actor_energy_j=energy_j, backend=self.backend.name, precision=self.backend.precision,
                     fallback=fallback)
            for t, lv, p in zip(batch, level, power)
        ]
        with self._lock:
            clash = [i for i in ids if i in self._pending]
            if clash:
                raise ServiceError(f"request_id {clash[0]!r}: already decided and waiting for its outcome",
                                   "request_id")
            if fallback:
                self.fallback_count += 1
            for d, t, (ci, norm) in zip(decisions, batch, used):
                self._pending[d.request_id] = _Pending(d, t, ci, norm, now)
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
                self.dropped_pending_count += 1
        return decisions[0] if single else decisions

    # --- record -------------------------------------------------------------------------------
    def record(self, outcome: Outcome) -> LedgerRow:
        """Price a served request and commit it to the ledger.

        :param outcome: what happened; ``request_id`` must have been decided
        :return: the committed ledger row
        :raises UnknownRequestError: no decision is waiting under ``outcome.request_id``
        :raises LedgerError: the ledger refused the row (the decision stays pending unless the
            ledger already holds the id)
        """
        with self._lock:
            pending = self._pending.pop(outcome.request_id, None)
        if pending is None:
            raise UnknownRequestError(f"request_id {outcome.request_id!r}: no decision is waiting for this outcome "
                                      "(never decided, already recorded, or expired)", "request_id")
        row = self._row(pending, outcome)
        try:
            self.ledger.record(row)
        except Exception as e:
            if not isinstance(e, DuplicateRequestError):
                with self._lock:  # let the client retry
                    self._pending[outcome.request_id] = pending
            raise
        if outcome.quality is not None and outcome.quality_base is not None:
            with self._lock:
                self._quality.append((outcome.quality, outcome.quality_base))
        return row

    def _row(self, p: _Pending, o: Outcome) -> LedgerRow:
        tel, d, srv = p.telemetry, p.decision, self.server
        e_inf = (srv.energy_per_input_token_j * tel.prompt_tokens + srv.energy_per_output_token_j * o.output_tokens
                 if o.inference_energy_j is None else o.inference_energy_j)
        t_inf = (srv.latency_per_input_token_s * tel.prompt_tokens + srv.latency_per_output_token_s * o.output_tokens
                 if o.inference_latency_s is None else o.inference_latency_s)
        power = d.tx_power_w if o.tx_power_w is None else o.tx_power_w
        b = request_carbon(self.params, p.ci_g_per_kwh, e_inf, t_inf, power, o.airtime_s, tel.active_sessions,
                           d.actor_energy_j)
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
            embodied_bs_g=float(b.embodied_bs_g), total_g=float(b.total_g), quality=o.quality,
            quality_base=o.quality_base, fallback=d.fallback, backend=d.backend, precision=d.precision,
            bundle_sha256=self.bundle.sha256, server_profile=srv.name, server_profile_version=srv.version,
            radio_profile=self.radio.name, radio_profile_version=self.radio.version, grid_zone=self.grid.zone_id,
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
