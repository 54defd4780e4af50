"""The persistent Lava network against the numpy references (float and bit-accurate fixed point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aolo.runtime.actor_spec import ActorSpec
from aolo.runtime.fixed_point import FixedPointActor, FixedPointLayer

from test_fixed_point import observations, random_spiking_spec

pytest.importorskip("lava", reason="lava-nc is not installed (the 'aolo[lava]' extra)")

from aolo.runtime.backends.lava import LavaActorNetwork  # noqa: E402

pytestmark = pytest.mark.xdist_group("test_lava_backend")  # one xdist worker: its module fixtures build two Lava networks once

N_DECISIONS = 200


def _children() -> set[int]:
    """Pids of this process's live children (Lava runs each process model in a forked child)."""
    me = str(os.getpid())
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


@pytest.fixture(scope="module")
def spec() -> ActorSpec:
    return random_spiking_spec()


@pytest.fixture(scope="module")
def float_net(spec):
    with LavaActorNetwork(spec, "float", record_hidden=True) as net:
        yield net


@pytest.fixture(scope="module")
def fixed_net(spec):
    with LavaActorNetwork(spec, "fixed", record_hidden=True) as net:
        yield net


def test_lava_float_spikes_equal_numpy_reference_exactly(spec, float_net):
    obs = observations(N_DECISIONS)
    processes_before = float_net.processes
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    action, spikes = float_net.decide(obs)  # 200 decisions, one after the other, one network
    assert len(spikes) == len(ref_spikes) == 4
    for k, (got, ref) in enumerate(zip(spikes, ref_spikes)):
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref, err_msg=f"population {k}")
        assert 0.05 < ref.mean() < 0.4  # every layer is active, so equality is informative
    np.testing.assert_allclose(action, ref_action, atol=1e-5, rtol=0)
    # Same processes, one build: state was reset between decisions without rebuilding.
    assert float_net.build_count == 1
    assert all(a is b for a, b in zip(float_net.processes, processes_before))


def test_lava_fixed_point_equals_bit_accurate_numpy_simulation(fixed_net):
    obs = observations(N_DECISIONS, seed=2)
    ref_action, ref_spikes = fixed_net.fixed_point.forward_with_spikes(obs)
    action, spikes = fixed_net.decide(obs)
    for k, (got, ref) in enumerate(zip(spikes, ref_spikes)):
        np.testing.assert_array_equal(got, ref, err_msg=f"population {k}")
    np.testing.assert_array_equal(action, ref_action)
    assert fixed_net.build_count == 1


def test_single_observation_decisions_match_and_do_not_rebuild(spec, float_net):
    obs = observations(3, seed=3)
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    processes = float_net.processes
    steps_before = float_net.timesteps_run
    for i in range(3):
        action, spikes = float_net.decide(obs[i])
        assert action.shape == (2,)
        np.testing.assert_allclose(action, ref_action[i], atol=1e-5, rtol=0)
        for got, ref in zip(spikes, ref_spikes):
            np.testing.assert_array_equal(got, ref[:, i])
    # Each decision is exactly T + n_layers Lava steps (one per Dense delay), on the same graph.
    assert float_net.timesteps_run - steps_before == 3 * (spec.timesteps + 3) == 3 * float_net.steps_per_decision
    assert float_net.processes == processes and float_net.build_count == 1


def _extreme_fixed_point(spec: ActorSpec) -> FixedPointActor:
    """Hand-set integer layers that make u wrap, v saturate and a negative weight_exp floor."""
    rng = np.random.default_rng(5)
    layers = []
    # (weight_exp, vth_raw range): layer 1 overflows, layer 2 floors its sums, layer 3 is moderate.
    settings = ((7, (2000, 131072)), (-3, (20, 400)), (2, (1000, 8000)))
    for k, ((lin, _), (exp, vth_range)) in enumerate(zip(spec.spiking_layers(), settings)):
        n_out, n_in = lin.weight.shape
        w = rng.integers(-128, 128, (n_out, n_in)) if k else rng.integers(40, 128, (n_out, n_in))
        layers.append(FixedPointLayer(weight_raw=w.astype(np.int8), weight_exp=exp,
                                      du_q12=rng.integers(0, 400, n_out), dv_q12=rng.integers(0, 400, n_out),
                                      vth_raw=rng.integers(*vth_range, n_out), weight_step=1.0))
    return FixedPointActor(spec=spec, layers=layers)


def test_lava_fixed_point_matches_simulation_through_wrap_and_saturation(spec):
    fixed = _extreme_fixed_point(spec)
    obs = observations(40, seed=4)
    ref_action, ref_spikes = fixed.forward_with_spikes(obs)
    # The first layer's all-positive input drives u past 2^23 into Lava's wrap branch (which
    # subtracts 2^24 once, so u either turns negative or still lies above 2^23).
    first = fixed.layers[0]
    u = np.zeros((obs.shape[0], first.n_out), np.int32)
    v = np.zeros_like(u)
    wrapped = False
    for t in range(spec.timesteps):
        first.lif_step(u, v, first.dense_activation(ref_spikes[0][t]))
        wrapped |= bool((u < 0).any() or (u > 2**23).any())
    assert wrapped
    assert all(0.02 < train.mean() < 0.98 for train in ref_spikes)  # no layer is silent or saturated
    with LavaActorNetwork(spec, "fixed", record_hidden=True, fixed_point=fixed) as net:
        action, spikes = net.decide(obs)
    for k, (got, ref) in enumerate(zip(spikes, ref_spikes)):
        np.testing.assert_array_equal(got, ref, err_msg=f"population {k}")
    np.testing.assert_array_equal(action, ref_action)


def test_output_only_network_returns_none_for_hidden_layers(spec):
    obs = observations(5, seed=6)
    ref_action, ref_spikes = spec.forward_with_spikes(obs)
    with LavaActorNetwork(spec, "float") as net:
        action, spikes = net.decide(obs)
        assert len(net.processes) == 1 + 2 * 3 + 1  # injector, Dense+LIF per layer, one extractor
    assert spikes[1] is None and spikes[2] is None
    np.testing.assert_array_equal(spikes[0], ref_spikes[0])
    np.testing.assert_array_equal(spikes[3], ref_spikes[3])
    np.testing.assert_allclose(action, ref_action, atol=1e-5, rtol=0)


def test_close_stops_lava_processes_and_is_idempotent(spec):
    before = _children()
    net = LavaActorNetwork(spec, "fixed")
    started = _children() - before
    assert len(started) >= len(net.processes)  # one OS process per Lava process (plus the runtime's)
    net.decide(observations(2))
    net.close()
    assert net.closed
    assert not (_children() & started)
    net.close()
    with pytest.raises(RuntimeError, match="closed"):
        net.decide(observations(1)[0])


def test_context_manager_closes_the_network(spec):
    with LavaActorNetwork(spec, "float") as net:
        net.decide(observations(1)[0])
    assert net.closed


def test_bad_arguments_are_rejected(spec, float_net):
    with pytest.raises(ValueError, match="precision"):
        LavaActorNetwork(spec, "double")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="obs"):
        float_net.decide(np.zeros(7, np.float32))


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_backend_does_not_import_lava():
    r = _run_python("import sys, aolo.runtime.backends.lava\n"
                    "print(any(m == 'lava' or m.startswith('lava.') for m in sys.modules))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_missing_lava_raises_an_error_naming_the_extra():
    r = _run_python(
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lava' or name.startswith('lava.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'lava'\")\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from aolo.runtime.actor_spec import *\n"
        "from aolo.runtime.backends.lava import LavaActorNetwork\n"
        "spec = ActorSpec('snn', 1, 1, [PopulationEncoder(np.zeros((1, 2)), np.ones((1, 2))),\n"
        "    Linear(np.ones((2, 2))), CubaLIF(np.full(2, .5), np.full(2, .5), np.ones(2)),\n"
        "    PopulationDecoder(np.ones((1, 2)), np.zeros(1)), Tanh()])\n"
        "try:\n"
        "    LavaActorNetwork(spec)\n"
        "except ModuleNotFoundError as e:\n"
        "    print(e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "aolo[lava]" in r.stdout
