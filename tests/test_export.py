"""Export of trained actors to policy bundles: every target equal to the trained actor."""

import json

import numpy as np
import pytest

from aolo.export.bundle_export import export_run, parse_targets, verify_bundle
from aolo.export.parity import scenario_observations
from aolo.runtime.bundle import PolicyBundle
from aolo.runtime.fixed_point import load_fixed_point
from aolo.train.run import load_run
from aolo.train.train_config import TrainConfig
from aolo.train.training import train


def _tiny_run(tmp_path_factory, algo: str):
    # a seeded actor: a few hundred random-action steps and a few updates, enough to write a run
    config = TrainConfig(algo=algo, scenario="tiny", seed=5, steps=256, n_envs=4, learning_starts=128, batch_size=64,
                         eval_every_steps=0, eval_n_bs=1, eval_seeds=(9001,), out_dir=str(tmp_path_factory.mktemp(algo)))
    return train(config, show_progress=False)


@pytest.fixture(scope="session")
def sdrl_export(tmp_path_factory, tiny_sdrl_run):
    run_dir = tiny_sdrl_run
    out = tmp_path_factory.mktemp("bundles") / "sdrl"
    return run_dir, export_run(run_dir, out, ("onnx", "lava", "nir", "netx"), n_onnx_obs=10_000, n_lava_obs=200, log=lambda m: None)


def test_targets_are_parsed_and_checked():
    assert parse_targets("onnx, nir") == ["onnx", "nir"]
    with pytest.raises(ValueError, match="unknown target"):
        parse_targets("onnx,tpu")


def test_sdrl_export_passes_every_parity_check(sdrl_export):
    _, result = sdrl_export
    by = {(p.target, p.reference): p for p in result.parity}
    assert result.passed
    onnx = by[("onnx", "torch actor")]
    assert onnx.n_obs == 10_000 and onnx.max_abs_action_diff <= 1e-5
    lava_float = by[("lava_float", "numpy reference")]
    assert lava_float.n_obs >= 200 and lava_float.spike_agreement_frac == 1.0 and lava_float.max_abs_action_diff <= 1e-5
    assert by[("lava_fixed", "numpy fixed-point model")].spike_agreement_frac == 1.0
    assert by[("lava_fixed", "float reference")].spike_agreement_frac >= 0.97
    assert by[("nir", "numpy reference")].spike_agreement_frac == 1.0
    snntorch = by[("nir_snntorch", "numpy reference")]  # the NIR file as snnTorch's importer loads it
    assert snntorch.spike_agreement_frac == 1.0 and snntorch.max_abs_action_diff <= 1e-5
    netx = by[("netx", "aolo Lava fixed-point network")]  # lava-dl's netx on Loihi2SimCfg, fixed_pt
    assert netx.n_obs == 200 and netx.spike_agreement_frac == 1.0 and netx.max_abs_action_diff == 0.0
    assert by[("actor_spec", "torch actor")].max_abs_action_diff <= 1e-5


def test_torch_and_lava_float_spikes_are_identical(sdrl_export):
    run_dir, _ = sdrl_export
    run = load_run(run_dir)
    from aolo.runtime.backends.lava import LavaActorNetwork
    import torch

    obs = scenario_observations("tiny", 200, seed=77)
    actor = run.actor
    with torch.no_grad():
        _, torch_spikes = actor.popsan.forward_with_spikes(torch.as_tensor(obs))
    with LavaActorNetwork(run.spec, "float", record_hidden=True) as net:
        action, lava_spikes = net.decide(obs)
    for t, l in zip(torch_spikes, lava_spikes):
        np.testing.assert_array_equal(t.numpy(), l)
    np.testing.assert_allclose(action, run.act(obs), atol=1e-5)


def test_fixed_point_carbon_is_within_2_percent_of_float(sdrl_export):
    _, result = sdrl_export
    policy = result.quantization["policy"]
    assert abs(policy["carbon_rel_diff_frac"]) <= 0.02
    assert len(result.quantization["layers"]) == 3


def test_bundle_holds_every_target_and_reloads(sdrl_export):
    _, result = sdrl_export
    bundle = PolicyBundle.load(result.bundle)
    assert {"onnx", "nir", "lava_fixed", "netx", "loihi_resources", "parity", "quantization_report",
            "actor_spec"} <= set(bundle.targets)
    resources = json.loads(bundle.file("loihi_resources").read_text())
    assert resources == result.loihi_resources and resources["fits"] and resources["cores"] == 3
    assert bundle.manifest.algo == "sdrl" and bundle.manifest.op_counts["synaptic_ops"] > 0
    fixed = load_fixed_point(bundle.spec, bundle.file("lava_fixed"))
    assert len(fixed.layers) == 3
    parity = json.loads(bundle.file("parity").read_text())
    assert all(p["passed"] for p in parity)


def test_verify_recomputes_parity_on_fresh_observations(sdrl_export):
    _, result = sdrl_export
    results = verify_bundle(result.bundle, n_obs=2000, n_lava_obs=50, seed=123)
    assert {r.target for r in results} == {"onnx", "nir", "nir_snntorch", "lava_float", "lava_fixed", "netx"}
    assert all(r.passed for r in results)


def test_verify_fails_on_a_corrupted_artefact(sdrl_export, tmp_path):
    import shutil

    from aolo.runtime.bundle import BundleError

    _, result = sdrl_export
    copy = tmp_path / "b"
    shutil.copytree(result.bundle, copy)
    (copy / "actor.onnx").write_bytes((copy / "actor.onnx").read_bytes() + b"x")
    with pytest.raises(BundleError, match="actor.onnx"):
        verify_bundle(copy, n_obs=10)


def test_ann_run_exports_to_onnx_and_refuses_lava(tmp_path_factory):
    run_dir = _tiny_run(tmp_path_factory, "sac")
    out = tmp_path_factory.mktemp("bundles") / "sac"
    with pytest.raises(ValueError, match="no Lava, NIR or netx form"):
        export_run(run_dir, out, ("onnx", "lava"), log=lambda m: None)
    result = export_run(run_dir, out, ("onnx",), n_onnx_obs=10_000, log=lambda m: None)
    assert result.passed and PolicyBundle.load(out).manifest.actor_kind == "ann"
