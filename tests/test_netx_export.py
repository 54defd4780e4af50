"""lava-dl netx: the bundle's netx file loads in ``netx.hdf5.Network`` and, run on Lava's
``Loihi2SimCfg`` with the bit-accurate models, spikes exactly like aolo's own Lava fixed-point
network on the bundle's recorded observations."""

import h5py
import numpy as np
import pytest

from aolo.export.netx import netx_reset_schedule, read_netx, run_netx, write_netx
from aolo.hw_profiles import RadioProfile, load_profile
from aolo.runtime.bundle import ActionSpec, PolicyBundle, write_bundle
from aolo.runtime.fixed_point import LAYER_ARRAYS, host_decode_action, host_encode_spikes, quantize_actor, save_fixed_point
from aolo.runtime.policy_io import OBS_DIM
from test_nir_export import random_snn

N_OBS = 12
"""Observations run through both Lava networks (each decision is T + n_layers = 8 Lava steps)."""


@pytest.fixture(scope="module")
def netx_bundle(tmp_path_factory) -> PolicyBundle:
    """A bundle with the Lava integers, the netx file of the same integers and recorded scenario observations."""
    from aolo.export.parity import scenario_observations

    spec = random_snn(seed=6, obs_dim=OBS_DIM, pop=5, hidden=(24, 16), act_dim=2, pop_out=5)
    fixed = quantize_actor(spec)
    tmp = tmp_path_factory.mktemp("netx")
    np.save(tmp / "observations.npy", scenario_observations("tiny", 64, seed=31))
    out = write_bundle(tmp / "bundle", spec, {"lava_fixed": save_fixed_point(fixed, tmp / "lava_fixed.npz"),
                                              "netx": write_netx(fixed, tmp / "actor_netx.h5"),
                                              "observations": tmp / "observations.npy"},
                       algo="sdrl", action=ActionSpec.from_radio_profile(load_profile("macro", RadioProfile)))
    return PolicyBundle.load(out)


@pytest.fixture(scope="module")
def both_runs(netx_bundle):
    """netx's network and aolo's Lava fixed-point network on the same recorded observations, run once."""
    from aolo.runtime.backends.lava import LavaActorNetwork
    from aolo.runtime.fixed_point import load_fixed_point

    spec = netx_bundle.spec
    obs = np.load(netx_bundle.file("observations"))[:N_OBS]
    netx_spikes = run_netx(netx_bundle.file("netx"), spec, host_encode_spikes(spec, obs))
    fixed = load_fixed_point(spec, netx_bundle.file("lava_fixed"))
    with LavaActorNetwork(spec, "fixed", record_hidden=True, fixed_point=fixed) as net:
        aolo_action, aolo_spikes = net.decide(obs)
    return obs, netx_spikes, aolo_action, aolo_spikes


def test_netx_network_spikes_exactly_like_aolos_lava_fixed_point_network(netx_bundle, both_runs):
    obs, netx_spikes, aolo_action, aolo_spikes = both_runs
    assert len(netx_spikes) == len(aolo_spikes) - 1 == 3
    for k, (got, want) in enumerate(zip(netx_spikes, aolo_spikes[1:])):
        assert got.shape == (netx_bundle.spec.timesteps, N_OBS, want.shape[-1])
        np.testing.assert_array_equal(got, want, err_msg=f"layer {k}")
        assert got.mean() > 0.01, f"layer {k} does not spike"  # silent layers would agree trivially
    np.testing.assert_array_equal(host_decode_action(netx_bundle.spec, netx_spikes[-1]), aolo_action)


def test_netx_reads_the_files_neurons_as_lavas_lif_parameters(netx_bundle):
    """What netx's reader makes of the file: LIF du = iDecay - 1, dv = vDecay, vth = vThMant."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.lib.dl.netx.utils import NetDict, optimize_weight_bits

    from aolo.runtime.fixed_point import load_fixed_point

    fixed = load_fixed_point(netx_bundle.spec, netx_bundle.file("lava_fixed"))
    layers = NetDict(str(netx_bundle.file("netx")))["layer"]
    assert len(layers) == len(fixed.layers)
    for k, layer in enumerate(fixed.layers):
        config = layers[k]
        assert config["type"] == "dense" and config["neuron"]["type"] == "CUBA"
        params = Network.get_neuron_params(config["neuron"])
        np.testing.assert_array_equal(np.broadcast_to(params["du"], (layer.n_out,)), layer.du_q12)
        np.testing.assert_array_equal(np.broadcast_to(params["dv"], (layer.n_out,)), layer.dv_q12)
        np.testing.assert_array_equal(np.broadcast_to(params["vth"], (layer.n_out,)), layer.vth_raw)
        # netx's weight optimisation undoes its own shift: the Dense sums the file's integers exactly
        weight, _, weight_exp, _ = optimize_weight_bits(config["weight"])
        np.testing.assert_array_equal(weight >> -weight_exp if weight_exp < 0 else weight, layer.dense_weights)
    assert netx_reset_schedule(netx_bundle.spec) == (netx_bundle.spec.timesteps + 3, 1)


def test_read_netx_returns_the_integers_written(netx_bundle):
    from aolo.runtime.fixed_point import load_fixed_point

    written = load_fixed_point(netx_bundle.spec, netx_bundle.file("lava_fixed"))
    back = read_netx(netx_bundle.spec, netx_bundle.file("netx"))
    for a, b in zip(written.layers, back.layers):
        for name in LAYER_ARRAYS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.weight_exp == b.weight_exp == 0 and a.weight_step == b.weight_step


def test_layer_with_a_weight_exponent_netx_cannot_express_is_refused(tmp_path):
    spec = random_snn(seed=6, obs_dim=OBS_DIM, pop=5, hidden=(24, 16), act_dim=2, pop_out=5)
    searched = quantize_actor(spec, weight_exp=None)  # the exponent search picks e != 0 here
    k = next(i for i, layer in enumerate(searched.layers) if layer.weight_exp != 0)
    with pytest.raises(ValueError, match=f"netx: layer {k}: weight_exp is {searched.layers[k].weight_exp}"):
        write_netx(searched, tmp_path / "actor_netx.h5")


def test_netx_file_that_reaches_outside_itself_is_refused(netx_bundle, tmp_path):
    path = tmp_path / "actor_netx.h5"
    path.write_bytes(netx_bundle.file("netx").read_bytes())
    with h5py.File(path, "a") as f:
        f["layer/1/neuron/extra"] = h5py.ExternalLink("/etc/hostname", "/")
    with pytest.raises(ValueError, match=r"actor_netx.h5: object '/layer/1/neuron/extra' is a ExternalLink"):
        read_netx(netx_bundle.spec, path)
    with pytest.raises(ValueError, match="ExternalLink"):
        run_netx(path, netx_bundle.spec, np.zeros((5, 1, netx_bundle.spec.nodes[0].n_out), np.float32))


def test_netx_file_of_another_actor_is_refused_naming_the_field(netx_bundle):
    other = random_snn(seed=6, obs_dim=OBS_DIM, pop=5, hidden=(20, 16), act_dim=2, pop_out=5)
    with pytest.raises(ValueError, match=r"field 'layer/0/weight'"):
        read_netx(other, netx_bundle.file("netx"))


def test_verify_reports_netx_parity_and_the_resource_use(netx_bundle):
    from typer.testing import CliRunner

    from aolo.cli import app

    res = CliRunner().invoke(app, ["verify", str(netx_bundle.path), "--n-obs", "64", "--n-lava-obs", "4",
                                   "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert "netx" in res.output and "aolo Lava fixed-point network" in res.output
    assert "Loihi 2 resource use (the bundle records none)" in res.output and "fits" in res.output


def test_netx_file_with_a_decay_out_of_range_is_refused_naming_the_dataset(netx_bundle, tmp_path):
    path = tmp_path / "actor_netx.h5"
    path.write_bytes(netx_bundle.file("netx").read_bytes())
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/iDecay"]
        f["layer/2/neuron/iDecay"] = 0  # du = -1: below Lava's 0..4095
    with pytest.raises(ValueError, match=r"field 'layer/2': .*du_q12 must be integers in 0..4095"):
        read_netx(netx_bundle.spec, path)
