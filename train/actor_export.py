"""Export the deterministic actor of a trained SAC/SDRL policy: to an :class:`ActorSpec` (plain
data, numpy reference) and to ONNX.

The ONNX graph is written from the spec, node by node with the spec's equations in the spec's
operation order, so the spec is the one source of what is deployed; SNNs are unrolled over T.
One deliberate difference: the encoder's exp runs in float64 and is rounded once to float32, as
in :meth:`aolo.train.popsan.PopulationEncoder.stimulus` (numpy's float32 exp is off by an ulp in
about 40% of values, which now and then flips a regular spike whose voltage sits at vth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from aolo.runtime.actor_spec import (ActorSpec, CubaLIF, Linear, Node, PopulationDecoder, PopulationEncoder, ReLU,
                                     Tanh)

from .popsan import PopSAN
from .sac_policy import SpikingActor

__all__ = ["actor_spec_from_policy", "onnx_model_from_spec", "export_onnx"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _check_flat(actor: Actor) -> None:
    if type(actor.features_extractor) is not FlattenExtractor:
        raise ValueError(f"actor export: only SB3's FlattenExtractor is supported, got "
                         f"{type(actor.features_extractor).__name__}")
    if actor.use_sde:
        raise ValueError("actor export: gSDE actors are not supported")


def _snn_nodes(net: PopSAN) -> list[Node]:
    # |std|: the encoder squares z = (obs - mean) / std, so the sign of std is immaterial and
    # (x / -s)^2 == (x / s)^2 bit for bit; the spec requires std > 0.
    nodes: list[Node] = [PopulationEncoder(mean=_np(net.encoder.mean), std=np.abs(_np(net.encoder.std)),
                                           vth=float(net.encoder.vth))]
    for lin, lif in zip(net.layers, net.neurons):
        n = lin.out_features
        # snntorch clamps alpha and beta to [0, 1] in its state update.
        nodes += [Linear(weight=_np(lin.weight)),
                  CubaLIF(alpha=np.full(n, float(lif.alpha.clamp(0, 1))), beta=np.full(n, float(lif.beta.clamp(0, 1))),
                          threshold=np.full(n, float(lif.threshold)))]
    return nodes + [PopulationDecoder(weight=_np(net.decoder.weight), bias=_np(net.decoder.bias)), Tanh()]


def _ann_nodes(actor: Actor) -> list[Node]:
    nodes: list[Node] = []
    for m in actor.latent_pi:
        if isinstance(m, nn.Linear):
            nodes.append(Linear(weight=_np(m.weight), bias=_np(m.bias) if m.bias is not None else None))
        elif isinstance(m, nn.ReLU):
            nodes.append(ReLU())
        else:
            raise ValueError(f"actor export: ANN actors use Linear and ReLU only, found {type(m).__name__}")
    mu = actor.mu
    if not isinstance(mu, nn.Linear):
        raise ValueError(f"actor export: expected a Linear mu head, got {type(mu).__name__}")
    return nodes + [Linear(weight=_np(mu.weight), bias=_np(mu.bias) if mu.bias is not None else None), Tanh()]


def actor_spec_from_policy(policy: SACPolicy) -> ActorSpec:
    """The deterministic actor of an SDRL (:class:`SpikingActor`) or plain SB3 SAC policy as plain data.

    :param policy: an SB3 SAC policy; its actor's deterministic action is ``spec.forward(obs)``
    :return: an 'snn' spec (encoder, [Linear, CubaLIF] * n, decoder, Tanh) or an 'ann' spec
        ([Linear, ReLU] * n, Linear, Tanh)
    """
    actor = policy.actor
    _check_flat(actor)
    obs_dim, act_dim = int(actor.features_dim), int(np.prod(actor.action_space.shape))
    if isinstance(actor, SpikingActor):
        net = actor.popsan
        return ActorSpec(kind="snn", obs_dim=obs_dim, act_dim=act_dim, nodes=_snn_nodes(net),
                         timesteps=net.config.timesteps,
                         metadata={"algo": "sdrl", "popsan": net.config.to_dict()})
    return ActorSpec(kind="ann", obs_dim=obs_dim, act_dim=act_dim, nodes=_ann_nodes(actor), metadata={"algo": "sac"})


# --- ONNX ------------------------------------------------------------------------------------
class _GraphBuilder:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        from onnx import helper
        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: np.ndarray | float, hint: str = "c", dtype: Any = np.float32) -> str:
        from onnx import numpy_helper
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs: Any) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _onnx_snn(g: _GraphBuilder, spec: ActorSpec, obs: str) -> str:
    from onnx import TensorProto
    enc, dec = spec.nodes[0], spec.nodes[-2]
    if not (isinstance(enc, PopulationEncoder) and isinstance(dec, PopulationDecoder)):
        raise ValueError("ONNX export: an snn spec starts with PopulationEncoder and ends with PopulationDecoder, Tanh")
    # encoder_stimulus: z = (obs - mean) / std; exp(-0.5 * z * z), reshaped (batch, obs_dim * pop)
    z = g.op("Div", g.op("Sub", g.op("Unsqueeze", obs, g.const([2], "axes", np.int64)), g.const(enc.mean, "enc_mean")),
             g.const(enc.std, "enc_std"))
    arg = g.op("Cast", g.op("Mul", g.op("Mul", g.const(-0.5), z), z), to=TensorProto.DOUBLE)
    stim = g.op("Cast", g.op("Exp", arg), to=TensorProto.FLOAT)  # as PopulationEncoder.stimulus
    stim = g.op("Reshape", stim, g.const([0, enc.n_out], "shape", np.int64), hint="stim")
    vth = g.const(enc.vth, "enc_vth")
    layers = [(g.const(lin.weight.T, "w"), g.const(lif.alpha, "alpha"), g.const(lif.beta, "beta"),
               g.const(lif.threshold, "thr")) for lin, lif in spec.spiking_layers()]
    one = g.const(1.0, "one")
    v_enc: str | None = None
    cur: list[str | None] = [None] * len(layers)
    mem: list[str | None] = [None] * len(layers)
    count: str | None = None
    for _ in range(spec.timesteps):
        v_enc = stim if v_enc is None else g.op("Add", v_enc, stim)  # 0 + a == a exactly
        s = g.op("Cast", g.op("Greater", v_enc, vth), to=TensorProto.FLOAT, hint="enc_spk")
        v_enc = g.op("Sub", v_enc, g.op("Mul", s, vth))
        for k, (w, alpha, beta, thr) in enumerate(layers):
            x = g.op("MatMul", s, w)
            cur[k] = x if cur[k] is None else g.op("Add", g.op("Mul", alpha, cur[k]), x)
            mem[k] = cur[k] if mem[k] is None else g.op("Add", g.op("Mul", beta, mem[k]), cur[k])
            s = g.op("Cast", g.op("Greater", mem[k], thr), to=TensorProto.FLOAT, hint="spk")
            mem[k] = g.op("Mul", mem[k], g.op("Sub", one, s))
        count = s if count is None else g.op("Add", count, s)  # integer-valued, exact
    act_dim, pop = dec.weight.shape
    rate = g.op("Div", count, g.const(float(spec.timesteps), "T"))
    rate = g.op("Reshape", rate, g.const([0, act_dim, pop], "shape", np.int64))
    mean = g.op("ReduceSum", g.op("Mul", rate, g.const(dec.weight, "dec_w")), g.const([2], "axes", np.int64),
                keepdims=0)
    return g.op("Add", mean, g.const(dec.bias, "dec_b"))


def _onnx_ann(g: _GraphBuilder, spec: ActorSpec, obs: str) -> str:
    x = obs
    for n in spec.nodes[:-1]:
        if isinstance(n, Linear):
            x = g.op("MatMul", x, g.const(n.weight.T, "w"))
            if n.bias is not None:
                x = g.op("Add", x, g.const(n.bias, "b"))
        elif isinstance(n, ReLU):
            x = g.op("Relu", x)
        else:
            raise ValueError(f"ONNX export: unexpected {type(n).__name__} in an ANN spec")
    return x


def onnx_model_from_spec(spec: ActorSpec, opset: int = 17) -> Any:
    """ONNX model of ``spec.forward``: input ``obs`` (batch, obs_dim) float32, output ``action``
    (batch, act_dim) float32 in [-1, 1]; batch is dynamic.

    :return: an ``onnx.ModelProto`` that passes ``onnx.checker.check_model``
    """
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    pre = _onnx_snn(g, spec, "obs") if spec.kind == "snn" else _onnx_ann(g, spec, "obs")
    g.nodes.append(helper.make_node("Tanh", [pre], ["action"]))
    graph = helper.make_graph(
        g.nodes, f"aolo_{spec.kind}_actor",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", spec.obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", spec.act_dim])],
        initializer=g.inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    # The lowest IR version for the opset, so that older ONNX Runtimes load the model.
    model = helper.make_model(graph, opset_imports=opsets, producer_name="aolo",
                              ir_version=helper.find_min_ir_version_for(opsets))
    model.doc_string = f"aolo {spec.kind} actor, timesteps={spec.timesteps}"
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(policy: SACPolicy, path: str | Path, opset: int = 17) -> Path:
    """Write the policy's deterministic actor as ONNX (see :func:`onnx_model_from_spec`).

    :param policy: an SDRL or SAC policy
    :param path: output file
    :param opset: ONNX opset (ReduceSum with axes as an input needs >= 13)
    :return: the written path
    """
    import onnx
    if opset < 13:
        raise ValueError(f"export_onnx: opset must be >= 13, got {opset}")
    path = Path(path)
    onnx.save(onnx_model_from_spec(actor_spec_from_policy(policy), opset), path)
    return path
