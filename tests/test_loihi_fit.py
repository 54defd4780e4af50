"""Loihi 2 fit check: resource use per layer and one line naming the layer, limit and value when
a network does not fit."""

from dataclasses import replace

import numpy as np
import pytest

from aolo.hw_profiles import ActorHardwareProfile, ProfileError, load_profile, load_profile_file
from aolo.hw_profiles.registry import embedded_profiles
from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, Tanh
from aolo.runtime.fixed_point import quantize_actor
from aolo.runtime.loihi_fit import LoihiFitError, LoihiLimits, check_loihi_fit, loihi_resources


def snn(obs_dim: int = 4, pop: int = 5, hidden: tuple[int, ...] = (16, 12), out: int = 8, seed: int = 0) -> ActorSpec:
    rng = np.random.default_rng(seed)
    nodes: list = [PopulationEncoder(mean=rng.uniform(-1, 1, (obs_dim, pop)), std=np.full((obs_dim, pop), 0.4))]
    fan_in = obs_dim * pop
    for n in (*hidden, out):
        nodes += [Linear(weight=rng.normal(0, 1 / np.sqrt(fan_in), (n, fan_in))),
                  CubaLIF(alpha=np.full(n, 0.5), beta=np.full(n, 0.75), threshold=np.full(n, 0.5))]
        fan_in = n
    nodes += [PopulationDecoder(weight=np.ones((2, out // 2)), bias=np.zeros(2)), Tanh()]
    return ActorSpec(kind="snn", obs_dim=obs_dim, act_dim=2, timesteps=5, nodes=nodes)


@pytest.fixture(scope="module")
def limits() -> LoihiLimits:
    return LoihiLimits.load("loihi2")


def test_loihi2_limits_come_from_the_profile_with_sources(limits):
    profile = load_profile("loihi2", ActorHardwareProfile)
    assert limits.cores_per_chip == 128 and limits.neurons_per_chip == 1_000_000
    assert limits.memory_per_core_bits == 192 * 1024 * 8  # 192 KiB
    assert (limits.weight_bits, limits.threshold_bits, limits.state_bits) == (8, 17, 24)
    for name in ActorHardwareProfile.CAPACITY_FIELDS:
        q = getattr(profile, name)
        assert len(q.source) > 20 and q.kind in ("specification", "derived", "estimate"), name
    assert profile.input_axons_per_core.kind == "estimate"  # Loihi 1's figure, no Loihi 2 one published


def test_small_actor_fits_one_core_per_layer_with_hand_worked_use(limits):
    resources = check_loihi_fit(quantize_actor(snn()), limits)
    assert resources.fits and resources.cores == 3
    assert [layer.cores for layer in resources.layers] == [1, 1, 1]
    first = resources.layers[0]
    # 16 neurons of 20 inputs: 320 weights; memory 16 x (20 x 8 + 2 x 24) = 3,328 bits
    assert (first.n_in, first.neurons, first.synapses, first.synapses_per_core) == (20, 16, 320, 320)
    assert first.memory_per_core_bits == 16 * (20 * 8 + 48)
    assert first.fan_out == 12 and resources.layers[-1].fan_out == 0
    assert first.weight_bits == 8 and first.weight_exp == 0 and 1 <= first.threshold_bits <= 17
    assert resources.synapses == 20 * 16 + 16 * 12 + 12 * 8 and resources.neurons == 36
    d = resources.to_dict()
    assert d["fits"] is True and d["violations"] == [] and d["chip"].startswith("loihi2 ")


def test_layer_too_large_for_one_core_is_named_with_its_limit_and_value(limits):
    # 50 observation inputs x 100 encoder neurons = 5,000 inputs per neuron: every core of the
    # layer would need 5,000 input axons, and one core has 4,096, so no split can place it.
    spec = snn(obs_dim=50, pop=100, hidden=(8,), out=4)
    with pytest.raises(LoihiFitError) as err:
        check_loihi_fit(quantize_actor(spec), limits)
    assert str(err.value) == ("loihi2: layer 0 (linear_0 -> lif_0): fan-in 5000 inputs exceeds "
                              "input_axons_per_core 4096")
    assert "\n" not in str(err.value)


def test_layer_is_split_over_cores_by_memory_and_the_chip_count_is_checked(limits):
    # 208 bits per neuron of layer 0 (20 x 8 + 48): 1,000 bits hold 4 neurons, so 16 neurons take
    # 4 cores; layer 1 (16 x 8 + 48 = 176 bits) holds 5 per core: 12 neurons take 3 cores (4 each);
    # layer 2 (12 x 8 + 48 = 144): 6 per core, 8 neurons take 2 cores (4 each). 9 cores in all.
    small = replace(limits, memory_per_core_bits=1000, cores_per_chip=8)
    resources = loihi_resources(quantize_actor(snn()), small)
    assert [layer.cores for layer in resources.layers] == [4, 3, 2]
    assert [layer.neurons_per_core for layer in resources.layers] == [4, 4, 4]
    # each of layer 0's neurons sends to the 3 cores of layer 1: 4 x 3 routes per core
    assert resources.layers[0].output_axons_per_core == 12
    assert resources.violations == ["loihi2: network: needs 9 cores, more than cores_per_chip 8"]
    with pytest.raises(LoihiFitError, match="needs 9 cores, more than cores_per_chip 8"):
        check_loihi_fit(quantize_actor(snn()), small)


def test_every_broken_limit_is_listed_in_order(limits):
    tight = replace(limits, threshold_bits=4, output_axons_per_core=10)
    violations = loihi_resources(quantize_actor(snn()), tight).violations
    assert violations[0] == "loihi2: layer 0 (linear_0 -> lif_0): fan-out needs 16 output routes per core, " \
                            "more than output_axons_per_core 10"
    assert any(v.startswith("loihi2: layer 0 (linear_0 -> lif_0): threshold needs ") and
               v.endswith("bits, more than threshold_bits 4") for v in violations)


def test_profile_with_part_of_a_chips_capacity_is_refused(tmp_path):
    loihi2 = next(e.path for e in embedded_profiles() if e.name == "loihi2")
    path = tmp_path / "half.toml"
    path.write_text(loihi2.read_text().split("[state_bits]")[0])  # every capacity field but the last
    with pytest.raises(ProfileError, match="'state_bits': a chip's capacity is given whole or not at all"):
        load_profile_file(path)
    assert load_profile("loihi2", ActorHardwareProfile).has_capacity
    assert not load_profile("loihi1", ActorHardwareProfile).has_capacity
    with pytest.raises(ValueError, match="no chip capacity"):
        LoihiLimits.load("loihi1")
