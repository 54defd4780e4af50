"""Actor energy: operation counts equal hand counts, and pricing equals a hand computation."""

import numpy as np
import pytest

from aolo.hw_profiles import ActorHardwareProfile, load_profile
from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, ReLU, Tanh
from aolo.runtime.energy import applicable, count_ops, price


def small_snn() -> ActorSpec:
    # 1 obs dim x 2 encoder neurons -> 3 LIF -> 4 LIF (2 actions x 2) -> decoder
    return ActorSpec(kind="snn", obs_dim=1, act_dim=2, timesteps=2, nodes=[
        PopulationEncoder(mean=np.zeros((1, 2)), std=np.ones((1, 2))),
        Linear(weight=np.ones((3, 2))), CubaLIF(alpha=np.full(3, 0.5), beta=np.full(3, 0.5), threshold=np.full(3, 1.0)),
        Linear(weight=np.ones((4, 3))), CubaLIF(alpha=np.full(4, 0.5), beta=np.full(4, 0.5), threshold=np.full(4, 1.0)),
        PopulationDecoder(weight=np.ones((2, 2)), bias=np.zeros(2)), Tanh()])


def test_snn_op_counts_equal_hand_counts_for_known_spikes():
    spec = small_snn()
    # known spikes, T=2, batch 1: encoder fires 2 then 1; layer 0 fires 1 then 3; layer 1 fires 2 then 0
    enc = np.array([[[1, 1]], [[0, 1]]], dtype=np.float32)
    l0 = np.array([[[1, 0, 0]], [[1, 1, 1]]], dtype=np.float32)
    l1 = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=np.float32)
    c = count_ops(spec, np.zeros((1, 1), np.float32), spikes=[enc, l0, l1])
    by = {layer.name: layer for layer in c.layers}
    assert by["encoder"].spikes == 3 and by["encoder"].synaptic_ops == 3 * 3   # fan-out 3
    assert by["lif_0"].spikes == 4 and by["lif_0"].synaptic_ops == 4 * 4       # fan-out 4
    assert by["lif_1"].spikes == 2 and by["lif_1"].synaptic_ops == 0           # read out by the host
    assert c.synaptic_ops == 25
    assert c.neuron_updates == (3 + 4) * 2
    assert c.pipeline_steps == 2 + 2
    assert c.macs == 2 * 2 + (6 + 12) * 2 + 4  # encoder elements x T, Linear MACs x T, decoder


def test_snn_counts_from_the_reference_run_average_over_the_batch():
    spec = small_snn()
    obs = np.zeros((4, 1), np.float32)  # stimulus 1 at both encoder neurons: both fire each step
    c = count_ops(spec, obs)
    assert c.layers[0].spikes == pytest.approx(4.0)


def test_ann_macs_equal_the_weight_sizes():
    spec = ActorSpec(kind="ann", obs_dim=15, act_dim=2, nodes=[
        Linear(weight=np.zeros((64, 15)), bias=np.zeros(64)), ReLU(), Linear(weight=np.zeros((64, 64)), bias=np.zeros(64)),
        ReLU(), Linear(weight=np.zeros((2, 64)), bias=np.zeros(2)), Tanh()])
    c = count_ops(spec, np.zeros((3, 15), np.float32))
    assert c.macs == 15 * 64 + 64 * 64 + 64 * 2 and c.synaptic_ops == 0


def test_pricing_on_loihi_equals_a_hand_computation_from_the_profile():
    spec = small_snn()
    enc = np.ones((2, 1, 2), np.float32)
    l0 = np.ones((2, 1, 3), np.float32)
    l1 = np.zeros((2, 1, 4), np.float32)
    c = count_ops(spec, np.zeros((1, 1), np.float32), spikes=[enc, l0, l1])
    loihi = load_profile("loihi1", ActorHardwareProfile)
    e = price(c, loihi)
    synops = 4 * 3 + 6 * 4
    want = synops * 23.6e-12 + 14 * 81e-12 + 0.02 * (4 * 10e-6)
    assert e.energy_j == pytest.approx(want, rel=1e-9)
    assert e.latency_s == pytest.approx(40e-6) and not e.latency_measured and e.is_estimate
    assert {t.kind for t in e.terms} <= {"pre-silicon", "estimate", "measured"}
    assert all(len(t.source) > 10 for t in e.terms)


def test_pricing_on_a_gpu_uses_macs_and_static_power_with_a_measured_latency():
    spec = ActorSpec(kind="ann", obs_dim=2, act_dim=2, nodes=[Linear(weight=np.zeros((2, 2))), Tanh()])
    c = count_ops(spec, np.zeros((1, 2), np.float32))
    a100 = load_profile("a100", ActorHardwareProfile)
    assert price(c, a100).energy_j == pytest.approx(4 * 4.6e-12 + 50 * 100e-6)
    measured = price(c, a100, measured_latency_s=20e-6)
    assert measured.latency_measured and measured.energy_j == pytest.approx(4 * 4.6e-12 + 50 * 20e-6)
    assert "measured here" in measured.terms[-1].source


def test_an_ann_cannot_run_on_a_neuromorphic_chip():
    spec = ActorSpec(kind="ann", obs_dim=2, act_dim=2, nodes=[Linear(weight=np.zeros((2, 2))), Tanh()])
    c = count_ops(spec, np.zeros((1, 2), np.float32))
    loihi = load_profile("loihi2", ActorHardwareProfile)
    assert not applicable(c, loihi)
    with pytest.raises(ValueError, match="cannot run an ANN"):
        price(c, loihi)


def test_backend_is_charged_the_priced_energy_of_its_bundle(tmp_path):
    from aolo.hw_profiles import RadioProfile
    from aolo.runtime.backends import make_backend
    from aolo.runtime.bundle import ActionSpec, PolicyBundle, write_bundle
    from aolo.runtime.energy import charge_actor_energy, op_counts_to_dict
    from test_nir_export import random_snn

    spec = random_snn(seed=1, obs_dim=15, pop=3, hidden=(8,), act_dim=2, pop_out=3)
    action = ActionSpec.from_radio_profile(load_profile("macro", RadioProfile))
    obs = np.random.default_rng(0).uniform(0, 1, (50, 15)).astype(np.float32)
    with_counts = PolicyBundle.load(write_bundle(tmp_path / "a", spec, {}, algo="sdrl", action=action,
                                                 op_counts=op_counts_to_dict(count_ops(spec, obs))))
    backend = make_backend("reference", with_counts)
    assert charge_actor_energy(backend, with_counts) == "server-cpu"
    cpu = load_profile("server-cpu", ActorHardwareProfile)
    assert backend.energy_per_decision_j == pytest.approx(price(count_ops(spec, obs), cpu).energy_j)
    assert charge_actor_energy(backend, with_counts, "loihi2") == "loihi2"
    assert backend.energy_per_decision_j < price(count_ops(spec, obs), cpu).energy_j
    # without op counts in the manifest, the spikes are counted on the bundle's recorded observations
    np.save(tmp_path / "obs.npy", obs)
    recorded = PolicyBundle.load(write_bundle(tmp_path / "b", spec, {"observations": tmp_path / "obs.npy"},
                                              algo="sdrl", action=action))
    fresh = make_backend("reference", recorded)
    assert charge_actor_energy(fresh, recorded) == "server-cpu"
    assert fresh.energy_per_decision_j == pytest.approx(price(count_ops(spec, obs), cpu).energy_j)
    # the observations write_bundle draws from the contract's box when none are given check parity
    # only: spikes counted on them would price an SNN on inputs it never sees, so its energy stays unknown
    boxed = PolicyBundle.load(write_bundle(tmp_path / "c", spec, {}, algo="sdrl", action=action))
    assert "box_observations" in boxed.targets and charge_actor_energy(make_backend("reference", boxed), boxed) is None


@pytest.fixture(scope="module")
def energy_bundles(tmp_path_factory):
    """An SNN and an ANN bundle with ONNX and bundled observations."""
    import onnx

    from aolo.hw_profiles import RadioProfile
    from aolo.runtime.bundle import ActionSpec, write_bundle
    from aolo.runtime.energy import op_counts_to_dict
    from aolo.train.actor_export import onnx_model_from_spec
    from test_nir_export import random_snn

    tmp = tmp_path_factory.mktemp("energy")
    obs = np.random.default_rng(0).uniform(0, 1, (100, 15)).astype(np.float32)
    np.save(tmp / "observations.npy", obs)
    action = ActionSpec.from_radio_profile(load_profile("macro", RadioProfile))
    rng = np.random.default_rng(1)
    ann = ActorSpec(kind="ann", obs_dim=15, act_dim=2, nodes=[
        Linear(weight=rng.normal(0, 0.3, (32, 15)), bias=np.zeros(32)), ReLU(),
        Linear(weight=rng.normal(0, 0.3, (2, 32)), bias=np.zeros(2)), Tanh()])
    snn = random_snn(seed=2, obs_dim=15, pop=4, hidden=(16,), act_dim=2, pop_out=4)
    out = {}
    for name, spec in (("snn", snn), ("ann", ann)):
        onnx.save(onnx_model_from_spec(spec), tmp / f"{name}.onnx")
        out[name] = write_bundle(tmp / name, spec, {"onnx": tmp / f"{name}.onnx", "observations": tmp / "observations.npy"},
                                 algo="sdrl" if name == "snn" else "sac", action=action,
                                 op_counts=op_counts_to_dict(count_ops(spec, obs)))
    return out


def test_energy_report_counts_from_lava_and_labels_every_figure_an_estimate(energy_bundles):
    from aolo.runtime.energy_report import counter_note, headline_ratio, measure_bundle

    snn = measure_bundle(energy_bundles["snn"], n_obs=40)
    ann = measure_bundle(energy_bundles["ann"], n_obs=40)
    assert snn.counted_with.startswith("Lava") and snn.counts.synaptic_ops > 0
    ref = count_ops(ActorSpec.from_dict(__import__("json").loads((energy_bundles["snn"] / "actor_spec.json").read_text())),
                    np.load(energy_bundles["snn"] / "observations.npy")[:40])
    assert snn.counts.synaptic_ops == pytest.approx(ref.synaptic_ops)  # Lava's spikes are the reference's
    assert set(snn.estimates) == {"loihi1", "loihi2", "a100", "jetson-tx2", "server-cpu"}
    assert "loihi1" not in ann.estimates  # an ANN does not run on a neuromorphic chip
    assert all(e.is_estimate for e in snn.estimates.values())
    assert snn.estimates["server-cpu"].latency_measured and not snn.estimates["a100"].latency_measured
    assert headline_ratio(snn, ann) > 1.0
    from aolo.runtime.energy_counters import CounterSearch

    assert "estimated" in counter_note(CounterSearch(reasons=["RAPL: none"])) and "RAPL: none" in \
        counter_note(CounterSearch(reasons=["RAPL: none"]))


def test_energy_command_compares_snn_and_ann_and_writes_a_plot(energy_bundles, tmp_path):
    from typer.testing import CliRunner

    from aolo.cli import app

    png = tmp_path / "e.png"
    res = CliRunner().invoke(app, ["energy", "--compare", str(energy_bundles["snn"]), "--compare",
                                   str(energy_bundles["ann"]), "--n-obs", "20", "--no-lava", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "ANN / SNN" in res.output and "PopSAN" in res.output and png.stat().st_size > 1000
    bad = CliRunner().invoke(app, ["energy", "--compare", str(energy_bundles["snn"])])
    assert bad.exit_code == 2 and "exactly two" in bad.output


def test_measure_without_a_counter_prints_the_estimate_labelled_with_the_reason(energy_bundles):
    from typer.testing import CliRunner

    from aolo.cli import app
    from aolo.runtime.energy_counters import find_counters

    search = find_counters()
    if search.counters:
        pytest.skip(f"this machine has energy counters: {search.note()}")
    res = CliRunner().invoke(app, ["energy", str(energy_bundles["ann"]), "--measure", "--n-obs", "20", "--no-lava",
                                   "--window-s", "0.1", "--hardware", "server-cpu"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert out.startswith("No energy counter readable here (") and "is estimated (op counts x hardware profiles)" in out
    assert all(reason in out for reason in search.reasons)  # which counter, and why not
    assert "CPUExecutionProvider" in out and "not measured" in out and "estimated on server-cpu" in out
    assert "measured J/decision" in out and "0.000e+00" not in out  # never a zero for a figure nobody measured


class ProcessCpuCounter:
    """Stands in for RAPL: a package drawing 10 W while this process computes, nothing while it
    sleeps (its counter is 10 W x this process's CPU time)."""

    name, domain, where = "fake:package-0", "cpu", "10 W x process CPU time"

    def read_j(self) -> float:
        import time

        return 10.0 * time.process_time()


def test_measure_reads_counters_around_the_real_onnx_actor_at_batch_1_and_256(energy_bundles):
    from aolo.runtime.energy_counters import CounterSearch
    from aolo.runtime.energy_report import measure_bundle_energy, measured_table
    from aolo.markdown import table_to_markdown

    m = measure_bundle_energy(energy_bundles["snn"], repeats=3, window_s=0.1, idle_s=0.1,
                              search=CounterSearch(counters=[ProcessCpuCounter()]), providers=["CPUExecutionProvider"])
    assert m.measured and m.provider == "CPUExecutionProvider" and m.hardware == "server-cpu"
    assert set(m.batches) == {1, 256} and m.counters == ["fake:package-0"]
    for b, r in m.batches.items():
        assert len(r.windows) == 3 and r.idle.total_w < 5.0  # asleep: (almost) no CPU time
        # the decisions' CPU time at 10 W, never more than their wall time at 10 W
        assert 0 < r.mean_j <= 10.0 * r.latency_s_per_decision * 1.2, (b, r.mean_j, r.latency_s_per_decision)
        assert m.estimates[b].latency_measured and m.estimates[b].latency_s == pytest.approx(r.latency_s_per_decision)
    assert m.batches[256].mean_j < m.batches[1].mean_j  # a batch shares each call's overhead
    md = table_to_markdown(measured_table(m))
    assert "measured J/decision" in md and "idle power (measured)" in md and "estimated on server-cpu" in md
    assert "method: Zeus counters fake:package-0" in md


def test_measure_without_zeus_names_the_extra_and_still_shows_the_estimate(energy_bundles):
    import subprocess
    import sys

    code = ("import sys; sys.modules['zeus'] = None\n"  # as if the measure extra were not installed
            "from aolo.cli import app\n"
            f"app(['energy', {str(energy_bundles['ann'])!r}, '--measure', '--no-lava', '--window-s', '0.1', "
            "'--hardware', 'server-cpu'])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stderr
    assert "Zeus is not installed, so no counter was read (pip install 'aolo[measure]')" in out
    assert "not measured" in out and "estimated on server-cpu" in out
