"""The PopSAN actor inside SB3 SAC: shapes, spikes, gradients, save/load, and a learn() smoke run."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RescaleAction
from stable_baselines3 import SAC

from aolo.train.popsan import PopSAN, PopSANConfig
from aolo.train.sac_policy import SDRLPolicy, SpikingActor, make_sac

torch.set_num_threads(1)  # 2-core machine shared with other test runs

OBS_DIM, ACT_DIM = 13, 2


class UnitBoxEnv(gym.Env):
    """Constant env with aolo's shapes: Box(13) observations, [-1, 1]^2 actions."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(OBS_DIM, np.float32), {}

    def step(self, action):
        return np.zeros(OBS_DIM, np.float32), 0.0, False, False, {}


def random_obs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.5, (n, OBS_DIM)).astype(np.float32))


@pytest.fixture(scope="module")
def sdrl() -> SAC:
    return make_sac("sdrl", UnitBoxEnv(), seed=0)


def test_sdrl_policy_builds_a_spiking_actor_without_sb3_mu_head(sdrl: SAC) -> None:
    actor = sdrl.policy.actor
    assert isinstance(sdrl.policy, SDRLPolicy) and isinstance(actor, SpikingActor)
    assert not hasattr(actor, "mu")
    assert all(not name.startswith("mu.") for name, _ in actor.named_parameters())


def test_actor_mean_and_log_std_are_batch_by_act_dim(sdrl: SAC) -> None:
    mean, log_std, extra = sdrl.policy.actor.get_action_dist_params(random_obs(7))
    assert mean.shape == (7, ACT_DIM) and log_std.shape == (7, ACT_DIM) and extra == {}
    assert torch.all(log_std <= 2) and torch.all(log_std >= -20)
    action = sdrl.policy.actor(random_obs(7), deterministic=False)
    assert action.shape == (7, ACT_DIM) and torch.all(action.abs() <= 1)


def test_spike_trains_are_binary_and_time_batch_neurons(sdrl: SAC) -> None:
    net = sdrl.policy.actor.popsan
    cfg = net.config
    with torch.no_grad():
        _, spikes = net.forward_with_spikes(random_obs(9))
    sizes = [OBS_DIM * cfg.pop_per_obs_dim, *cfg.hidden_sizes, ACT_DIM * cfg.pop_per_act_dim]
    assert [tuple(s.shape) for s in spikes] == [(cfg.timesteps, 9, n) for n in sizes]
    for s in spikes:
        assert set(torch.unique(s).tolist()) <= {0.0, 1.0}
    assert all(float(s.sum()) > 0 for s in spikes), "every population should fire on N(0, 1.5^2) inputs"


def _mean_spikes_and_grads(net: PopSAN, obs: torch.Tensor, reference: bool) -> tuple[torch.Tensor, list, list]:
    net.reference_neurons = reference
    net.zero_grad()
    mean, spikes = net.forward_with_spikes(obs)
    (mean.square().sum() + mean.sum()).backward()
    return mean.detach(), spikes, [p.grad.clone() for p in net.parameters()]


def test_fused_neurons_give_snntorchs_spikes_means_and_gradients_bit_for_bit() -> None:
    torch.manual_seed(0)
    net = PopSAN(OBS_DIM, ACT_DIM, PopSANConfig(hidden_sizes=(32, 24)))
    with torch.no_grad():  # strong weights: most neurons fire, many several times in a row
        for lin in net.layers:
            lin.weight.mul_(3.0)
    obs = random_obs(256, seed=5)
    mean_ref, spikes_ref, grads_ref = _mean_spikes_and_grads(net, obs, reference=True)
    mean, spikes, grads = _mean_spikes_and_grads(net, obs, reference=False)
    assert all(0.1 < float(s.mean()) < 0.9 for s in spikes_ref[1:]), "the layers should spike, and not always"
    assert all(torch.equal(a, b) for a, b in zip(spikes, spikes_ref))
    assert torch.equal(mean, mean_ref)
    assert torch.allclose(mean, mean_ref, rtol=0, atol=1e-6)
    assert all(float(g.abs().sum()) > 0 for g in grads_ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_ref))
    for mode in (torch.no_grad, torch.inference_mode):  # without gradients the spikes skip the autograd Functions
        with mode():
            net.reference_neurons = False
            mean_fast, spikes_fast = net.forward_with_spikes(obs)
        assert torch.equal(mean_fast, mean_ref) and all(torch.equal(a, b) for a, b in zip(spikes_fast, spikes_ref))


def test_training_with_fused_neurons_is_snntorchs_to_the_bit_over_three_hundred_gradient_steps() -> None:
    from aolo.train.sb3_vec_env import ServiceVecEnv
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel

    model = ServiceModel(get_scenario("tiny"))
    trained = []
    for reference in (True, False):
        env = ServiceVecEnv(model.scenario, n_envs=1, model=model, seed=3)
        sac = make_sac("sdrl", env, seed=3, learning_starts=100, batch_size=16, buffer_size=1_000)
        sac.policy.actor.popsan.reference_neurons = reference
        init = [p.detach().clone() for p in sac.policy.actor.popsan.parameters()]
        sac.learn(total_timesteps=400)
        assert sac._n_updates >= 300
        trained.append(sac.policy.state_dict())
    assert all(not torch.equal(a, b) for a, b in zip(init, sac.policy.actor.popsan.parameters()))
    for (name, a), b in zip(trained[0].items(), trained[1].values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("algo", ["sdrl", "sac"])
def test_the_deployed_action_is_the_actors_deterministic_action_bit_for_bit(algo: str) -> None:
    from aolo.train.sac_policy import deployed_action

    model = make_sac(algo, UnitBoxEnv(), seed=2)
    with torch.no_grad():  # move away from the seed-determined init
        for p in model.policy.actor.parameters():
            p.add_(0.1 * torch.randn_like(p))
        obs = random_obs(64, seed=4)
        assert torch.equal(deployed_action(model.policy.actor, obs), model.policy.actor(obs, deterministic=True))


def test_action_gradient_reaches_encoder_mean_and_std() -> None:
    torch.manual_seed(0)
    net = PopSAN(OBS_DIM, ACT_DIM)
    net(random_obs(64)).sum().backward()
    for p in (net.encoder.mean, net.encoder.std, net.layers[0].weight, net.decoder.weight):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_log_prob_gradient_reaches_popsan_and_log_std_network(sdrl: SAC) -> None:
    actor = sdrl.policy.actor
    actor.zero_grad()
    action, log_prob = actor.action_log_prob(random_obs(32))
    (log_prob.sum() + action.sum()).backward()
    assert float(actor.popsan.encoder.std.grad.abs().sum()) > 0
    assert float(actor.log_std.weight.grad.abs().sum()) > 0
    actor.zero_grad()


def test_forward_leaves_no_graph_in_snntorch_state(sdrl: SAC) -> None:
    sdrl.policy.actor.popsan(random_obs(4)).sum()
    for lif in sdrl.policy.actor.popsan.neurons:
        assert lif.mem.grad_fn is None and lif.syn.grad_fn is None


def test_sdrl_save_load_round_trip_gives_identical_deterministic_actions(tmp_path: Path) -> None:
    cfg = PopSANConfig(hidden_sizes=(32, 16), timesteps=3, pop_per_obs_dim=6)
    model = make_sac("sdrl", UnitBoxEnv(), seed=1, popsan=cfg)
    with torch.no_grad():  # move away from the seed-determined init
        for p in model.policy.actor.popsan.parameters():
            p.add_(0.05 * torch.randn_like(p))
    obs = random_obs(50, seed=3)
    with torch.no_grad():
        before = model.policy.actor(obs, deterministic=True)
    model.save(tmp_path / "sdrl.zip")
    loaded = SAC.load(tmp_path / "sdrl.zip", device="cpu")
    assert isinstance(loaded.policy, SDRLPolicy)
    assert loaded.policy.actor.popsan.config == cfg
    with torch.no_grad():
        after = loaded.policy.actor(obs, deterministic=True)
    assert torch.equal(before, after)
    loaded.policy.save(tmp_path / "policy.pt")
    reloaded = SDRLPolicy.load(tmp_path / "policy.pt", device="cpu")
    with torch.no_grad():
        assert torch.equal(reloaded.actor(obs, deterministic=True), before)


def test_sdrl_and_sac_have_identical_critics() -> None:
    def shapes(model: SAC) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in model.policy.critic.state_dict().items()}
    sdrl, sac = make_sac("sdrl", UnitBoxEnv(), seed=0), make_sac("sac", UnitBoxEnv(), seed=0)
    assert shapes(sdrl) == shapes(sac)
    assert sdrl.ent_coef == sac.ent_coef and sdrl.target_entropy == sac.target_entropy


def test_make_sac_rejects_action_space_other_than_unit_box() -> None:
    with pytest.raises(ValueError, match="action space"):
        make_sac("sdrl", gym.make("Pendulum-v1"), seed=0)  # actions in [-2, 2]


def test_make_sac_rejects_unknown_algo_and_gsde() -> None:
    with pytest.raises(ValueError, match="algo"):
        make_sac("ppo", UnitBoxEnv(), seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use_sde"):
        make_sac("sdrl", UnitBoxEnv(), seed=0, use_sde=True)


def test_popsan_config_rejects_decay_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="beta"):
        PopSANConfig(beta=1.5)
    assert PopSANConfig.coerce({"hidden_sizes": [8, 8]}).hidden_sizes == (8, 8)


def test_popsan_config_of_an_older_run_loads_unless_it_used_the_removed_standardized_encoder() -> None:
    # SB3 saved the policy's popsan arguments in model.zip; older runs carry encoder_init
    assert PopSANConfig.coerce({"encoder_init": "range", "timesteps": 3}) == PopSANConfig(timesteps=3)
    with pytest.raises(ValueError, match="encoder_init = 'standardized': this field was removed"):
        PopSANConfig.coerce({"encoder_init": "standardized"})


@pytest.mark.parametrize("algo", ["sdrl", "sac"])
def test_learn_runs_a_few_hundred_pendulum_steps(algo: str) -> None:
    unit = np.ones(1, np.float32)
    env = RescaleAction(gym.make("Pendulum-v1"), -unit, unit)
    model = make_sac(algo, env, seed=0, learning_starts=50, batch_size=64, buffer_size=1000)
    before = [p.detach().clone() for p in model.policy.actor.parameters()]
    model.learn(total_timesteps=300)
    assert model.num_timesteps == 300 and model._n_updates >= 200
    after = list(model.policy.actor.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after)), "every actor parameter should be trained"
