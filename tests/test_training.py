"""Training runs: the SB3 vector env, the run directory, resume, save/load, the CLI (train,
evaluate --policy RUN_DIR, compare), and a tiny run that beats random actions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer.main
from typer.testing import CliRunner

from aolo.cli import app
from aolo.train.actor_average import ActorAverage, averaged_weights
from aolo.train.comparison import Comparison, comparison_quality_adjusted_gap, excess_gap, quality_adjusted_gap
from aolo.train.evaluate import evaluate_policy, summary_row
from aolo.train.frontier import lp_frontier
from aolo.train.plots import plot_quality_carbon
from aolo.train.policies import BasePolicy, LPPolicy, RandomPolicy
from aolo.train.run import is_run_dir, load_run, read_evaluations
from aolo.train.sb3_vec_env import ServiceVecEnv
from aolo.train.simulator import ServiceModel
from aolo.train.seeds import VALIDATION_SEEDS
from aolo.train.train_config import PopSANConfig, TrainConfig
from aolo.train.training import load_checkpoint, train

torch.set_num_threads(1)  # 2-core machine shared with other test runs


def tiny_config(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(scenario="tiny", steps=1_200, n_envs=4, learning_starts=400, batch_size=64, eval_every_steps=0,
                eval_n_bs=2, eval_seeds=(501,), log_every_steps=400, out_dir=str(tmp_path))
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def sdrl_run(tiny_sdrl_run: Path) -> Path:
    """conftest's session run (trained once for the session)."""
    return tiny_sdrl_run


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


# --- the vector env --------------------------------------------------------------------------
def test_vec_env_ends_a_day_as_a_time_limit_whose_terminal_observation_is_the_next_days_first(tiny_model):
    env = ServiceVecEnv(tiny_model.scenario, n_envs=3, model=tiny_model, seed=7)
    obs = env.reset()
    assert obs.shape == (3, 15) and obs.dtype == np.float32
    actions = np.zeros((3, 2), dtype=np.float32)
    for _ in range(5_000):
        obs, rewards, dones, infos = env.step(actions)
        assert rewards.shape == (3,) and all("carbon_g" in i and "floor_violation" in i for i in infos)
        if dones.any():
            break
    assert dones.any(), "no day ended within 5000 steps"
    for b in np.flatnonzero(dones):
        assert infos[b]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos[b]["terminal_observation"], obs[b])
        assert env.sim.pos[b] == 0 and env.sim.episode_count[b] == 2  # the next day has begun
    for b in np.flatnonzero(~dones):
        assert "terminal_observation" not in infos[b]


def test_vec_env_same_seed_gives_same_rewards_and_quality_bonus_adds_the_lagrangian_term(tiny_model):
    def rollout(**kw):
        env = ServiceVecEnv(tiny_model.scenario, n_envs=2, model=tiny_model, seed=3, **kw)
        env.reset()
        rng = np.random.default_rng(0)
        out = [env.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32)) for _ in range(300)]
        return np.array([o[1] for o in out]), [o[3] for o in out]

    plain, infos = rollout()
    again, _ = rollout()
    shaped, _ = rollout(quality_bonus=2.0)
    np.testing.assert_array_equal(plain, again)
    q = np.array([[i["quality"] for i in step] for step in infos])
    # the bonus is the action's part of the Lagrangian term, 2 * q
    np.testing.assert_allclose(shaped - plain, 2.0 * q, atol=1e-5)
    assert q.any()


def test_deficit_bonus_raises_the_multiplier_by_kappa_times_the_floor_deficit_before_the_request(tiny_model):
    def rollout(**kw):
        env = ServiceVecEnv(tiny_model.scenario, n_envs=2, model=tiny_model, seed=3, **kw)
        env.reset()
        rng = np.random.default_rng(0)
        rewards, deficits, quality = [], [], []
        for _ in range(2000):
            ctx = env.sim.context
            deficits.append(np.maximum(0.0, ctx.floor - ctx.quality_roll))
            _, r, _, infos = env.step(rng.uniform(-1, 1, (2, 2)).astype(np.float32))
            rewards.append(r)
            quality.append([i["quality"] for i in infos])
        return np.array(rewards), np.array(deficits), np.array(quality)

    plain, deficit, q = rollout(quality_bonus=0.0, deficit_bonus=0.0)
    shaped, _, _ = rollout(quality_bonus=2.0, deficit_bonus=5.0)
    assert (deficit > 0).any() and (deficit == 0).any(), "the rollout must both violate and meet the floor"
    np.testing.assert_allclose(shaped - plain, (2.0 + 5.0 * deficit) * q, atol=1e-5)


# --- config ----------------------------------------------------------------------------------
def test_train_config_rejects_evaluation_seeds_for_training_or_validation():
    with pytest.raises(ValueError, match="evaluation"):
        TrainConfig(seed=1001)
    with pytest.raises(ValueError, match="evaluation seeds"):
        TrainConfig(eval_seeds=(501, 1002))
    with pytest.raises(ValueError, match="validation"):
        TrainConfig(seed=VALIDATION_SEEDS[0])


def test_every_config_field_has_a_one_line_help_and_train_lists_at_most_30_options():
    for model in (TrainConfig, PopSANConfig):
        for name, info in model.model_fields.items():
            assert info.description and "\n" not in info.description and len(info.description) <= 100, name
    command = typer.main.get_command(app).commands["train"]
    options = [opt for param in command.params for opt in param.opts if opt.startswith("--")]
    assert len(options) <= 30 and "--config" in options and "--resume" in options
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and TrainConfig.model_fields["learning_rate"].description in result.output
    assert "--quality-bonus" not in result.output  # set from a config file


def test_train_config_round_trips_through_json():
    cfg = TrainConfig(algo="sac", actor_hidden=(32, 16), popsan={"timesteps": 3})
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.popsan.timesteps == 3


OLDER_DEFAULTS = {"quality_penalty": None, "latency_penalty": None, "quality_target": None,
                  "quality_target_rate": 5e-4, "quality_target_start": 40_000, "reward_scale": 1.0}
"""Fields an older aolo wrote into every config.json, at the values its default runs had."""


def test_an_older_config_loads_and_one_that_set_a_removed_knob_is_refused_naming_it():
    old = {**TrainConfig().to_dict(), **OLDER_DEFAULTS}
    old["popsan"] = {**old["popsan"], "encoder_init": "range"}
    del old["device"]
    assert TrainConfig.from_dict(old) == TrainConfig()
    with pytest.raises(ValueError, match=r"^runs/x/config.json: TrainConfig.quality_target = 1.0: this field was "
                                         r"removed \(docs/model.md keeps its results\); only None can be read$"):
        TrainConfig.from_dict({**old, "quality_target": 1.0}, "runs/x/config.json")
    with pytest.raises(ValueError, match=r"field 'popsan': PopSANConfig.encoder_init = 'standardized'"):
        TrainConfig.from_dict({**old, "popsan": {"encoder_init": "standardized"}}, "config.json")


def _as_an_older_aolo_wrote_it(run_dir: Path, to: Path) -> Path:
    """A copy of a run directory with the config.json and model.zip an older aolo wrote: the removed
    fields at their defaults, PopSAN's encoder_init in SB3's saved policy arguments, SB3's
    replay buffer class named as the ShapedReplayBuffer of a module that no longer exists, and no
    actor.safetensors, actor_kwargs.json or run_manifest.json."""
    import base64
    import shutil
    import sys
    import types
    import zipfile

    import cloudpickle
    from stable_baselines3.common.buffers import ReplayBuffer

    shutil.copytree(run_dir, to)
    for name in ("actor.safetensors", "actor_kwargs.json", "run_manifest.json"):
        (to / name).unlink()
    config = {**json.loads((to / "config.json").read_text()), **OLDER_DEFAULTS}
    config["popsan"]["encoder_init"] = "range"
    del config["device"]
    (to / "config.json").write_text(json.dumps(config))
    with zipfile.ZipFile(to / "model.zip") as z:
        files = {name: z.read(name) for name in z.namelist()}
    data = json.loads(files["data"])
    data["policy_kwargs"]["popsan"]["encoder_init"] = "range"
    gone = types.ModuleType("aolo.train.shaped_replay")
    gone.ShapedReplayBuffer = type("ShapedReplayBuffer", (ReplayBuffer,), {"__module__": gone.__name__})
    sys.modules[gone.__name__] = gone
    try:
        pickled = cloudpickle.dumps(gone.ShapedReplayBuffer)
    finally:
        del sys.modules[gone.__name__]
    data["replay_buffer_class"][":serialized:"] = base64.b64encode(pickled).decode()
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(to / "model.zip", "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return to


def test_an_older_run_directory_loads_and_evaluates(sdrl_run, tmp_path):
    old = _as_an_older_aolo_wrote_it(sdrl_run, tmp_path / sdrl_run.name)
    with pytest.raises(ModuleNotFoundError):  # what SB3 alone would do with it
        from stable_baselines3 import SAC
        SAC.load(old / "model.zip", device="cpu")
    obs = np.random.default_rng(3).uniform(-0.5, 1.5, (64, 15)).astype(np.float32)
    np.testing.assert_array_equal(load_run(old).act(obs), load_run(sdrl_run).act(obs))
    result = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "--policy", str(old), "--seeds", "501",
                                      "--n-bs", "1"])
    assert result.exit_code == 0, result.output


# --- runs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["sdrl", "sac"])
def test_a_tiny_run_writes_config_versions_checkpoint_spec_and_logs(tmp_path, algo):
    run_dir = train(tiny_config(tmp_path, algo=algo), show_progress=False)
    assert run_dir.parent == tmp_path and run_dir.name.startswith(f"tiny__{algo}__0__")
    assert json.loads((run_dir / "config.json").read_text())["algo"] == algo
    versions = json.loads((run_dir / "versions.json").read_text())
    assert {"torch", "snntorch", "stable-baselines3", "aolo"} <= set(versions)
    spec = json.loads((run_dir / "actor_spec.json").read_text())
    assert spec["kind"] == ("snn" if algo == "sdrl" else "ann")
    assert (run_dir / "model.zip").is_file() and list((run_dir / "tb").glob("events.out.tfevents.*"))
    rows = read_progress(run_dir)
    assert int(rows[-1]["global_step"]) == 1_200
    keys = set(rows[0])
    assert {"rollout/reward_per_request", "carbon/train_g_per_request", "carbon/mean_g_per_request",
            "eval/quality_vs_base_frac", "eval/floor_violation_frac", "train/actor_loss"} <= keys
    evals = read_evaluations(run_dir)
    assert [e["step"] for e in evals] == [1_200] and evals[0]["result"]["per_seed"][0]["seed"] == 501


def test_a_learning_rate_end_anneals_every_optimiser_linearly_to_it(tmp_path):
    run_dir = train(tiny_config(tmp_path, algo="sac", learning_rate=1e-3, learning_rate_end=1e-4, ent_coef_lr=None),
                    show_progress=False)
    model = load_checkpoint(run_dir)
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.0) == pytest.approx(1e-4)
    optimisers = (model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer)
    lrs = [g["lr"] for opt in optimisers for g in opt.param_groups]
    # the last update ran with almost all of the run behind it
    assert all(1e-4 <= lr < 1.5e-4 for lr in lrs), lrs
    with pytest.raises(ValueError, match="learning_rate_end"):
        TrainConfig(learning_rate=1e-4, learning_rate_end=1e-3)


def test_an_entropy_rate_keeps_alpha_learning_at_it_through_a_resume_while_the_rest_anneals(tmp_path):
    cfg = tiny_config(tmp_path, algo="sac", steps=800, eval_every_steps=400, learning_rate=1e-3,
                      learning_rate_end=1e-4, ent_coef_lr=5e-4)
    run_dir = train(cfg, show_progress=False)
    train(cfg.with_(steps=1_200), resume=run_dir, show_progress=False)
    model = load_checkpoint(run_dir)
    assert model.num_timesteps == 1_200
    assert [g["lr"] for g in model.ent_coef_optimizer.param_groups] == [5e-4]
    lrs = [g["lr"] for opt in (model.actor.optimizer, model.critic.optimizer) for g in opt.param_groups]
    assert all(1e-4 <= lr < 1.5e-4 for lr in lrs), lrs
    with pytest.raises(ValueError, match="ent_coef_lr"):
        TrainConfig(ent_coef_lr=0.0)


def test_two_runs_started_in_the_same_second_get_distinct_directories(tmp_path):
    cfg = tiny_config(tmp_path, algo="sac", steps=100, learning_starts=100)
    a, b = train(cfg, show_progress=False), train(cfg, show_progress=False)
    assert a != b and is_run_dir(a) and is_run_dir(b)


def test_resume_continues_the_step_count_and_the_logs(tmp_path):
    run_dir = train(tiny_config(tmp_path, algo="sac", steps=800, eval_every_steps=400), show_progress=False)
    assert json.loads((run_dir / "train_state.json").read_text())["num_timesteps"] == 800
    again = train(tiny_config(tmp_path, algo="sac", steps=1_600), resume=run_dir, show_progress=False)
    assert again == run_dir
    assert json.loads((run_dir / "train_state.json").read_text())["num_timesteps"] == 1_600
    assert load_checkpoint(run_dir).num_timesteps == 1_600
    steps = [int(r["global_step"]) for r in read_progress(run_dir)]
    assert steps[0] == 400 and steps[-1] == 1_600 and steps == sorted(steps)
    assert [e["step"] for e in read_evaluations(run_dir)] == [400, 800, 1_200, 1_600]


def test_a_loaded_run_acts_exactly_like_its_exported_actor_spec(sdrl_run):
    run = load_run(sdrl_run)
    obs = np.random.default_rng(1).uniform(-0.5, 1.5, (64, 15)).astype(np.float32)
    actions = run.act(obs)
    assert actions.shape == (64, 2) and np.all(np.abs(actions) <= 1)
    np.testing.assert_allclose(actions, run.spec.forward(obs), atol=1e-5)
    np.testing.assert_array_equal(actions, load_run(sdrl_run).act(obs))


def test_load_run_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    with pytest.raises(ValueError, match="model.zip"):
        load_run(tmp_path)


# --- CLI -------------------------------------------------------------------------------------
def test_evaluate_accepts_a_run_directory_as_a_policy(sdrl_run, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "--policy", str(sdrl_run), "--seeds", "501",
                                      "--n-bs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = [r["policy"] for r in json.loads(out.read_text())["results"]]
    assert names == ["base", f"sdrl:{sdrl_run.name}"]


def test_evaluate_rejects_a_policy_that_is_neither_known_nor_a_run(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "--policy", str(tmp_path)])
    assert result.exit_code == 2 and "training run directory" in result.output


def test_train_command_takes_the_other_fields_from_a_config_file_and_saves_the_whole_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('scenario = "tiny"\nsteps = 100\nlearning_starts = 200\nn_envs = 2\neval_seeds = [501]\n'
                    'eval_n_bs = 1\nent_coef_lr = 1e-3\n\n[popsan]\ntimesteps = 3\n')
    result = CliRunner().invoke(app, ["train", "--config", str(toml), "--algo", "sac", "--steps", "300",
                                      "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["steps"] == 300 and config["learning_starts"] == 200 and config["ent_coef_lr"] == 1e-3
    assert config["popsan"]["timesteps"] == 3 and config["popsan"]["hidden_sizes"] == [32, 32]
    assert config["learning_rate_end"] == 3e-5 and config["target_entropy"] is None and set(config) == set(
        TrainConfig.model_fields)


def test_train_command_names_the_file_or_option_and_the_field_in_one_line(tmp_path):
    toml = tmp_path / "run.toml"
    for text, message in (("gamma = 2.0\n", f"error: {toml} and the options: field 'gamma': Input should be less "
                                             "than or equal to 1"),
                          ("steps = \n", f"error: {toml}: Invalid value (at line 1, column 9)"),
                          ("[popsan]\nencoder_init = 'standardized'\n", "PopSANConfig.encoder_init = 'standardized': "
                                                                       "this field was removed")):
        toml.write_text(text)
        result = CliRunner().invoke(app, ["train", "--config", str(toml), "--out-dir", str(tmp_path / "runs")])
        assert result.exit_code == 2 and message in result.output and len(result.output.splitlines()) == 1, \
            result.output
    result = CliRunner().invoke(app, ["train", "--actor-hidden", "64,x", "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--actor-hidden: '64,x' is not a comma-separated list of integers" in result.output
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--algo", "sac"])
    assert result.exit_code == 2 and "only --steps, --torch-threads and --device apply (got --algo)" in result.output
    result = CliRunner().invoke(app, ["train", "--device", "tpu", "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "field 'device': Input should be 'auto', 'cpu' or 'cuda'" in result.output
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["train", "--device", "cuda", "--out-dir", str(tmp_path / "runs")])
        assert result.exit_code == 2 and "torch sees no CUDA device here" in result.output
    assert not (tmp_path / "runs").exists()


def test_train_command_rejects_an_evaluation_seed_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--seed", "1001", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "error: options: seed 1001 is an evaluation or validation seed" in result.output
    assert "Traceback" not in result.output


def test_compare_aggregates_runs_beside_the_references_and_plots_curves(sdrl_run, tmp_path):
    png, js, qc = tmp_path / "curves.png", tmp_path / "cmp.json", tmp_path / "qc.png"
    result = CliRunner().invoke(app, ["compare", str(sdrl_run), "--seeds", "1001", "--n-bs", "2", "--out", str(png),
                                      "--json", str(js), "--frontier-plot", str(qc)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in ("sdrl", "oracle", "class-aware-lp", "sprout-lp", "co2-only", "base", "vs LP at equal quality"):
        assert name in result.output
    assert png.stat().st_size > 10_000 and qc.stat().st_size > 10_000
    data = json.loads(js.read_text())
    assert list(data["runs"]) == ["sdrl"] and len(data["references"]) == 5
    assert data["gap"] is None and "at equal quality:" not in result.output  # one run, no SAC: no gap line
    hull = data["lp_frontier"]["hull"]
    assert len(hull) >= 2 and hull[0]["quality_vs_base_frac"] < hull[-1]["quality_vs_base_frac"]


# --- learning --------------------------------------------------------------------------------
def _tiny_run_and_random(tmp_path: Path, tiny_model: ServiceModel, algo: str, steps: int,
                         **changes) -> tuple[dict, dict]:
    """Train ``algo`` on the tiny scenario (``changes``: further TrainConfig fields); summary rows of
    the run and of random actions on the validation seeds (8 BS)."""
    run_dir = train(tiny_config(tmp_path, algo=algo, steps=steps, n_envs=8, learning_starts=1_000,
                                batch_size=256, quality_bonus=2.4, ent_coef="auto_0.1", **changes), show_progress=False)
    seeds = (501, 502)
    base = evaluate_policy(BasePolicy(), tiny_model, seeds, n_bs=8)
    rand = summary_row(evaluate_policy(RandomPolicy(), tiny_model, seeds, n_bs=8), base)
    learned = summary_row(evaluate_policy(load_run(run_dir).policy(), tiny_model, seeds, n_bs=8), base)
    return learned, rand


def test_a_tiny_sac_run_beats_random_actions_at_equal_or_better_quality(tmp_path, tiny_model):
    # Budget measured on validation seeds 501, 502 (8 BS): at 10k steps SAC seeds 0, 1, 2 all beat
    # random (about half its carbon, quality 0.90-0.96 vs 0.87); at 4k steps quality was below
    # random for 2 of 3 seeds. SDRL needs more steps (see test below).
    learned, rand = _tiny_run_and_random(tmp_path, tiny_model, "sac", steps=10_000)
    assert learned["carbon_g_per_request"] < 0.75 * rand["carbon_g_per_request"]
    assert learned["quality_vs_base_frac"] >= rand["quality_vs_base_frac"]
    assert learned["latency_violation_frac"] <= rand["latency_violation_frac"]


@pytest.mark.slow
def test_a_tiny_sdrl_run_beats_random_actions_at_equal_or_better_quality(tmp_path, tiny_model):
    # SDRL learns more slowly per step than SAC. With 256 x 256 critics, at 10k steps seed 2 was
    # still below random's quality (0.83 vs 0.87); at 16k steps seeds 0, 1, 2 all beat it (carbon
    # 0.058-0.060 g vs 0.085 g, quality 1.03 vs 0.87), about 75 s per run. What is tested is the
    # spiking actor's learning, so the critics are 64 x 64: at 16k steps seeds 0, 1, 2 still beat
    # random (carbon 0.047-0.049 g, quality 0.90-0.94) in 44-49 s per run; at 12k seed 2 fell to
    # quality 0.84. SAC's test keeps 256 x 256: with 64 x 64 its three seeds landed below random's
    # quality (0.78-0.80), and with 256 x 256 at 7k steps seed 2 did (0.78).
    learned, rand = _tiny_run_and_random(tmp_path, tiny_model, "sdrl", steps=16_000, critic_hidden=(64, 64))
    assert learned["carbon_g_per_request"] < 0.85 * rand["carbon_g_per_request"]
    assert learned["quality_vs_base_frac"] >= rand["quality_vs_base_frac"]
    assert learned["latency_violation_frac"] <= rand["latency_violation_frac"]


def test_excess_gap_gives_the_mean_difference_its_welch_error_and_a_bootstrap_interval():
    gap = excess_gap([1.0, 2.0, 3.0, 2.0], [0.5, 1.5])
    assert gap.diff_pct == pytest.approx(1.0) and (gap.n_a, gap.n_b) == (4, 2)
    assert gap.se_pct == pytest.approx(np.sqrt((2 / 3) / 4 + 0.5 / 2))
    assert gap.ci_low_pct < 1.0 < gap.ci_high_pct and -1.0 <= gap.ci_low_pct and gap.ci_high_pct <= 2.5
    assert "sdrl - sac at equal quality: +1.00 points" in gap.describe()
    with pytest.raises(ValueError, match="sac needs at least two runs"):
        excess_gap([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="sdrl needs at least two runs"):
        excess_gap([1.0, float("nan")], [0.5, 1.0])


def test_quality_adjusted_gap_separates_the_algorithm_from_the_quality_its_runs_land_at():
    # excess = 50 - 0.5 quality + 0.3 for sdrl, plus residuals that cancel within each algorithm;
    # sdrl's runs land lower in quality, so its plain mean gap (+1.8) mostly measures quality.
    qa, qb = np.array([96.0, 97.0, 98.0, 99.0]), np.array([99.0, 100.0, 101.0, 102.0])
    noise = np.array([0.1, -0.1, -0.1, 0.1])
    ea, eb = 50 - 0.5 * qa + 0.3 + noise, 50 - 0.5 * qb + noise
    assert ea.mean() - eb.mean() == pytest.approx(1.8)
    gap = quality_adjusted_gap(ea, qa, eb, qb)
    assert gap.diff_pct == pytest.approx(0.3) and gap.slope_pct_per_point == pytest.approx(-0.5)
    x = np.column_stack([np.ones(8), np.r_[qa, qb], np.r_[np.ones(4), np.zeros(4)]])
    resid_var = 8 * 0.01 / (8 - 3)
    assert gap.se_pct == pytest.approx(np.sqrt(resid_var * np.linalg.inv(x.T @ x)[2, 2]))
    assert (gap.n_a, gap.n_b) == (4, 4) and "+0.30 points" in gap.describe()
    assert gap.fitted_excess_pct("sdrl", qa) == pytest.approx(ea - noise)
    assert gap.fitted_excess_pct("sac", qb) == pytest.approx(eb - noise)
    with pytest.raises(ValueError, match="at least 5 runs"):
        quality_adjusted_gap([1.0, 2.0], [98.0, 99.0], [0.5, 1.0], [97.0, 99.0])
    with pytest.raises(ValueError, match="same quality"):
        quality_adjusted_gap([1.0, 2.0, 3.0], [99.0] * 3, [0.5, 1.0], [99.0] * 2)
    with pytest.raises(ValueError, match="sac has 2 excesses but 3 qualities"):
        quality_adjusted_gap([1.0, 2.0, 3.0], [98.0, 99.0, 97.0], [0.5, 1.0], [97.0, 99.0, 98.0])


def test_quality_carbon_plot_draws_the_fitted_lines_of_a_comparison_with_enough_runs(tiny_model, tmp_path):
    # Real evaluations on the tiny scenario stand in for runs: the LP asked for six qualities.
    def lp(margin: float):
        return evaluate_policy(LPPolicy(per_class=True, quality_margin=margin), tiny_model, [501], n_bs=2)

    groups = {"sdrl": [(None, lp(m)) for m in (-0.04, 0.0, 0.04)], "sac": [(None, lp(m)) for m in (-0.02, 0.02, 0.06)]}
    margins = tuple(round(-0.1 + 0.02 * i, 2) for i in range(12))
    comparison = Comparison(groups=groups, references=[lp(0.0)],
                            frontier=lp_frontier(tiny_model, [501], n_bs=2, margins=margins))
    fit = comparison_quality_adjusted_gap(comparison)
    assert fit is not None and (fit.n_a, fit.n_b) == (3, 3) and np.isfinite(fit.diff_pct)
    path = plot_quality_carbon(comparison, tmp_path / "qc.png")
    assert path.stat().st_size > 10_000


# --- actor weight averaging --------------------------------------------------------------------
def test_an_actor_average_is_the_mean_of_its_snapshots_and_swapping_it_in_restores_the_weights_exactly(tmp_path):
    layer = torch.nn.Linear(3, 2)
    average = ActorAverage()
    snapshots = []
    for step, value in ((10, 1.0), (11, 2.0), (12, 6.0)):
        with torch.no_grad():
            layer.weight.fill_(value)
            layer.bias.fill_(-value)
        snapshots.append(layer.weight.detach().clone())
        average.update(layer, step)
    assert average.count == 3 and average.first_step == 10
    torch.testing.assert_close(average.mean["weight"], torch.stack(snapshots).mean(0))
    torch.testing.assert_close(average.mean["bias"], torch.full((2,), -3.0))
    with averaged_weights(layer, average):
        assert torch.all(layer.weight == 3.0)
    assert torch.equal(layer.weight, snapshots[-1]) and torch.all(layer.bias == -6.0)

    average.save(tmp_path / "a.pt")
    back = ActorAverage.load(tmp_path / "a.pt")
    assert (back.count, back.first_step) == (3, 10) and torch.equal(back.mean["weight"], average.mean["weight"])
    with pytest.raises(ValueError, match="does not match"):
        back.load_into(torch.nn.Linear(4, 2))
    (tmp_path / "junk.pt").write_text("not a tensor file")
    with pytest.raises(ValueError, match=r"junk\.pt: not an actor average"):
        ActorAverage.load(tmp_path / "junk.pt")


def test_averaging_leaves_training_unchanged_and_the_run_ships_the_average(tmp_path):
    plain_dir = train(tiny_config(tmp_path / "plain", algo="sdrl", actor_average_steps=0), show_progress=False)
    assert not (plain_dir / "actor_average.pt").exists()
    run_dir = train(tiny_config(tmp_path / "avg", algo="sdrl", actor_average_steps=400), show_progress=False)
    raw, shipped = load_run(run_dir, averaged=False), load_run(run_dir)
    plain_model, raw_model = load_checkpoint(plain_dir), load_checkpoint(run_dir)
    for (name, a), b in zip(plain_model.policy.state_dict().items(), raw_model.policy.state_dict().values()):
        assert torch.equal(a, b), name  # the shadow average never touched training
    average = ActorAverage.load(run_dir / "actor_average.pt")
    assert average.count == 400 // 4 and average.first_step == 804  # one snapshot per vector step of 4 BS
    obs = np.random.default_rng(2).uniform(-0.5, 1.5, (64, 15)).astype(np.float32)
    assert not np.array_equal(shipped.act(obs), raw.act(obs))
    np.testing.assert_allclose(shipped.act(obs), shipped.spec.forward(obs), atol=1e-5)  # the spec is the average
    assert read_evaluations(run_dir)[-1]["actor_average_count"] == 100


def test_by_default_the_last_third_of_a_run_is_averaged():
    assert TrainConfig().actor_average_start == 100_000  # the screened window: 50k of 150k steps
    assert TrainConfig(steps=60_000).actor_average_start == 40_000
    assert TrainConfig(steps=6_000).actor_average_start == 5_000  # never before learning_starts
    assert TrainConfig(steps=60_000, actor_average_steps=10_000).actor_average_start == 50_000
    assert TrainConfig(actor_average_steps=0).actor_average_window == 0
    with pytest.raises(ValueError, match="actor_average_steps"):
        TrainConfig(actor_average_steps=-1)


def test_a_resumed_run_keeps_an_average_inside_its_window_and_restarts_one_the_window_moved_past(tmp_path):
    cfg = tiny_config(tmp_path, algo="sac", steps=800, eval_every_steps=400, actor_average_steps=800)
    kept = train(cfg, show_progress=False)  # window: after learning_starts (400) to the end
    train(cfg.with_(steps=1_200), resume=kept, show_progress=False)  # window 400-1200 holds the saved one
    assert ActorAverage.load(kept / "actor_average.pt").count == 800 // 4

    moved = train(cfg.with_(actor_average_steps=400), show_progress=False)  # window 400-800
    train(cfg.with_(steps=1_200, actor_average_steps=400), resume=moved, show_progress=False)  # window 800-1200
    average = ActorAverage.load(moved / "actor_average.pt")
    assert average.count == 400 // 4 and average.first_step == 804
