"""The fixed-point actor as a lava-dl netx HDF5 file, and a run of that file through netx itself.

netx (``lava.lib.dl.netx``, lava-dl 0.6.0) is how a Loihi 2 user puts a trained network on the
chip: ``netx.hdf5.Network(net_config=path)`` builds Lava processes from the file, and the same
processes run on ``Loihi2SimCfg`` (CPU) or, through Intel's Lava-Loihi extension, on the chip.
The file holds only the spiking core; the population encoder and decoder stay on the host
(``aolo.runtime.fixed_point.host_encode_spikes`` / ``host_decode_action``), as in PopSAN, which
ran them on Loihi's embedded x86 cores.

File layout, exactly what netx's reader (``lava/lib/dl/netx/hdf5.py``, ``Network._create`` and
``create_dense``; ``utils.NetDict``) reads, in the layout lava-dl's own exporter
(``slayer.block.base.AbstractDense.export_hdf5``) writes::

    layer/<k>/type            b"dense"  (fixed-length ASCII, shape (1,))
    layer/<k>/shape           [n_out]
    layer/<k>/inFeatures      n_in      (written by slayer; netx does not read it)
    layer/<k>/outFeatures     n_out
    layer/<k>/weight          (n_out, n_in) integers: the Dense's effective weights, 2 * weight_raw
    layer/<k>/neuron/type     "CUBA"
    layer/<k>/neuron/iDecay   du_q12 + 1  (netx hands Lava's LIF du = iDecay - 1)
    layer/<k>/neuron/vDecay   dv_q12      (LIF dv = vDecay)
    layer/<k>/neuron/vThMant  vth_raw     (LIF vth = vThMant, compared as vth << 6)
    layer/<k>/neuron/refDelay 1           (slayer's CUBA writes it; Lava's LIF has no refractory state)
    layer/<k>/neuron/gradedSpike False
    aolo/...                  host-side encoder and decoder, T, reset schedule, weight steps
                              (netx reads only ``layer``)

Why the weights are written as they are: netx passes the file's integers through its
``optimize_weight_bits``, which picks ``weight_exp`` and ``num_weight_bits`` so that Lava's
bit-accurate Dense computes exactly ``sum_j weight[i, j] * s_j`` with no further shift. That is
aolo's Dense when its exponent is 0 (``runtime/fixed_point.py``: ``dense_weights = 2 * weight_raw``,
even numbers in [-256, 254]), which is why aolo quantises with exponent 0 by default; a layer with
another exponent has no netx form and is refused here, naming the layer. Scalars are written where
a layer's du, dv or vth is uniform (as slayer does), arrays otherwise (Lava broadcasts both).

Decisions: aolo's Lava network (``runtime/backends/lava.py``) runs ``P = T + n_layers`` steps per
decision and resets layer k at step k + 2 of each window (``LIFReset``); netx's
``Network(reset_interval=P, reset_offset=1)`` gives its layer k the same schedule (netx adds 1 for
hardware time starting at 1, then 1 per layer). With that, netx's network and aolo's are the same
Lava processes with the same integers, and their spikes are equal bit for bit.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from aolo.runtime.actor_spec import ActorSpec, PopulationDecoder, PopulationEncoder
from aolo.runtime.fixed_point import (CURRENT_DECAY_OFFSET_Q12, MIXED_SIGN_WEIGHT_FACTOR, FixedPointActor,
                                      FixedPointLayer)

__all__ = ["NETX_EXTRA_HINT", "NETX_REFRACTORY_DELAY", "netx_reset_schedule", "read_netx", "run_netx", "write_netx"]

NETX_EXTRA_HINT = ("the netx target needs lava-dl and h5py: `make install` installs them "
                   "(pip install --no-deps lava-dl==0.6.0 torchvision==0.29.1 'opencv-python-headless<4.11' h5py)")
NETX_REFRACTORY_DELAY = 1
"""``refDelay`` as slayer's CUBA neuron writes it (one step); netx and Lava's LIF do not read it."""
_TYPE_DTYPE = "S10"  # slayer writes the layer type as a fixed-length ASCII string of shape (1,)


def netx_reset_schedule(spec: ActorSpec) -> tuple[int, int]:
    """``(reset_interval, reset_offset)`` to hand ``netx.hdf5.Network`` so that its layer k resets
    at Lava step k + 2 of every ``P = T + n_layers``-step decision, as aolo's Lava network does."""
    return spec.timesteps + len(spec.spiking_layers()), 1


def _scalar_or_array(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values[:1].reshape(()) if values.size and np.all(values == values[0]) else values


def _netx_weights(k: int, layer: FixedPointLayer) -> np.ndarray:
    """The layer's Dense weights as netx must read them, or ValueError naming what netx cannot hold."""
    if layer.weight_exp != 0:
        raise ValueError(f"netx: layer {k}: weight_exp is {layer.weight_exp}; netx derives the Dense exponent "
                         "from the weights, so only exponent 0 has a netx form (quantize_actor(spec, weight_exp=0))")
    weight = layer.dense_weights
    if not weight.any():
        raise ValueError(f"netx: layer {k}: every weight is 0 (netx's optimize_weight_bits divides by the largest)")
    if weight.max() <= 0 and weight.min() == -256:
        # netx's reader then treats the layer as inhibitory, and Lava's Dense clips -256 to -255.
        raise ValueError(f"netx: layer {k}: all weights <= 0 with one at -256, which netx's inhibitory "
                         "synapse clips to -255")
    return weight


def write_netx(fixed: FixedPointActor, path: str | Path) -> Path:
    """Write the fixed-point actor's spiking layers as a netx HDF5 file (layout in the module docstring).

    :param fixed: the quantised actor (every layer with ``weight_exp`` 0)
    :param path: the ``.h5`` file to write
    :return: the path
    :raises ValueError: a layer netx cannot express, named
    """
    import h5py

    spec = fixed.spec
    enc, dec = spec.nodes[0], spec.nodes[-2]
    assert isinstance(enc, PopulationEncoder) and isinstance(dec, PopulationDecoder)
    weights = [_netx_weights(k, layer) for k, layer in enumerate(fixed.layers)]
    reset_interval, reset_offset = netx_reset_schedule(spec)
    path = Path(path)
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        for k, (layer, weight) in enumerate(zip(fixed.layers, weights)):
            g = layers.create_group(str(k))
            g.create_dataset("type", (1,), _TYPE_DTYPE, [b"dense"])
            g.create_dataset("shape", data=np.array([layer.n_out]))
            g.create_dataset("inFeatures", data=layer.n_in)
            g.create_dataset("outFeatures", data=layer.n_out)
            g.create_dataset("weight", data=weight.astype(np.int16))
            n = g.create_group("neuron")
            n.create_dataset("type", data="CUBA")
            n.create_dataset("iDecay", data=_scalar_or_array(layer.du_q12 + CURRENT_DECAY_OFFSET_Q12))
            n.create_dataset("vDecay", data=_scalar_or_array(layer.dv_q12))
            n.create_dataset("vThMant", data=_scalar_or_array(layer.vth_raw))
            n.create_dataset("refDelay", data=NETX_REFRACTORY_DELAY)
            n.create_dataset("gradedSpike", data=False)
        host = f.create_group("aolo")
        host.attrs["about"] = ("aolo spiking actor: the host encodes observations into the first layer's input "
                               "spikes and decodes the last layer's spike rates (docs/loihi.md)")
        host.attrs["timesteps"] = spec.timesteps
        host.attrs["reset_interval"] = reset_interval
        host.attrs["reset_offset"] = reset_offset
        host.create_dataset("encoder_mean", data=enc.mean)
        host.create_dataset("encoder_std", data=enc.std)
        host.attrs["encoder_vth"] = float(enc.vth)
        host.create_dataset("decoder_weight", data=dec.weight)
        host.create_dataset("decoder_bias", data=dec.bias)
        host.create_dataset("weight_step", data=np.array([layer.weight_step for layer in fixed.layers]))
    return path


def _as_neurons(value: np.ndarray, n: int, where: str) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim == 0:
        return np.full(n, a)
    if a.shape != (n,):
        raise ValueError(f"{where}: shape {a.shape}, expected () or ({n},)")
    return a


def read_netx(spec: ActorSpec, path: str | Path) -> FixedPointActor:
    """The fixed-point actor a netx file written by :func:`write_netx` holds, checked against ``spec``.

    :raises ValueError: a file that reaches outside itself, is not of this layout, or does not match
        ``spec``'s layers (naming the dataset)
    """
    import h5py

    from .hdf5_check import check_self_contained_hdf5

    path = Path(path)
    check_self_contained_hdf5(path)
    pairs = spec.spiking_layers()
    layers = []
    with h5py.File(path, "r") as f:
        try:
            steps = np.asarray(f["aolo/weight_step"][()], np.float64)
            if len(f["layer"]) != len(pairs) or steps.shape != (len(pairs),):
                raise ValueError(f"{path}: field 'layer': {len(f['layer'])} layers, the actor has {len(pairs)}")
            for k, (lin, _) in enumerate(pairs):
                g = f[f"layer/{k}"]
                where = f"{path}: field 'layer/{k}"
                if g["type"][()][0] != b"dense" or g["neuron/type"][()] != b"CUBA":
                    raise ValueError(f"{where}/type': a dense layer of CUBA neurons expected")
                weight = np.asarray(g["weight"][()])
                if weight.shape != lin.weight.shape or np.any(weight % MIXED_SIGN_WEIGHT_FACTOR):
                    raise ValueError(f"{where}/weight': {weight.shape} even integers expected, as {lin.weight.shape}")
                n = weight.shape[0]
                try:
                    layers.append(FixedPointLayer(
                        weight_raw=weight // MIXED_SIGN_WEIGHT_FACTOR, weight_exp=0,
                        du_q12=_as_neurons(g["neuron/iDecay"][()], n, f"{where}/neuron/iDecay'") - CURRENT_DECAY_OFFSET_Q12,
                        dv_q12=_as_neurons(g["neuron/vDecay"][()], n, f"{where}/neuron/vDecay'"),
                        vth_raw=_as_neurons(g["neuron/vThMant"][()], n, f"{where}/neuron/vThMant'"),
                        weight_step=float(steps[k])))
                except ValueError as e:
                    raise ValueError(f"{where}': {e}") from None
        except KeyError as e:
            raise ValueError(f"{path}: missing {e.args[0] if e.args else 'dataset'} (not a netx file written by aolo)") from None
    return FixedPointActor(spec=spec, layers=layers)


def run_netx(path: str | Path, spec: ActorSpec, input_spikes: np.ndarray) -> list[np.ndarray]:
    """Build ``netx.hdf5.Network`` from the file and run it on Lava's ``Loihi2SimCfg`` with the
    bit-accurate (``fixed_pt``) models, one decision after another from the reset state.

    The encoder's spikes go in through an ``Injector`` and every layer's spikes come out through
    an ``Extractor`` (Lava's host I/O processes); one blocking run covers all decisions. Layer k's
    spikes for reference step t of a decision are read at its step k + 1 + t (one Dense delay per
    layer, as in aolo's Lava network).

    :param path: a netx file (checked to be self-contained first)
    :param spec: the actor it came from (T, layer widths)
    :param input_spikes: (T, batch, n_in) {0, 1}, the host encoder's spikes
    :return: per spiking layer, (T, batch, n_k) float32 {0, 1}
    """
    from .hdf5_check import check_self_contained_hdf5

    check_self_contained_hdf5(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # lava-dl prints a notice about an optional dataset toolbox
            from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel
    except ImportError as exc:
        raise ModuleNotFoundError(NETX_EXTRA_HINT, name="lava.lib.dl") from exc
    timesteps, batch, n_in = input_spikes.shape
    reset_interval, reset_offset = netx_reset_schedule(spec)
    steps = reset_interval  # P = T + n_layers per decision
    n_steps = steps * batch
    net = netx.hdf5.Network(net_config=str(path), reset_interval=reset_interval, reset_offset=reset_offset)
    if len(net.layers) != len(spec.spiking_layers()) or net.inp.shape != (n_in,):
        raise ValueError(f"{path}: netx built {len(net.layers)} layers of input {net.inp.shape}, "
                         f"the actor has {len(spec.spiking_layers())} of input ({n_in},)")
    injector = Injector(shape=(n_in,), buffer_size=n_steps)
    injector.out_port.connect(net.inp)
    extractors = []
    for k, layer in enumerate(net.layers):
        extractor = Extractor(shape=layer.out.shape, buffer_size=n_steps)
        (net.out if k == len(net.layers) - 1 else layer.out).connect(extractor.in_port)
        extractors.append(extractor)
    run_cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={
        Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel})
    frames = np.zeros((batch, steps, n_in))
    frames[:, :timesteps] = np.transpose(input_spikes, (1, 0, 2))
    net.create_runtime(run_cfg=run_cfg)
    try:
        for frame in frames.reshape(n_steps, n_in):
            injector.send(frame)
        net.run(condition=RunSteps(num_steps=n_steps, blocking=True), run_cfg=run_cfg)
        rows = [np.stack([e.receive() for _ in range(n_steps)]).reshape(batch, steps, -1) for e in extractors]
    finally:
        net.stop()
    return [np.transpose(r[:, k + 1:k + 1 + timesteps], (1, 0, 2)).astype(np.float32) for k, r in enumerate(rows)]
