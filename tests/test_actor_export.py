"""Export of the deterministic actor: ActorSpec parity with torch (SNN and ANN) and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from stable_baselines3 import SAC

from aolo.runtime.actor_spec import ActorSpec
from aolo.train.actor_export import actor_spec_from_policy, export_onnx
from aolo.train.sac_policy import make_sac

from test_popsan_actor import ACT_DIM, OBS_DIM, UnitBoxEnv

torch.set_num_threads(1)  # 2-core machine shared with other test runs


def random_obs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, (n, OBS_DIM)).astype(np.float32)


def torch_action(model: SAC, obs: np.ndarray) -> np.ndarray:
    """SB3's deterministic actor output (batch, act_dim), without predict()'s rescale round trip."""
    with torch.no_grad():
        return model.policy.actor(torch.from_numpy(obs), deterministic=True).numpy()


def perturbed_model(algo: str) -> SAC:
    """A model whose actor parameters are all moved off their init, so no symmetry hides a bug."""
    model = make_sac(algo, UnitBoxEnv(), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.policy.actor.parameters():
            p.add_(0.1 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module", params=["sdrl", "sac"])
def model(request: pytest.FixtureRequest) -> SAC:
    return perturbed_model(request.param)


@pytest.fixture(scope="module")
def sdrl_model() -> SAC:
    return perturbed_model("sdrl")


def test_spec_kind_and_nodes_follow_the_actor(model: SAC) -> None:
    spec = actor_spec_from_policy(model.policy)
    assert (spec.obs_dim, spec.act_dim) == (OBS_DIM, ACT_DIM)
    if model.policy.actor.__class__.__name__ == "SpikingActor":
        cfg = model.policy.actor.popsan.config
        assert spec.kind == "snn" and spec.timesteps == cfg.timesteps
        assert len(spec.spiking_layers()) == len(cfg.hidden_sizes) + 1
    else:
        assert spec.kind == "ann" and [type(n).__name__ for n in spec.nodes] == [
            "Linear", "ReLU", "Linear", "ReLU", "Linear", "Tanh"]


def test_spec_forward_matches_torch_deterministic_action_within_1e_5(model: SAC) -> None:
    obs = random_obs(2000, seed=10)
    spec_action = actor_spec_from_policy(model.policy).forward(obs)
    np.testing.assert_allclose(spec_action, torch_action(model, obs), rtol=0, atol=1e-5)


def test_spec_spike_trains_equal_torch_spike_trains_exactly(sdrl_model: SAC) -> None:
    model = sdrl_model
    obs = random_obs(2000, seed=11)
    _, spec_spikes = actor_spec_from_policy(model.policy).forward_with_spikes(obs)
    with torch.no_grad():
        _, torch_spikes = model.policy.actor.popsan.forward_with_spikes(torch.from_numpy(obs))
    assert len(spec_spikes) == len(torch_spikes)
    for k, (ref, got) in enumerate(zip(spec_spikes, torch_spikes)):
        assert ref.shape == tuple(got.shape)
        assert 0.01 < ref.mean() < 0.9, f"population {k} should be neither silent nor saturated"
        assert np.array_equal(ref, got.numpy()), f"population {k}: {int((ref != got.numpy()).sum())} spikes differ"


def test_spec_survives_a_dict_round_trip(model: SAC) -> None:
    spec = actor_spec_from_policy(model.policy)
    obs = random_obs(100, seed=12)
    again = ActorSpec.from_dict(spec.to_dict())
    np.testing.assert_array_equal(again.forward(obs), spec.forward(obs))


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_onnx_actor_passes_checker_and_matches_torch_within_1e_5(model: SAC, tmp_path: Path) -> None:
    path = export_onnx(model.policy, tmp_path / "actor.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort_session(path)
    assert [i.name for i in sess.get_inputs()] == ["obs"] and [o.name for o in sess.get_outputs()] == ["action"]
    obs = random_obs(10_000, seed=13)
    (action,) = sess.run(None, {"obs": obs})
    assert action.dtype == np.float32 and action.shape == (10_000, ACT_DIM)
    np.testing.assert_allclose(action, torch_action(model, obs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 257])
def test_onnx_actor_accepts_dynamic_batch(model: SAC, tmp_path: Path, batch: int) -> None:
    sess = ort_session(export_onnx(model.policy, tmp_path / "actor.onnx"))
    obs = random_obs(batch, seed=14)
    (action,) = sess.run(None, {"obs": obs})
    assert action.shape == (batch, ACT_DIM)
    np.testing.assert_allclose(action, torch_action(model, obs), rtol=0, atol=1e-5)
