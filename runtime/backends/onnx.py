"""ONNX Runtime backend: the bundle's ``actor.onnx`` (target ``onnx``) in an InferenceSession.

Input ``obs`` (batch, obs_dim) float32, output ``action`` (batch, act_dim) float32; the batch
dimension is dynamic. Providers: CUDA first when this onnxruntime build has it (the
``onnxruntime-gpu`` wheel, the ``gpu`` extra, loads the CUDA and cuDNN libraries that its
``[cuda,cudnn]`` extras installed with ``onnxruntime.preload_dlls()``), then CPU;
``execution_provider`` says which one the session runs on.
Threads are set on purpose: one decision is a few small matrix products, where ONNX Runtime's
intra-op thread pool costs more in wake-ups than it saves, and the HTTP server already runs
requests on several threads; so the default is one intra-op thread and sequential execution.
``InferenceSession.run`` is thread-safe, so one session serves every server thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from . import BackendError, BackendUnavailable, check_obs

if TYPE_CHECKING:
    from ..bundle import PolicyBundle

__all__ = ["OnnxBackend", "ONNX_TARGET", "check_closed_graph"]

ONNX_TARGET = "onnx"


class OnnxBackend:
    """An ONNX Runtime session behind the backend protocol.

    :param session: an ``onnxruntime.InferenceSession`` over the actor graph
    :param obs_dim: observation size the graph reads
    :param act_dim: action size it writes
    """

    name = "onnx"
    precision = "float"
    thread_safe = True

    def __init__(self, session: object, obs_dim: int, act_dim: int) -> None:
        self._session = session
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self._input = session.get_inputs()[0].name  # type: ignore[attr-defined]
        self._outputs = [session.get_outputs()[0].name]  # type: ignore[attr-defined]
        self.providers: list[str] = list(session.get_providers())  # type: ignore[attr-defined]
        # ONNX Runtime drops a provider it cannot start (no GPU, missing CUDA libraries) from the
        # session's list, and places every node it can on the first one left
        self.execution_provider: str = self.providers[0] if self.providers else "unknown"
        self.energy_per_decision_j: Optional[float] = None

    @classmethod
    def load(cls, bundle: "PolicyBundle", precision: str = "float", intra_op_threads: int = 1,
             providers: Sequence[str] | None = None) -> "OnnxBackend":
        """Open the bundle's ONNX actor.

        :param precision: only "float"
        :param intra_op_threads: ONNX Runtime intra-op threads (1: see the module docstring)
        :param providers: execution providers in order; default CUDA (if built in) then CPU
        :raises BackendError: no ``onnx`` target, a graph whose input or output shape does not
            match the bundle, external data or non-finite weights (:func:`check_closed_graph`)
        :raises BundleError: a file that changed since the bundle was verified
        """
        if precision != "float":
            raise BackendError(f"precision: backend 'onnx' runs float, not {precision!r}")
        try:
            import onnxruntime as ort
        except ModuleNotFoundError as e:
            raise BackendUnavailable("backend 'onnx': cannot import 'onnxruntime' (pip install onnxruntime)") from e
        path = bundle.file(ONNX_TARGET)
        data = bundle.read_verified(ONNX_TARGET)  # the bytes we run are the bytes the manifest pins
        check_closed_graph(data, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
            if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
                try:  # the CUDA/cuDNN wheels of onnxruntime-gpu[cuda,cudnn]; absent ones are skipped
                    ort.preload_dlls()
                except Exception:  # noqa: BLE001 - a failed preload leaves the system's libraries to the loader
                    pass
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            raise BackendError(f"{path}: ONNX Runtime cannot load the graph: {e}") from None
        spec = bundle.spec
        _check_io(session, path, spec.obs_dim, spec.act_dim)
        return cls(session, spec.obs_dim, spec.act_dim)

    def decide(self, obs: np.ndarray) -> np.ndarray:
        """``obs``: (n, obs_dim) float32 -> action (n, act_dim) float32 in [-1, 1]."""
        obs = check_obs(obs, self.obs_dim)
        return self._session.run(self._outputs, {self._input: obs})[0]  # type: ignore[attr-defined]

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees it with the last reference)."""
        self._session = None


def check_closed_graph(data: bytes, path: object) -> None:
    """The ONNX graph in ``data`` carries every tensor inside the file, and every float tensor is finite.

    ONNX external data would make the session read weights from any path the file names (and
    relative paths resolve against the server's working directory), so a bundle's hashes would no
    longer pin what runs; non-finite weights would make every decision fall back to the safe policy.
    The ``onnx`` package parses the protobuf (it does not resolve external data from bytes).

    :raises BackendError: not an ONNX model, or a tensor with external data or a non-finite value,
        naming the tensor
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise BackendError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
    for name, tensor in _graph_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise BackendError(f"{path}: tensor {name!r} keeps its data outside the file (ONNX external data); "
                               "a bundle's graph must be self-contained")
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as e:
            raise BackendError(f"{path}: tensor {name!r} cannot be read: {e}") from None
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            raise BackendError(f"{path}: tensor {name!r} holds non-finite values")


def _graph_tensors(graph: object):
    """(name, TensorProto) of every initializer and tensor attribute, subgraphs included."""
    for t in graph.initializer:  # type: ignore[attr-defined]
        yield t.name, t
    for st in graph.sparse_initializer:  # type: ignore[attr-defined]
        yield st.values.name, st.values
        yield st.indices.name, st.indices
    for node in graph.node:  # type: ignore[attr-defined]
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{node.name or node.op_type}.{attr.name}", attr.t
            for t in attr.tensors:
                yield f"{node.name or node.op_type}.{attr.name}", t
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for g in attr.graphs:
                yield from _graph_tensors(g)


def _check_io(session: object, path: object, obs_dim: int, act_dim: int) -> None:
    """The graph reads (batch, obs_dim) float32 and writes (batch, act_dim) float32."""
    ins, outs = session.get_inputs(), session.get_outputs()  # type: ignore[attr-defined]
    if len(ins) != 1:
        raise BackendError(f"{path}: the graph has {len(ins)} inputs, the runtime feeds one ('obs')")
    for what, arg, dim in (("input", ins[0], obs_dim), ("output", outs[0], act_dim)):
        shape = arg.shape
        if arg.type != "tensor(float)" or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != dim):
            raise BackendError(f"{path}: {what} {arg.name!r} is {arg.type} {shape}, the bundle needs "
                               f"tensor(float) [batch, {dim}]")
