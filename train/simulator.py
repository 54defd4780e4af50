"""Vectorised simulator of many edge base stations, one LLM request per BS per step.

All randomness of an episode (arrivals, requests and their outcomes at every level, channel
gains, fading, load) is drawn when the BS's episode starts, so it does not depend on the actions:
two policies run on the same seed see the same requests, which makes savings paired comparisons.

The simulator works on privileged per-request context (:class:`RequestContext`); the observation a
learned policy sees is built from it by :func:`observe`. Reference policies read the context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aolo.hw_profiles import ActorHardwareProfile, LLMServerProfile, RadioProfile, load_profile
from aolo.runtime.carbon import CarbonBreakdown, CarbonParams, request_carbon
from aolo.runtime.grid import annual_minmax_norm, load_grid, trailing_minmax_norm
from aolo.runtime.policy_io import build_observation, quality_floor_frac, quality_slack
from aolo.runtime.radio import LinkParams, transmit

from .requests import LEVELS, TASK_CLASSES, RequestBatch, SyntheticRequests, TraceRequests
from .reward import service_reward

__all__ = ["BatchSimulator", "RequestContext", "ServiceModel", "StepOutcome", "observe"]
from .scenario import ScenarioConfig
from .seeds import CALIBRATION_SEED
from .workload import DiurnalWorkload, PaiTraceWorkload, sample_arrivals, sample_classes

# per-request fields an episode stores, from the Episode and from its RequestBatch
STREAM_FIELDS_EPISODE = ("hour_index", "arrival_s", "gain_db", "fading_power", "active_sessions")
STREAM_FIELDS_REQUEST = ("task_class", "prompt_tokens", "deadline_s", "output_tokens", "inference_energy_j",
                         "inference_latency_s", "preferred_level")
N_LEVELS = len(LEVELS)
N_CLASSES = len(TASK_CLASSES)



@dataclass
class RequestContext:
    """The current request of each BS, (n_bs,) arrays; fields after ``quality_slack`` are privileged
    (known only after the decision, or only to the oracle)."""

    hour_index: np.ndarray
    hour_of_day: np.ndarray
    arrival_s: np.ndarray  # since the episode's first hour
    ci_g_per_kwh: np.ndarray
    ci_norm: np.ndarray
    task_class: np.ndarray
    prompt_tokens: np.ndarray
    deadline_s: np.ndarray
    gain_db: np.ndarray
    active_sessions: np.ndarray
    quality_roll: np.ndarray
    quality_base_roll: np.ndarray
    floor: np.ndarray
    quality_slack: np.ndarray
    # privileged
    output_tokens: np.ndarray  # (n_bs, 3)
    inference_energy_j: np.ndarray  # (n_bs, 3)
    inference_latency_s: np.ndarray  # (n_bs, 3)
    preferred_level: np.ndarray
    fading_power: np.ndarray  # (n_bs, K)


@dataclass
class StepOutcome:
    """What happened to each BS's request, (n_bs,) arrays."""

    level: np.ndarray
    tx_power_w: np.ndarray
    carbon: CarbonBreakdown
    airtime_s: np.ndarray
    tries: np.ndarray
    outage: np.ndarray
    latency_violation: np.ndarray
    quality: np.ndarray
    quality_base: np.ndarray
    floor_violation: np.ndarray
    floor_deficit: np.ndarray
    reward: np.ndarray
    ci_g_per_kwh: np.ndarray
    ci_norm: np.ndarray
    hour_index: np.ndarray
    task_class: np.ndarray
    episode_end: np.ndarray


class ServiceModel:
    """The scenario made concrete: profiles, link, carbon constants, grid trace, request source."""

    def __init__(self, scenario: ScenarioConfig) -> None:
        self.scenario = scenario
        self.server = load_profile(scenario.server_profile, LLMServerProfile)
        self.radio = load_profile(scenario.radio_profile, RadioProfile)
        self.link = LinkParams.from_profile(self.radio)
        self.carbon_params = CarbonParams.from_profiles(self.server, self.radio, include_radio=scenario.include_radio)
        self.grid = load_grid(scenario.grid)
        if scenario.grid_start_hour + scenario.episode_hours > self.grid.n_hours:
            raise ValueError(
                f"scenario: grid {scenario.grid!r} has {self.grid.n_hours} hours, the episode needs hours "
                f"{scenario.grid_start_hour}..{scenario.grid_start_hour + scenario.episode_hours}"
            )
        norm = annual_minmax_norm if scenario.ci_norm == "annual" else trailing_minmax_norm
        self.ci_norm = norm(self.grid.ci_g_per_kwh)
        self.start_hour_of_day = self.grid.start_utc.hour
        if scenario.requests_csv is not None:
            self.requests = TraceRequests.from_csv(scenario.requests_csv, scenario.judgements_csv)
        else:
            self.requests = SyntheticRequests()
        # workload hours count from the scenario's first grid hour
        if scenario.workload_csv is not None:
            self.workload = PaiTraceWorkload.from_csv(scenario.workload_csv, base_rate_per_s=scenario.base_rate_per_s,
                                                      mix_concentration=scenario.class_mix_concentration)
        else:
            self.workload = DiurnalWorkload(base_rate_per_s=scenario.base_rate_per_s,
                                            start_hour_of_day=(self.start_hour_of_day + scenario.grid_start_hour) % 24,
                                            mix_concentration=scenario.class_mix_concentration)
        self.actor_energy_j = 0.0
        if scenario.actor_hardware is not None:
            # a dense-MLP-sized default until a bundle's measured energy replaces it (aolo energy)
            hw = load_profile(scenario.actor_hardware, ActorHardwareProfile)
            self.actor_energy_j = hw.si("static_power") * (hw.si("latency_per_decision") if hw.execution == "dense"
                                                            else hw.si("latency_per_timestep") * 5)
        self.carbon_ref_g = 1.0
        self.carbon_ref_g = self._base_mean_carbon_g()

    # --- episodes -----------------------------------------------------------------------------
    def episode_start_hour(self, rng: np.random.Generator) -> int:
        """Trace hour at which an episode starts."""
        s = self.scenario
        if not s.random_start_day:
            return s.grid_start_hour
        n_days = (self.grid.n_hours - s.grid_start_hour - s.episode_hours) // 24 + 1
        return s.grid_start_hour + 24 * int(rng.integers(0, max(1, n_days)))

    def sample_episode(self, rng: np.random.Generator, start_hour: int | None = None) -> "Episode":
        """Draw every random quantity of one BS's episode."""
        s = self.scenario
        start = self.episode_start_hour(rng) if start_hour is None else start_hour
        hours = np.arange(start, start + s.episode_hours)
        rates = self.workload.rate_per_s(hours - s.grid_start_hour)
        arrival_s = sample_arrivals(rng, rates, 3600.0 * s.episode_hours)
        if arrival_s.size == 0:
            arrival_s = np.array([rng.uniform(0, 3600.0 * s.episode_hours)])
        hour_offset = np.minimum((arrival_s // 3600.0).astype(np.int64), s.episode_hours - 1)
        mixes = self.workload.class_mix(hours - s.grid_start_hour)  # (hours, n_classes)
        task_class = sample_classes(rng, mixes[hour_offset])
        batch = self.requests.sample(rng, task_class)
        n = len(batch)
        load = rates[hour_offset] / max(np.mean(rates), 1e-12)
        sessions = 1 + rng.poisson(s.background_sessions * load)
        return Episode(
            hour_index=hours[hour_offset], arrival_s=arrival_s, requests=batch,
            gain_db=self.link.sample_gain_db(rng, n),
            fading_power=rng.exponential(1.0, size=(n, self.link.harq_max_tries)),
            active_sessions=sessions.astype(np.float64),
        )

    def _base_mean_carbon_g(self) -> float:
        """C_ref: BASE's (L0 at P_max) mean carbon per request on a calibration episode."""
        ep = self.sample_episode(np.random.default_rng(CALIBRATION_SEED))
        level = np.zeros(len(ep.requests), dtype=np.int64)
        power = np.full(len(ep.requests), self.link.p_max_w)
        out = self.serve(ep.requests, level, power, ep.gain_db, ep.fading_power, ep.active_sessions,
                         self.grid.at_hours(ep.hour_index))
        return float(out[0].total_g.mean())

    # --- physics of one batch of requests -------------------------------------------------------
    def payload_bits(self, output_tokens: np.ndarray) -> np.ndarray:
        """Downlink payload of answers of `output_tokens` tokens, bits."""
        return output_tokens * self.scenario.bits_per_token * self.scenario.modality_factor

    def serve(self, req: RequestBatch, level: np.ndarray, tx_power_w: np.ndarray, gain_db: np.ndarray,
              fading_power: np.ndarray, active_sessions: np.ndarray, ci_g_per_kwh: np.ndarray):
        """Serve requests at the chosen levels and powers.

        :return: (carbon breakdown, transmission, latency violation (n,) bool)
        """
        rows = np.arange(len(level))
        tokens = req.output_tokens[rows, level]
        e_inf = req.inference_energy_j[rows, level]
        tau_inf = req.inference_latency_s[rows, level]
        tx = transmit(self.link, self.payload_bits(tokens), tx_power_w, 10.0 ** (gain_db / 10.0), fading_power)
        carbon = request_carbon(self.carbon_params, ci_g_per_kwh, e_inf, tau_inf, tx_power_w, tx.airtime_s,
                                active_sessions, self.actor_energy_j)
        late = (tau_inf + tx.airtime_s > req.deadline_s) | tx.outage
        return carbon, tx, late


@dataclass
class Episode:
    """One BS's pre-drawn episode; every field has a leading (n_requests,) axis."""

    hour_index: np.ndarray
    arrival_s: np.ndarray
    requests: RequestBatch
    gain_db: np.ndarray
    fading_power: np.ndarray
    active_sessions: np.ndarray

    def __len__(self) -> int:
        return len(self.requests)


class BatchSimulator:
    """``n_bs`` independent base stations stepped together; each resets on its own at episode end.

    :param model: the service model (shared, read-only)
    :param n_bs: number of base stations
    :param seed: base seed; BS b's k-th episode draws from ``default_rng([seed, stream_of_bs[b], k])``
    :param stream_of_bs: (n_bs,) int, the random stream of each BS (None: BS b has stream b).
        Base stations that share a stream serve the same requests in lockstep (every BS takes one
        request per step), whatever they decide: a policy family evaluated side by side on copies
        of the same days (:func:`aolo.train.evaluate.evaluate_policy_groups`). Their episodes are
        drawn and stored once.
    """

    def __init__(self, model: ServiceModel, n_bs: int, seed: int = 0, stream_of_bs: np.ndarray | None = None) -> None:
        self.model = model
        self.n_bs = n_bs
        self.seed = seed
        self.stream_of_bs = np.arange(n_bs) if stream_of_bs is None else np.asarray(stream_of_bs, dtype=np.int64)
        if self.stream_of_bs.shape != (n_bs,) or (self.stream_of_bs < 0).any():
            raise ValueError(f"BatchSimulator: stream_of_bs must be ({n_bs},) non-negative ints")
        n_streams = int(self.stream_of_bs.max()) + 1 if n_bs else 0
        self._stored_episode = np.full(n_streams, -1, dtype=np.int64)  # per stream: the episode in _buf
        self._stream_length = np.zeros(n_streams, dtype=np.int64)
        self.episode_count = np.zeros(n_bs, dtype=np.int64)
        self.pos = np.zeros(n_bs, dtype=np.int64)
        self.length = np.zeros(n_bs, dtype=np.int64)
        self._buf: dict[str, np.ndarray] = {}  # per field (n_streams, capacity, ...) padded episode streams
        w = model.scenario.quality_window
        self._q = np.zeros((n_bs, w))
        self._q0 = np.zeros((n_bs, w))
        self._n = np.zeros(n_bs, dtype=np.int64)
        self._ctx: RequestContext | None = None

    # --- episode bookkeeping ---------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> RequestContext:
        """Start a fresh episode at every BS."""
        if seed is not None:
            self.seed = seed
            self.episode_count[:] = 0
        self._stored_episode[:] = -1
        for b in range(self.n_bs):
            self._reset_bs(b)
        self._ctx = self._context()
        return self._ctx

    def _reset_bs(self, b: int) -> None:
        stream, k = int(self.stream_of_bs[b]), int(self.episode_count[b])
        self.episode_count[b] += 1
        if self._stored_episode[stream] != k:  # not yet drawn by a BS of the same stream
            ep = self.model.sample_episode(np.random.default_rng([self.seed, stream, k]))
            self._store(stream, ep)
            self._stored_episode[stream] = k
        self.length[b] = self._stream_length[stream]
        self.pos[b] = 0
        self._q[b] = 0.0
        self._q0[b] = 0.0
        self._n[b] = 0

    def _store(self, stream: int, ep: "Episode") -> None:
        """Write a stream's episode into the padded buffers, growing them when it is longer."""
        n = len(ep)
        cols = {k: getattr(ep, k) for k in STREAM_FIELDS_EPISODE}
        cols.update({k: getattr(ep.requests, k) for k in STREAM_FIELDS_REQUEST})
        cap = next(iter(self._buf.values())).shape[1] if self._buf else 0
        if n > cap:
            new_cap = max(n, int(cap * 1.25) + 16)
            for k, v in cols.items():
                grown = np.zeros((self._stream_length.size, new_cap) + v.shape[1:], dtype=v.dtype)
                if k in self._buf:
                    grown[:, :cap] = self._buf[k]
                self._buf[k] = grown
        for k, v in cols.items():
            self._buf[k][stream, :n] = v
        self._stream_length[stream] = n

    def episode_stream(self, b: int) -> tuple[dict[str, np.ndarray], RequestBatch]:
        """BS b's whole current episode (privileged: for the oracle): episode fields and requests."""
        n = int(self.length[b])
        stream = int(self.stream_of_bs[b])
        buf = {k: v[stream, :n] for k, v in self._buf.items()}
        return buf, RequestBatch(**{k: buf[k] for k in STREAM_FIELDS_REQUEST})

    def _gather(self) -> dict[str, np.ndarray]:
        return {k: v[self.stream_of_bs, self.pos] for k, v in self._buf.items()}

    def _context(self) -> RequestContext:
        g = self._gather()
        m = self.model
        ci = m.grid.at_hours(g["hour_index"])
        ci_norm = m.ci_norm[np.clip(g["hour_index"], 0, m.grid.n_hours - 1)]
        n = np.maximum(self._n, 1)
        w = self._q.shape[1]
        q_roll = np.where(self._n > 0, self._q.sum(axis=1) / np.minimum(n, w), 1.0)
        q0_roll = np.where(self._n > 0, self._q0.sum(axis=1) / np.minimum(n, w), 1.0)
        xi = m.scenario.quality_tolerance_xi
        floor = quality_floor_frac(ci_norm, xi) * q0_roll
        return RequestContext(
            hour_index=g["hour_index"], hour_of_day=(g["hour_index"] + m.start_hour_of_day) % 24, arrival_s=g["arrival_s"],
            ci_g_per_kwh=ci, ci_norm=ci_norm, task_class=g["task_class"], prompt_tokens=g["prompt_tokens"],
            deadline_s=g["deadline_s"], gain_db=g["gain_db"], active_sessions=g["active_sessions"],
            quality_roll=q_roll, quality_base_roll=q0_roll, floor=floor,
            quality_slack=quality_slack(q_roll, q0_roll, ci_norm, xi),
            output_tokens=g["output_tokens"], inference_energy_j=g["inference_energy_j"],
            inference_latency_s=g["inference_latency_s"], preferred_level=g["preferred_level"],
            fading_power=g["fading_power"],
        )

    @property
    def context(self) -> RequestContext:
        if self._ctx is None:
            raise RuntimeError("BatchSimulator: call reset() first")
        return self._ctx

    # --- one step ------------------------------------------------------------------------------
    def step(self, level: np.ndarray, tx_power_w: np.ndarray) -> StepOutcome:
        """Serve the current request of every BS with the given decisions and advance.

        :param level: (n_bs,) int in {0, 1, 2}
        :param tx_power_w: (n_bs,) W, clipped to [P_min, P_max]
        """
        m, s, ctx = self.model, self.model.scenario, self.context
        level = np.asarray(level, dtype=np.int64)
        power = np.clip(np.asarray(tx_power_w, dtype=np.float64), m.link.p_min_w, m.link.p_max_w)
        req = RequestBatch(task_class=ctx.task_class, prompt_tokens=ctx.prompt_tokens, output_tokens=ctx.output_tokens,
                           inference_energy_j=ctx.inference_energy_j, inference_latency_s=ctx.inference_latency_s,
                           preferred_level=ctx.preferred_level, deadline_s=ctx.deadline_s)
        carbon, tx, late = m.serve(req, level, power, ctx.gain_db, ctx.fading_power, ctx.active_sessions, ctx.ci_g_per_kwh)
        q = (level == ctx.preferred_level).astype(np.float64)
        q0 = (ctx.preferred_level == 0).astype(np.float64)
        w = self._q.shape[1]
        slot = self._n % w
        rows = np.arange(self.n_bs)
        self._q[rows, slot] = q
        self._q0[rows, slot] = q0
        self._n += 1
        count = np.minimum(self._n, w)
        q_roll = self._q.sum(axis=1) / count
        floor = quality_floor_frac(ctx.ci_norm, s.quality_tolerance_xi) * self._q0.sum(axis=1) / count
        deficit = np.maximum(0.0, floor - q_roll)
        floor_violation = (deficit > 1e-12) & (self._n >= w)  # counted once the window is full
        reward = service_reward(carbon.total_g, m.carbon_ref_g, late, deficit, s.latency_penalty, s.quality_penalty)
        self.pos += 1
        done = self.pos >= self.length
        out = StepOutcome(level=level, tx_power_w=power, carbon=carbon, airtime_s=tx.airtime_s, tries=tx.tries,
                          outage=tx.outage, latency_violation=late, quality=q, quality_base=q0,
                          floor_violation=floor_violation, floor_deficit=deficit, reward=reward,
                          ci_g_per_kwh=ctx.ci_g_per_kwh, ci_norm=ctx.ci_norm, hour_index=ctx.hour_index,
                          task_class=ctx.task_class, episode_end=done)
        for b in np.flatnonzero(done):
            self._reset_bs(int(b))
        self._ctx = self._context()
        return out


def observe(ctx: RequestContext) -> np.ndarray:
    """The policy's observation of each BS's current request, (n_bs, OBS_DIM) float32 (the contract of
    ``policy_io.OBSERVATION``, clipped to its bounds)."""
    return build_observation(ci_norm=ctx.ci_norm, ci_g_per_kwh=ctx.ci_g_per_kwh, hour_of_day_utc=ctx.hour_of_day,
                             task_class=ctx.task_class, prompt_tokens=ctx.prompt_tokens, deadline_s=ctx.deadline_s,
                             gain_db=ctx.gain_db, active_sessions=ctx.active_sessions,
                             quality_slack=ctx.quality_slack)
