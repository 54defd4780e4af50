"""A training run killed (a real SIGKILL) in the middle of writing a checkpoint resumes from one
complete checkpoint, finishes, and leaves files that agree with each other; the atomic-write
helper underneath replaces a file whole or not at all."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aolo.cli import app
from aolo.runtime.atomic_files import atomic_path, remove_temporary_files, replace_dir_atomic, write_json_atomic
from aolo.train.actor_average import ActorAverage
from aolo.train.checkpoint import STAGING_DIR
from aolo.train.run import load_run, read_evaluations

# Runs TrainConfig(**json config) and SIGKILLs itself at the chosen instant of the chosen checkpoint:
# 'writing' when model.zip is complete in the staging folder but not yet renamed there, 'moving'
# when every file but train_state.json has been moved into the run directory.
KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path

where, nth, config = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
real_replace, hits = os.replace, [0]

def replace(src, dst):
    src, dst = Path(src), Path(dst)
    writing = where == "writing" and dst.parent.name == ".checkpoint" and dst.name == "model.zip"
    moving = where == "moving" and src.parent.name == ".checkpoint" and src.name == "train_state.json"
    if writing or moving:
        hits[0] += 1
        if hits[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

os.replace = replace
import torch
torch.set_num_threads(1)
from aolo.train.train_config import TrainConfig
from aolo.train.training import train
train(TrainConfig(**config), show_progress=False)
"""

CONFIG = dict(algo="sac", scenario="tiny", steps=800, n_envs=4, learning_starts=200, batch_size=64,
              eval_every_steps=200, eval_n_bs=1, eval_seeds=[501], log_every_steps=200)


def _model_step(run_dir: Path) -> int:
    """num_timesteps stored in SB3's model.zip, read without loading the model."""
    with zipfile.ZipFile(run_dir / "model.zip") as z:
        return int(json.loads(z.read("data"))["num_timesteps"])


@pytest.mark.parametrize("where", ["writing", "moving"])
def test_a_run_killed_while_checkpointing_resumes_and_finishes_with_consistent_files(tmp_path, where):
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    config = dict(CONFIG, out_dir=str(tmp_path / "runs"))
    proc = subprocess.run([sys.executable, str(script), where, "3", json.dumps(config)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()

    # the kill landed inside the third checkpoint (step 600), after the second was committed
    staging = run_dir / STAGING_DIR
    assert staging.is_dir()
    assert json.loads((run_dir / "train_state.json").read_text())["num_timesteps"] == 400
    if where == "moving":  # the state of the issue: a newer model beside an older train_state.json
        assert _model_step(run_dir) == 600 and (staging / "train_state.json").is_file()
    else:
        assert _model_step(run_dir) == 400 and list(staging.glob(".model.zip.*.tmp"))

    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output

    assert not staging.exists() and not list(run_dir.glob(".*.tmp"))
    assert json.loads((run_dir / "train_state.json").read_text())["num_timesteps"] == 800
    assert _model_step(run_dir) == 800
    assert [e["step"] for e in read_evaluations(run_dir)] == [200, 400, 600, 800]
    with open(run_dir / "progress.csv") as f:
        steps = [int(float(r["global_step"])) for r in csv.DictReader(f)]
    assert steps[-1] == 800 and steps == sorted(set(steps))
    average = ActorAverage.load(run_dir / "actor_average.pt")  # one snapshot per vector step since its first
    assert average.first_step is not None and average.count == (800 - average.first_step) // 4 + 1
    run = load_run(run_dir)
    obs = np.random.default_rng(0).uniform(-0.5, 1.5, (32, 15)).astype(np.float32)
    np.testing.assert_allclose(run.act(obs), run.spec.forward(obs), atol=1e-5)  # the spec is the shipped actor


def test_an_atomic_write_replaces_the_whole_file_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"step": 1})
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path) as tmp:
            tmp.write_text('{"step": 2, "trunc')
            raise RuntimeError("writer failed")
    assert json.loads(path.read_text()) == {"step": 1} and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    write_json_atomic(path, {"step": 2})
    assert json.loads(path.read_text()) == {"step": 2} and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_folder_is_published_whole_and_leftovers_of_a_kill_are_removed(tmp_path):
    target = tmp_path / "bundle"
    for version in ("old", "new"):
        staged = tmp_path / f".bundle.{version}.tmp"
        staged.mkdir()
        (staged / "a.txt").write_text(version)
        replace_dir_atomic(staged, target)
        assert (target / "a.txt").read_text() == version and not staged.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    (tmp_path / ".model.zip.0123abcd.tmp").write_bytes(b"half a zip")
    (tmp_path / ".bundle.1234.tmp").mkdir()
    assert len(remove_temporary_files(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
