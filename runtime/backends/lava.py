"""Lava backend: a spiking actor as a persistent Lava process graph (CPU simulation of Loihi 2).

The network is built and started once and kept running; each decision streams input spikes in and
output spikes out through Lava's host I/O processes, without rebuilding, recompiling or touching
a Var. Lava is imported on first use (``pip install 'aolo[lava]'``).

Graph (``n`` spiking layers, ``T`` timesteps)::

    Injector -> Dense -> LIFReset -> Dense -> LIFReset ... -> LIFReset -> Extractor
                                        \\-> Extractor (hidden layers, when recorded)

* The population encoder runs on the host (:func:`~aolo.runtime.fixed_point.host_encode_spikes`);
  the Injector feeds its spikes to the first Dense, one vector per Lava timestep.
* Each Lava ``Dense`` sends at step t what it accumulated at step t-1, so layer k (1-based) sees
  the encoder's step tau at Lava step tau + k. A decision therefore takes ``P = T + n`` Lava steps
  (the encoder's T steps followed by n zero vectors), and layer k's spikes for reference steps
  0..T-1 are the Extractor outputs at decision steps k..k+T-1.
* State reset without the host: each layer is a ``LIFReset`` with ``reset_interval = P`` and
  ``reset_offset`` at its own first step of the decision (Lava step ``k`` of it), where it zeroes
  u and v before integrating. What is still in flight from the previous decision (Dense buffers,
  spikes of the layers below) only reaches a layer before its reset, so every decision starts
  from the zero state of ``ActorSpec``'s reference.
* The runtime runs continuously (``RunContinuous``) and the Injector blocks on an empty buffer,
  so the host paces the network: it advances exactly P steps per decision and idles at no CPU
  cost in between. The first decision-sized run at build time is a blocking ``RunSteps`` so that
  compile or model errors surface in the constructor.

Precision (Lava's ``select_tag``): ``"float"`` runs ``PyDenseModelFloat`` / ``PyLifResetModelFloat``
with the float weights, ``du = 1 - alpha``, ``dv = 1 - beta``, ``vth = threshold``; ``"fixed"`` runs
``PyDenseModelBitAcc`` / ``PyLifResetModelBitAcc`` with the integers of
:func:`~aolo.runtime.fixed_point.quantize_actor`. Per-neuron du, dv and vth are passed as arrays;
Lava's docstring speaks of one value per population, but its Python models broadcast them.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from ..actor_spec import ActorSpec
from ..fixed_point import FixedPointActor, host_decode_action, host_encode_spikes, quantize_actor

__all__ = ["LavaActorNetwork", "PRECISION_TAGS", "LAVA_EXTRA_HINT"]

Precision = Literal["float", "fixed"]

PRECISION_TAGS: dict[str, str] = {"float": "floating_pt", "fixed": "fixed_pt"}
"""aolo precision name -> Lava ``Loihi2SimCfg(select_tag=...)``."""

LAVA_EXTRA_HINT = "the Lava backend needs lava-nc: install the 'aolo[lava]' extra (pip install 'aolo[lava]')"


def _import_lava() -> SimpleNamespace:
    """Lava's classes, imported on first use; raises ModuleNotFoundError naming the extra."""
    try:
        from lava.magma.core.run_conditions import RunContinuous, RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel
        from lava.proc.lif.process import LIFReset
        from lava.utils.weightutils import SignMode
    except ImportError as exc:
        raise ModuleNotFoundError(LAVA_EXTRA_HINT, name="lava") from exc
    return SimpleNamespace(RunContinuous=RunContinuous, RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg,
                           Dense=Dense, Extractor=Extractor, PyLoihiExtractorModel=PyLoihiExtractorModel,
                           Injector=Injector, PyLoihiInjectorModel=PyLoihiInjectorModel,
                           LIFReset=LIFReset, SignMode=SignMode)


@dataclass(eq=False)
class _LavaGraph:
    """The built processes and what is needed to stop them (held apart from the network object
    so that a finaliser can stop the runtime without keeping the network alive)."""

    injector: Any
    denses: list[Any]
    lifs: list[Any]
    extractors: dict[int, Any]
    """0-based layer index -> Extractor on that layer's spikes."""
    run_cfg: Any
    n_in: int
    started: bool = False
    continuous: bool = False
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _stop_graph(graph: _LavaGraph) -> None:
    """Stop the graph's runtime; safe to call twice and from a finaliser.

    While the runtime runs continuously, its service only looks for PAUSE or STOP between steps,
    and a step waits for the Injector. So: pause with a feeder thread supplying zero frames (and
    draining the Extractors so that none blocks on a full buffer), join the feeder, then stop the
    paused runtime. The feeder must be gone before ``stop``, which unmaps the channels' shared
    memory (touching a channel after that crashes the interpreter).
    """
    with graph.lock:
        if graph.stopped:
            return
        graph.stopped = True
        if not graph.started:
            return
        try:
            if graph.continuous:
                _pause_continuous(graph)
        finally:
            graph.lifs[0].stop()


def _pause_continuous(graph: _LavaGraph) -> None:
    done = threading.Event()
    send_port = graph.injector.in_port.external_pipe_csp_send_port
    recv_ports = [e.out_port.external_pipe_csp_recv_port for e in graph.extractors.values()]

    def feed() -> None:
        zeros = np.zeros(graph.n_in)
        while not done.is_set():
            if send_port.probe():  # only this thread sends now, so a True probe means no block
                send_port.send(zeros)
            for port in recv_ports:
                while port.probe():
                    port.recv()
            done.wait(1e-3)

    feeder = threading.Thread(target=feed, name="aolo-lava-pause-feeder", daemon=True)
    feeder.start()
    try:
        graph.lifs[0].pause()
    finally:
        done.set()
        feeder.join()
    graph.continuous = False


class LavaActorNetwork:
    """A spiking :class:`ActorSpec` running in a persistent Lava process graph.

    Built once (about 0.3 s); each :meth:`decide` costs ``T + n_layers`` Lava timesteps. Use it as
    a context manager or call :meth:`close`; an unclosed network is stopped when garbage-collected
    or at interpreter exit.

    :param spec: an SNN actor (kind 'snn')
    :param precision: ``"float"`` (Lava ``floating_pt`` models, equal to ``spec.forward_with_spikes``)
        or ``"fixed"`` (bit-accurate ``fixed_pt`` models, equal to ``FixedPointActor.forward_with_spikes``)
    :param record_hidden: also read back the hidden layers' spikes (one more Lava process and
        about 1 ms per decision per hidden layer); the output layer is always read
    :param fixed_point: the quantised actor for ``"fixed"``; default ``quantize_actor(spec)``
    :param timeout_s: longest wait for the network's output in one decision before TimeoutError
    """

    precision_tags = PRECISION_TAGS

    spec: ActorSpec
    precision: str
    fixed_point: FixedPointActor | None
    steps_per_decision: int
    build_count: int

    def __init__(self, spec: ActorSpec, precision: Precision = "float", *, record_hidden: bool = False,
                 fixed_point: FixedPointActor | None = None, timeout_s: float = 30.0) -> None:
        if precision not in PRECISION_TAGS:
            raise ValueError(f"LavaActorNetwork: precision must be one of {sorted(PRECISION_TAGS)}, got {precision!r}")
        if spec.kind != "snn":
            raise ValueError(f"LavaActorNetwork: only spiking actors run on Lava, got kind {spec.kind!r}")
        self.spec = spec
        self.precision = precision
        self.record_hidden = bool(record_hidden)
        self.timeout_s = float(timeout_s)
        self.fixed_point = (fixed_point or quantize_actor(spec)) if precision == "fixed" else None
        self.n_layers = len(spec.spiking_layers())
        self.steps_per_decision = spec.timesteps + self.n_layers
        self.timesteps_run = 0
        self.build_count = 0
        self._graph: _LavaGraph | None = None
        self._graph = self._build()
        self._finalizer = weakref.finalize(self, _stop_graph, self._graph)

    # --- construction ---------------------------------------------------------------------------
    def _layer_processes(self, lava: SimpleNamespace, k: int) -> tuple[Any, Any]:
        """Dense and LIFReset of 0-based layer ``k`` at this network's precision."""
        lin, lif = self.spec.spiking_layers()[k]
        # Lava counts time_step from 1, so decision d covers steps d*P + 1 .. d*P + P and layer k
        # (0-based) starts its window at decision step k + 1, i.e. time_step % P == (k + 2) % P.
        reset = dict(reset_interval=self.steps_per_decision, reset_offset=(k + 2) % self.steps_per_decision)
        n = lif.threshold.shape[0]
        if self.precision == "float":
            # float64 1 - (1 - alpha) == alpha exactly for float32 alpha, so Lava decays by alpha itself.
            dense = lava.Dense(weights=lin.weight.astype(np.float64))
            neuron = lava.LIFReset(shape=(n,), du=1.0 - lif.alpha.astype(np.float64),
                                   dv=1.0 - lif.beta.astype(np.float64), vth=lif.threshold.astype(np.float64),
                                   **reset)
        else:
            assert self.fixed_point is not None
            layer = self.fixed_point.layers[k]
            dense = lava.Dense(weights=layer.dense_weights, weight_exp=layer.weight_exp, num_weight_bits=8,
                               sign_mode=lava.SignMode.MIXED)
            neuron = lava.LIFReset(shape=(n,), du=layer.du_q12.copy(), dv=layer.dv_q12.copy(),
                                   vth=layer.vth_raw.copy(), **reset)
        return dense, neuron

    def _build(self) -> _LavaGraph:
        lava = _import_lava()
        steps = self.steps_per_decision
        n_in = self.spec.nodes[0].n_out
        buffer_size = 2 * steps
        injector = lava.Injector(shape=(n_in,), buffer_size=buffer_size)
        denses, lifs, extractors = [], [], {}
        source = injector.out_port
        for k in range(self.n_layers):
            dense, neuron = self._layer_processes(lava, k)
            source.connect(dense.s_in)
            dense.a_out.connect(neuron.a_in)
            source = neuron.s_out
            denses.append(dense)
            lifs.append(neuron)
            if self.record_hidden or k == self.n_layers - 1:
                extractor = lava.Extractor(shape=neuron.s_out.shape, buffer_size=buffer_size)
                neuron.s_out.connect(extractor.in_port)
                extractors[k] = extractor
        run_cfg = lava.Loihi2SimCfg(
            select_tag=PRECISION_TAGS[self.precision],
            exception_proc_model_map={lava.Injector: lava.PyLoihiInjectorModel,
                                      lava.Extractor: lava.PyLoihiExtractorModel})
        graph = _LavaGraph(injector=injector, denses=denses, lifs=lifs, extractors=extractors,
                           run_cfg=run_cfg, n_in=n_in)
        self.build_count += 1
        # Compile and start, then a warm-up decision on zeros with a blocking run, so that a
        # failing model raises here rather than hanging a later decision.
        graph.started = True
        try:
            lifs[0].create_runtime(run_cfg=run_cfg)
            zeros = np.zeros(n_in)
            for _ in range(steps):
                injector.send(zeros)
            lifs[0].run(condition=lava.RunSteps(num_steps=steps, blocking=True), run_cfg=run_cfg)
            for extractor in extractors.values():
                for _ in range(steps):
                    extractor.receive()
            lifs[0].run(condition=lava.RunContinuous(), run_cfg=run_cfg)
            graph.continuous = True
        except BaseException:
            try:
                _stop_graph(graph)
            except Exception:  # Lava may already have stopped itself on the error being raised
                pass
            raise
        self.timesteps_run += steps
        return graph

    # --- inspection -----------------------------------------------------------------------------
    @property
    def processes(self) -> tuple[Any, ...]:
        """The Lava processes (injector, Dense and LIFReset per layer, extractors); fixed for the lifetime."""
        if self._graph is None:
            return ()
        g = self._graph
        return (g.injector, *[p for pair in zip(g.denses, g.lifs) for p in pair], *g.extractors.values())

    @property
    def closed(self) -> bool:
        return self._graph is None or self._graph.stopped

    # --- decisions ------------------------------------------------------------------------------
    def _receive(self, port: Any, deadline: float) -> np.ndarray:
        """Next frame from an Extractor's host channel, waiting at most until ``deadline``.

        Waits on the channel's queue (as Lava's ``Extractor.receive`` inspects it) rather than
        polling, so the host does not compete with Lava's processes for the CPU.
        """
        try:
            port._queue.get(timeout=max(deadline - time.perf_counter(), 0.0), peek=True)
        except queue.Empty:
            raise TimeoutError(f"LavaActorNetwork: no output from Lava within {self.timeout_s} s") from None
        return port.recv()

    def _run_one(self, input_spikes: np.ndarray) -> dict[int, np.ndarray]:
        """One decision: ``input_spikes`` (T, n_in) in, {layer k: (T, n_k) float32} out."""
        g = self._graph
        assert g is not None
        steps, timesteps = self.steps_per_decision, self.spec.timesteps
        frames = np.zeros((steps, g.n_in))
        frames[:timesteps] = input_spikes
        for frame in frames:
            g.injector.send(frame)
        deadline = time.perf_counter() + self.timeout_s
        out = {}
        for k, extractor in g.extractors.items():
            port = extractor.out_port.external_pipe_csp_recv_port
            rows = np.stack([self._receive(port, deadline) for _ in range(steps)])
            out[k] = rows[k + 1:k + 1 + timesteps].astype(np.float32)
        self.timesteps_run += steps
        return out

    def decide(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Run the actor on one observation (or several, one after the other).

        :param obs: (obs_dim,) or (batch, obs_dim) float32
        :return: action, (act_dim,) or (batch, act_dim) float32 in [-1, 1]; spikes_per_layer, in
            the order of ``ActorSpec.forward_with_spikes`` (encoder, then each spiking layer),
            each (T, n) or (T, batch, n) float32 in {0, 1}, aligned with the reference (Dense
            delays removed); hidden layers are None unless ``record_hidden``
        """
        if self.closed:
            raise RuntimeError("LavaActorNetwork: decide() on a closed network")
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch_obs = obs[None] if single else obs
        if batch_obs.ndim != 2 or batch_obs.shape[1] != self.spec.obs_dim:
            raise ValueError(f"obs must be ({self.spec.obs_dim},) or (batch, {self.spec.obs_dim}), got {obs.shape}")
        enc = host_encode_spikes(self.spec, batch_obs)
        timesteps, batch = enc.shape[:2]
        layers: list[np.ndarray | None] = [None] * self.n_layers
        assert self._graph is not None
        for k, extractor in self._graph.extractors.items():
            layers[k] = np.zeros((timesteps, batch) + extractor.in_port.shape, np.float32)
        for b in range(batch):
            for k, spikes in self._run_one(enc[:, b]).items():
                layers[k][:, b] = spikes  # type: ignore[index]
        out_spikes = layers[-1]
        assert out_spikes is not None
        action = host_decode_action(self.spec, out_spikes)
        trains: list[np.ndarray | None] = [enc, *layers]
        if single:
            return action[0], [t[:, 0] if t is not None else None for t in trains]
        return action, trains

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the Lava runtime and its processes; idempotent."""
        if self._graph is not None:
            self._finalizer()

    def __enter__(self) -> "LavaActorNetwork":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
