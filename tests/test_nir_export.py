"""NIR: the hand-built graph round-trips exactly and rebuilds an actor with the same spikes."""

import numpy as np
import pytest

from aolo.export.nir_graph import (decay_to_time_constant_s, nir_to_spec, read_nir, spec_to_nir,
                                   time_constant_to_decay, write_nir)
from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, Tanh


def random_snn(seed: int = 0, obs_dim: int = 4, pop: int = 5, hidden: tuple[int, ...] = (16, 12), act_dim: int = 2,
               pop_out: int = 4) -> ActorSpec:
    rng = np.random.default_rng(seed)
    nodes: list = [PopulationEncoder(mean=rng.uniform(-1, 1, (obs_dim, pop)), std=np.full((obs_dim, pop), 0.4))]
    fan_in = obs_dim * pop
    for n in (*hidden, act_dim * pop_out):
        nodes += [Linear(weight=rng.normal(0, 1.5 / np.sqrt(fan_in), (n, fan_in))),
                  CubaLIF(alpha=np.full(n, 0.5), beta=np.full(n, 0.75), threshold=np.full(n, 0.5))]
        fan_in = n
    nodes += [PopulationDecoder(weight=rng.normal(0, 1, (act_dim, pop_out)), bias=rng.normal(0, 0.1, act_dim)), Tanh()]
    return ActorSpec(kind="snn", obs_dim=obs_dim, act_dim=act_dim, timesteps=5, nodes=nodes)


def test_decay_and_time_constant_convert_both_ways():
    assert decay_to_time_constant_s(np.array([0.5]), 1e-3)[0] == pytest.approx(2e-3)
    assert time_constant_to_decay(np.array([4e-3]), 1e-3)[0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="decay"):
        decay_to_time_constant_s(np.array([1.0]), 1e-3)


def test_graph_has_linear_and_cubalif_nodes_in_sequence():
    g = spec_to_nir(random_snn())
    assert [type(g.nodes[k]).__name__ for k in ("linear_0", "lif_0", "linear_1", "lif_1", "linear_2", "lif_2")] == \
        ["Linear", "CubaLIF"] * 3
    assert ("input", "linear_0") in g.edges and ("lif_2", "output") in g.edges


def test_nir_file_round_trip_is_exact(tmp_path):
    spec = random_snn(1)
    written = spec_to_nir(spec)
    back = read_nir(write_nir(spec, tmp_path / "actor.nir"))
    assert set(back.nodes) == set(written.nodes) and sorted(back.edges) == sorted(written.edges)
    for name, node in written.nodes.items():
        for field in ("weight", "tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak", "v_reset"):
            if hasattr(node, field):
                np.testing.assert_array_equal(np.asarray(getattr(back.nodes[name], field)), np.asarray(getattr(node, field)))


def test_actor_rebuilt_from_nir_spikes_like_the_original(tmp_path):
    spec = random_snn(2)
    rebuilt = nir_to_spec(read_nir(write_nir(spec, tmp_path / "actor.nir")))
    obs = np.random.default_rng(3).normal(0, 0.7, (500, spec.obs_dim)).astype(np.float32)
    a, sa = spec.forward_with_spikes(obs)
    b, sb = rebuilt.forward_with_spikes(obs)
    for x, y in zip(sa, sb):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert sum(s.mean() for s in sa[1:]) > 0.05  # the layers really spike


def test_ann_actor_is_refused():
    ann = ActorSpec(kind="ann", obs_dim=2, act_dim=2, nodes=[Linear(weight=np.ones((2, 2))), Tanh()])
    with pytest.raises(ValueError, match="spiking"):
        spec_to_nir(ann)


# --- what other tools load: snnTorch's own importer on a bundle's NIR file --------------------------
@pytest.fixture(scope="module")
def nir_bundle(tmp_path_factory):
    """A bundle with a NIR file and the scenario observations export records (``observations.npy``)."""
    from aolo.export.parity import scenario_observations
    from aolo.hw_profiles import RadioProfile, load_profile
    from aolo.runtime.bundle import ActionSpec, PolicyBundle, write_bundle
    from aolo.runtime.policy_io import OBS_DIM

    spec = random_snn(seed=6, obs_dim=OBS_DIM, pop=5, hidden=(24, 16), act_dim=2, pop_out=5)
    tmp = tmp_path_factory.mktemp("nir")
    np.save(tmp / "observations.npy", scenario_observations("tiny", 256, seed=31))
    out = write_bundle(tmp / "bundle", spec, {"nir": write_nir(spec, tmp / "actor.nir"),
                                              "observations": tmp / "observations.npy"},
                       algo="sdrl", action=ActionSpec.from_radio_profile(load_profile("macro", RadioProfile)))
    return PolicyBundle.load(out)


def test_snntorch_import_from_nir_reproduces_the_bundles_spikes_and_actions(nir_bundle):
    from aolo.export.nir_graph import snntorch_spike_trains
    from aolo.runtime.fixed_point import host_decode_action, host_encode_spikes

    spec = nir_bundle.spec
    obs = np.load(nir_bundle.file("observations"))
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    trains = snntorch_spike_trains(read_nir(nir_bundle.file("nir")), host_encode_spikes(spec, obs))
    assert len(trains) == len(ref_spikes) - 1
    for k, (got, want) in enumerate(zip(trains, ref_spikes[1:])):
        np.testing.assert_array_equal(got, want, err_msg=f"layer {k}")
        assert got.mean() > 0.01, f"layer {k} does not spike"  # a comparison of silent layers proves nothing
    np.testing.assert_allclose(host_decode_action(spec, trains[-1]), ref_action, atol=1e-5, rtol=0)


def test_snntorch_builds_synaptic_layers_with_the_specs_decays_and_thresholds(nir_bundle):
    import snntorch
    from snntorch.import_nir import import_from_nir

    module = import_from_nir(read_nir(nir_bundle.file("nir")))
    lifs = [m for m in module.modules() if isinstance(m, snntorch.Synaptic)]
    assert len(lifs) == len(nir_bundle.spec.spiking_layers())
    for lif, (_, ref) in zip(lifs, nir_bundle.spec.spiking_layers()):
        assert np.float32(lif.alpha.item()) == ref.alpha[0] and np.float32(lif.beta.item()) == ref.beta[0]
        assert np.float32(lif.threshold.item()) == ref.threshold[0]


def test_a_1_ms_graph_is_refused_by_snntorch_but_still_read_by_aolo(tmp_path):
    """Why the step is 1e-4 s: snnTorch's importer fixes dt = 1e-4 and asserts r == tau_mem / dt."""
    from snntorch.import_nir import import_from_nir

    spec = random_snn(7)
    with pytest.raises(AssertionError, match="r not supported in CubaLIF"):
        import_from_nir(spec_to_nir(spec, dt_s=1e-3))
    old = nir_to_spec(read_nir(write_nir(spec, tmp_path / "old.nir", dt_s=1e-3)))
    obs = np.random.default_rng(1).normal(0, 0.7, (100, spec.obs_dim)).astype(np.float32)
    for x, y in zip(old.forward_with_spikes(obs)[1], spec.forward_with_spikes(obs)[1]):
        np.testing.assert_array_equal(x, y)


def test_graph_metadata_describes_the_host_side_encoder_and_decoder(nir_bundle):
    md = read_nir(nir_bundle.file("nir")).metadata
    assert float(np.asarray(md["dt_s"])) == 1e-4
    for key in ("host_encoder", "host_decoder"):
        text = md[key].decode() if isinstance(md[key], bytes) else str(md[key])
        assert text.startswith("host-side")
    assert np.asarray(md["encoder_mean"]).shape == nir_bundle.spec.nodes[0].mean.shape


@pytest.mark.parametrize("kind", ["external_link", "soft_link", "external_storage"])
def test_nir_file_that_reaches_outside_itself_is_refused(tmp_path, kind):
    import h5py

    path = write_nir(random_snn(8), tmp_path / "actor.nir")
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    with h5py.File(path, "a") as f:
        if kind == "external_link":
            f["node/linear_0/extra"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
        elif kind == "soft_link":
            f["node/linear_0/extra"] = h5py.SoftLink("/node/linear_0/weight")
        else:
            f.create_dataset("node/linear_0/extra", shape=(8,), dtype="f8", external=[(str(tmp_path / "secret.bin"), 0, 64)])
    with pytest.raises(ValueError, match=r"actor.nir: .*'/node/linear_0/extra'"):
        read_nir(path)
