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
