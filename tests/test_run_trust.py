"""A run directory is something people hand around: export, evaluate, compare and the pipeline
read its actor from tensors and JSON and never unpickle anything in it; ``train --resume``, the one
command that needs SB3's pickled checkpoint, first checks every file against the run's manifest and
refuses one that changed, naming it. Each planted file is made here, and each planted pickle is
first shown to run when unpickled, so that its absence of effect means something."""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3 import SAC
from typer.testing import CliRunner

from aolo.cli import app
from aolo.train.actor_average import ActorAverage
from aolo.train.actor_weights import ActorKwargs, actor_kwargs_from_config
from aolo.train.checkpoint import MANIFEST_FILE, verified_checkpoint
from aolo.train.run import load_run
from aolo.train.train_config import TrainConfig
from aolo.train.training import train

torch.set_num_threads(1)  # 2-core machine shared with other test runs
pytestmark = pytest.mark.xdist_group("test_run_trust")  # one xdist worker: its module fixture trains two runs once

OLD_FORMAT_FILES = ("actor.safetensors", "actor_kwargs.json", MANIFEST_FILE)
"""What runs saved before this change lack."""


class _CreatesMarker:
    """Unpickles into ``open(marker, "w")``: the file appearing proves a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _runs_when_unpickled(load, marker: Path) -> None:
    """Check that ``load()`` (an unpickling) creates ``marker``, then remove it."""
    assert not marker.exists()
    try:
        load()
    except Exception:  # what follows the planted call may fail; the call itself has run
        pass
    assert marker.exists(), "the planted pickle did not run: the test would prove nothing"
    marker.unlink()


def _copy(run_dir: Path, to: Path, old_format: bool = False) -> Path:
    shutil.copytree(run_dir, to)
    if old_format:
        for name in OLD_FORMAT_FILES:
            (to / name).unlink()
    return to


def _plant_in_model_data(run_dir: Path, marker: Path) -> None:
    """Replace the cloudpickled policy class in model.zip's ``data`` entry with a planted call."""
    path = run_dir / "model.zip"
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    data = json.loads(entries["data"])
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(_CreatesMarker(marker))).decode()
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)


def _plant_in_policy_pth(run_dir: Path, marker: Path) -> None:
    """Replace model.zip's ``policy.pth`` with a ``torch.save`` whose pickle makes a planted call."""
    path = run_dir / "model.zip"
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    buf = io.BytesIO()
    torch.save({"actor.latent_pi.0.weight": _CreatesMarker(marker)}, buf)
    entries["policy.pth"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)


def _one_line_exit_2(result, *needles: str) -> str:
    output = getattr(result, "stderr", None) if not hasattr(result, "exit_code") else result.output
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert code == 2, (code, output)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _resume(run_dir: Path, *extra: str):
    return subprocess.run([sys.executable, "-m", "aolo", "train", "--resume", str(run_dir), "--torch-threads", "1",
                           *extra], capture_output=True, text=True, timeout=600)


def _sb3_actions(run_dir: Path, obs: np.ndarray, averaged: bool = True) -> np.ndarray:
    """The old way: SB3's load of model.zip (it unpickles), the average swapped in."""
    model = SAC.load(run_dir / "model.zip", device="cpu")
    if averaged:
        ActorAverage.load(run_dir / "actor_average.pt").load_into(model.policy.actor)
    with torch.no_grad():
        return model.policy.actor(torch.as_tensor(obs), deterministic=True).numpy()


def tiny(tmp_path: Path, **changes) -> TrainConfig:
    base = dict(scenario="tiny", steps=800, n_envs=4, learning_starts=400, batch_size=64, eval_every_steps=400,
                eval_n_bs=1, eval_seeds=(501,), log_every_steps=400, actor_average_steps=200, out_dir=str(tmp_path))
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny SDRL run, and a tiny SAC run that also saves its replay buffer (small, 2,000 transitions)."""
    out = tmp_path_factory.mktemp("runs")
    return {"sdrl": train(tiny(out, algo="sdrl"), show_progress=False),
            "sac": train(tiny(out, algo="sac", save_replay_buffer=True, buffer_size=2_000), show_progress=False)}


OBS = np.random.default_rng(11).uniform(-0.5, 1.5, (256, 15)).astype(np.float32)


# --- the actor from tensors and JSON ----------------------------------------------------------------
@pytest.mark.parametrize("algo", ["sdrl", "sac"])
def test_the_actor_read_from_tensors_acts_bit_for_bit_like_sb3s_load(runs, tmp_path, algo):
    run_dir = runs[algo]
    assert ActorAverage.load(run_dir / "actor_average.pt").count > 0  # the shipped actor is an average
    run = load_run(run_dir)
    np.testing.assert_array_equal(run.act(OBS), _sb3_actions(run_dir, OBS))
    np.testing.assert_array_equal(load_run(run_dir, averaged=False).act(OBS), _sb3_actions(run_dir, OBS, False))
    # a run saved before actor.safetensors: its weights from model.zip's policy.pth alone
    old = _copy(run_dir, tmp_path / "old", old_format=True)
    np.testing.assert_array_equal(load_run(old).act(OBS), run.act(OBS))
    assert ActorKwargs.read(run_dir / "actor_kwargs.json") == actor_kwargs_from_config(run.config)
    assert ActorKwargs.read(run_dir / "actor_kwargs.json").n_parameters() == sum(p.numel() for p in run.actor.parameters())


def test_a_planted_pickle_in_model_zip_never_runs_in_export_evaluate_compare_or_the_pipeline(runs, tmp_path):
    from aolo.pipeline import PipelineConfig, evaluate_runs
    from aolo.report import Report

    marker = tmp_path / "pwned"
    run_dir = _copy(runs["sdrl"], tmp_path / runs["sdrl"].name)
    _plant_in_model_data(run_dir, marker)
    _runs_when_unpickled(lambda: SAC.load(run_dir / "model.zip", device="cpu"), marker)

    expected = load_run(runs["sdrl"]).act(OBS)
    np.testing.assert_array_equal(load_run(run_dir).act(OBS), expected)
    cli = CliRunner()
    r = cli.invoke(app, ["export", str(run_dir), "--to", "onnx", "--out", str(tmp_path / "bundle"), "--n-obs", "200"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["evaluate", "--scenario", "tiny", "-p", str(run_dir), "--seeds", "501", "--n-bs", "1"])
    assert r.exit_code == 0, r.output
    cfg = PipelineConfig(out_dir=tmp_path / "report", scenario="tiny", train_seeds=(0,), eval_seeds=(1001,), eval_n_bs=1)
    # the pipeline's frontier cache: compare computes the LP frontier once, the pipeline's evaluation reads it
    r = cli.invoke(app, ["compare", str(run_dir), "--seeds", "1001", "--n-bs", "1", "--out", str(tmp_path / "c.png"),
                         "--cache", str(cfg.out_dir / "cache")])
    assert r.exit_code == 0, r.output
    (loaded,) = evaluate_runs(cfg, Report("planted"), {"sdrl": [run_dir]}, "")
    np.testing.assert_array_equal(loaded.act(OBS), expected)
    assert not marker.exists()

    # resume unpickles model.zip: it refuses the file that changed since the run saved it
    _one_line_exit_2(_resume(run_dir), str(run_dir / "model.zip"), "changed since the run saved it", "refusing")
    assert not marker.exists()


def test_an_old_run_is_read_from_policy_pth_alone_and_resumes_only_with_trust_run(runs, tmp_path):
    marker = tmp_path / "pwned"
    planted = _copy(runs["sac"], tmp_path / "planted", old_format=True)
    _plant_in_model_data(planted, marker)
    _runs_when_unpickled(lambda: SAC.load(planted / "model.zip", device="cpu"), marker)
    np.testing.assert_array_equal(load_run(planted).act(OBS), load_run(runs["sac"]).act(OBS))
    r = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "-p", str(planted), "--seeds", "501", "--n-bs", "1"])
    assert r.exit_code == 0, r.output
    line = _one_line_exit_2(_resume(planted), str(planted / MANIFEST_FILE), "missing", "--trust-run")
    assert not marker.exists()

    clean = _copy(runs["sac"], tmp_path / "clean", old_format=True)
    r = _resume(clean, "--trust-run", "--steps", "1200")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((clean / "train_state.json").read_text())["num_timesteps"] == 1_200
    assert verified_checkpoint(clean)  # the resumed run saved a manifest: no more --trust-run needed
    assert (clean / "actor.safetensors").is_file() and "--trust-run" in line
    r = CliRunner().invoke(app, ["train", "--trust-run"])
    _one_line_exit_2(r, "--trust-run", "only with --resume")


def test_a_planted_policy_pth_is_refused_in_one_line(runs, tmp_path):
    marker = tmp_path / "pwned"
    old = _copy(runs["sdrl"], tmp_path / "old", old_format=True)
    _plant_in_policy_pth(old, marker)
    with zipfile.ZipFile(old / "model.zip") as z:
        policy_pth = z.read("policy.pth")
    _runs_when_unpickled(lambda: torch.load(io.BytesIO(policy_pth), weights_only=False), marker)
    with pytest.raises(ValueError, match=r"model\.zip: entry policy\.pth is not a plain dict of tensors, refusing"):
        load_run(old)
    r = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "-p", str(old), "--seeds", "501"])
    _one_line_exit_2(r, "model.zip", "policy.pth")
    assert not marker.exists()


def test_a_planted_replay_buffer_is_refused_by_resume(runs, tmp_path):
    marker = tmp_path / "pwned"
    with_buffer = _copy(runs["sac"], tmp_path / "with_buffer")
    assert (with_buffer / "replay_buffer.pkl").stat().st_size > 0
    (with_buffer / "replay_buffer.pkl").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    _runs_when_unpickled(lambda: pickle.loads((with_buffer / "replay_buffer.pkl").read_bytes()), marker)
    _one_line_exit_2(_resume(with_buffer), str(with_buffer / "replay_buffer.pkl"), "refusing")
    # a buffer planted beside a run that never saved one is not in its manifest either
    without = _copy(runs["sdrl"], tmp_path / "without")
    (without / "replay_buffer.pkl").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    _one_line_exit_2(_resume(without), str(without / "replay_buffer.pkl"), "not listed in run_manifest.json")
    assert not marker.exists()


def test_resume_checks_every_file_of_the_checkpoint_naming_the_one_that_changed(runs, tmp_path):
    run_dir = runs["sdrl"]
    assert set(verified_checkpoint(run_dir)) == {"model.zip"}  # the bytes SB3 will unpickle
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"config.json", "model.zip", "actor.safetensors", "actor_kwargs.json",
                                      "actor_spec.json", "evaluations.jsonl", "actor_average.pt", "train_state.json"}
    for i, name in enumerate(["config.json", "train_state.json", "actor_average.pt", "evaluations.jsonl"]):
        copy = _copy(run_dir, tmp_path / f"changed{i}")
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 1
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(ValueError, match=rf"{name}: SHA-256 [0-9a-f]+ differs from run_manifest\.json's"):
            verified_checkpoint(copy)
    copy = _copy(run_dir, tmp_path / "gone")
    (copy / "actor_spec.json").unlink()
    with pytest.raises(ValueError, match=r"actor_spec\.json: missing \(listed in run_manifest\.json\)"):
        verified_checkpoint(copy)
    copy = _copy(run_dir, tmp_path / "linked")
    (copy / "model.zip").rename(tmp_path / "elsewhere.zip")
    (copy / "model.zip").symlink_to(tmp_path / "elsewhere.zip")
    with pytest.raises(ValueError, match=r"model\.zip: a symbolic link"):
        verified_checkpoint(copy)
    copy = _copy(run_dir, tmp_path / "bad_manifest")
    text = (copy / MANIFEST_FILE).read_text().replace('"model.zip"', '"../model.zip"')
    (copy / MANIFEST_FILE).write_text(text)
    with pytest.raises(ValueError, match=r"run_manifest\.json: field 'files\.\.\./model\.zip\.\[key\]'"):
        verified_checkpoint(copy)


# --- bounded and checked before anything is built ----------------------------------------------------
def test_actor_files_that_are_malformed_out_of_bounds_or_linked_are_one_line_errors(runs, tmp_path):
    run_dir = runs["sdrl"]

    def refused(edit, *needles: str) -> None:
        copy = _copy(run_dir, tmp_path / f"case{len(list(tmp_path.iterdir()))}")
        edit(copy)
        with pytest.raises(ValueError) as info:
            load_run(copy)
        message = str(info.value)
        assert "\n" not in message and all(n in message for n in needles), message

    def kwargs(**changes):
        def edit(copy: Path) -> None:
            data = json.loads((copy / "actor_kwargs.json").read_text())
            for key, value in changes.items():
                if key.startswith("popsan."):
                    data["popsan"][key.split(".")[1]] = value
                else:
                    data[key] = value
            (copy / "actor_kwargs.json").write_text(json.dumps(data))
        return edit

    t0 = time.perf_counter()
    refused(kwargs(**{"popsan.timesteps": 10**6}), "actor_kwargs.json", "popsan.timesteps", "more than 1000")
    refused(kwargs(net_arch=[60_000] * 8), "actor_kwargs.json", "parameters, more than 50000000")
    refused(kwargs(activation_fn="os.system"), "actor_kwargs.json", "activation_fn")
    assert time.perf_counter() - t0 < 30  # refused before any actor is built

    def poison(copy: Path) -> None:
        tensors = load_file(copy / "actor.safetensors")
        tensors["popsan.decoder.weight"][0, 0] = float("nan")
        save_file(tensors, copy / "actor.safetensors")

    refused(poison, "actor.safetensors", "tensor 'popsan.decoder.weight' holds non-finite values")

    def reshape(copy: Path) -> None:
        tensors = load_file(copy / "actor.safetensors")
        tensors["popsan.decoder.bias"] = torch.zeros(3)
        save_file(tensors, copy / "actor.safetensors")

    refused(reshape, "actor.safetensors", "tensor 'popsan.decoder.bias' has shape (3,)")
    refused(lambda c: (c / "actor.safetensors").write_bytes(b"\xff" * 64), "actor.safetensors", "not a safetensors file")

    def link(copy: Path) -> None:
        (copy / "actor.safetensors").unlink()
        (copy / "actor.safetensors").symlink_to(run_dir / "actor.safetensors")

    refused(link, "actor.safetensors", "a symbolic link")
    refused(lambda c: (c / "actor_kwargs.json").write_text(json.dumps(
        {**json.loads((c / "actor_kwargs.json").read_text()), "actor_class": "Actor", "popsan": None})),
            "actor_kwargs.json")
    r = CliRunner().invoke(app, ["evaluate", "--scenario", "tiny", "-p", str(tmp_path / "case0"), "--seeds", "501"])
    _one_line_exit_2(r, "popsan.timesteps")


def test_the_parameter_count_is_known_before_an_actor_is_built():
    for algo in ("sdrl", "sac"):
        for hidden in ((32, 32), (7,), (64, 16, 8)):
            config = TrainConfig(algo=algo, actor_hidden=hidden, popsan={"hidden_sizes": hidden[::-1],
                                                                         "pop_per_obs_dim": 3})
            kwargs = actor_kwargs_from_config(config)
            actor = kwargs.build()
            assert kwargs.n_parameters() == sum(p.numel() for p in actor.parameters()), (algo, hidden)
            assert ActorKwargs.of(actor) == kwargs
