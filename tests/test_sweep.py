"""aolo sweep on a real local Ray (num_cpus=2, no dashboard) and the --ray fan-out of evaluations:
a 2 x 2 sweep of tiny runs gives the run directories and evaluation numbers of the same runs done one
by one; a trial whose worker is SIGKILLed is retried and completes; a finished sweep started again
runs nothing; a bad sweep file gets one line naming the key."""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

pytestmark = pytest.mark.xdist_group("ray")  # one xdist worker owns the local Ray

ray = pytest.importorskip("ray", reason="Ray Tune is the sweep extra (make install installs it)")

from aolo.cli import app  # noqa: E402
from aolo.train.comparison import compare_runs  # noqa: E402
from aolo.train.evaluate import evaluate_policy  # noqa: E402
from aolo.train.evaluation_fanout import compare_runs_on_ray, evaluate_on_ray, lp_frontier_on_ray  # noqa: E402
from aolo.train.frontier import lp_frontier  # noqa: E402
from aolo.train.policies import REFERENCE_POLICIES  # noqa: E402
from aolo.train.run import load_run  # noqa: E402
from aolo.train.scenario import get_scenario  # noqa: E402
from aolo.train.seeds import EVAL_SEEDS  # noqa: E402
from aolo.train.simulator import ServiceModel  # noqa: E402
from aolo.train.sweep import find_run, run_sweep  # noqa: E402
from aolo.train.sweep_config import read_sweep_file, sweep_from_dict  # noqa: E402
from aolo.train.training import train  # noqa: E402

torch.set_num_threads(1)

TINY_BASE = dict(scenario="tiny", steps=800, n_envs=4, learning_starts=200, batch_size=64, eval_every_steps=400,
                 eval_n_bs=2, eval_seeds=[501], log_every_steps=400)
"""A few hundred gradient steps: enough for every file of a run directory, seconds per run."""


@pytest.fixture(scope="session", autouse=True)
def local_ray():
    """One local Ray for this xdist worker (session scope: a module fixture would be set up again whenever
    xdist interleaves another module's tests), as aolo sweep starts it (2 CPUs, no dashboard)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tiny_sweep(out: Path, **changes):
    data = {"name": "tiny", "out_dir": str(out), "metric": "carbon_g_per_request", "base": dict(TINY_BASE),
            "grid": {"algo": ["sac", "sdrl"], "seed": [0, 1]}}
    data.update(changes)
    return sweep_from_dict(data, "test sweep")


def _safetensors_header(path: Path) -> dict:
    raw = path.read_bytes()
    return json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])


def _sb3_data_without_descriptions(data: Any) -> Any:
    """SB3's ``data`` entry with each pickled object reduced to its type and pickle: the readable
    description beside them holds memory addresses and set orders that vary by process."""
    if isinstance(data, dict):
        if ":serialized:" in data:
            return {k: data[k] for k in (":type:", ":serialized:") if k in data}
        return {k: _sb3_data_without_descriptions(v) for k, v in data.items()}
    return data


def same_run_contents(a: Path, b: Path) -> None:
    """Two run directories hold the same run: every file aolo writes, but wall times, the SB3
    model's start time and the folder they were written to."""
    assert json.loads((a / "versions.json").read_text()) == json.loads((b / "versions.json").read_text())
    for name in ("actor_spec.json", "actor_kwargs.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"
    # actor.safetensors: its header's __metadata__ comes from a hash map whose key order varies by
    # process, so the header is compared parsed, and every tensor bit for bit
    headers = [_safetensors_header(d / "actor.safetensors") for d in (a, b)]
    assert headers[0] == headers[1]
    ta, tb = (load_file(d / "actor.safetensors") for d in (a, b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and ta[key].numpy().tobytes() == tb[key].numpy().tobytes(), key
    config_a, config_b = (json.loads((d / "config.json").read_text()) for d in (a, b))
    assert {k: v for k, v in config_a.items() if k != "out_dir"} == {k: v for k, v in config_b.items() if k != "out_dir"}
    state_a, state_b = (json.loads((d / "train_state.json").read_text()) for d in (a, b))
    assert state_a.pop("wall_s") >= 0 and state_b.pop("wall_s") >= 0 and state_a == state_b
    evals = [[{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in (d / "evaluations.jsonl")
              .read_text().splitlines()] for d in (a, b)]
    assert evals[0] == evals[1] and len(evals[0]) == 2
    za, zb = zipfile.ZipFile(a / "model.zip"), zipfile.ZipFile(b / "model.zip")
    assert za.namelist() == zb.namelist()
    for name in za.namelist():
        if name == "data":  # SB3's JSON: objects as their pickle plus a readable description
            da, db = (_sb3_data_without_descriptions(json.loads(z.read(name))) for z in (za, zb))
            da.pop("start_time"), db.pop("start_time")
            assert da == db
        else:
            assert za.read(name) == zb.read(name), f"model.zip/{name} differs"
    avg_a, avg_b = (torch.load(d / "actor_average.pt", weights_only=True) for d in (a, b))
    assert avg_a.keys() == avg_b.keys()
    for key in avg_a:
        if isinstance(avg_a[key], dict):
            for name in avg_a[key]:
                assert torch.equal(avg_a[key][name], avg_b[key][name])
        else:
            assert avg_a[key] == avg_b[key]


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    report = run_sweep(tiny_sweep(out), show_progress=False)
    return out, report


# --- the sweep ---------------------------------------------------------------------------------
def test_a_2x2_sweep_writes_the_run_directories_of_the_same_runs_done_one_by_one(finished_sweep, tmp_path):
    out, report = finished_sweep
    assert [r.status for r in report.rows] == ["done"] * 4 and all(r.retries == 0 for r in report.rows)
    assert sorted((r.overrides["algo"], r.overrides["seed"]) for r in report.rows) == [
        ("sac", 0), ("sac", 1), ("sdrl", 0), ("sdrl", 1)]
    for row in report.rows:
        config = tiny_sweep(out).trial_config(row.overrides).with_(out_dir=str(tmp_path / "serial"))
        serial = train(config, show_progress=False)
        swept = Path(row.run_dir)
        assert swept.parent.parent == out / "trials" and swept.name.startswith(f"tiny__{config.algo}__{config.seed}__")
        same_run_contents(swept, serial)
        last = json.loads((serial / "evaluations.jsonl").read_text().splitlines()[-1])
        assert row.metrics["carbon_g_per_request"] == last["summary"]["carbon_g_per_request"]
    assert report.best is not None and report.best.metrics["carbon_g_per_request"] == min(
        r.metrics["carbon_g_per_request"] for r in report.rows)
    saved = json.loads((out / "sweep_results.json").read_text())
    assert [t["trial"] for t in saved["trials"]] == [r.trial for r in report.rows]


def test_compare_on_ray_gives_the_serial_comparison_number_for_number(finished_sweep):
    _, report = finished_sweep
    runs = [load_run(r.run_dir) for r in report.rows]
    model = ServiceModel(get_scenario("tiny"))
    serial = compare_runs(model, runs, [1002], n_bs=1)
    fanned = compare_runs_on_ray(model, runs, [1002], n_bs=1)
    assert [r.to_dict() for r in fanned.references] == [r.to_dict() for r in serial.references]
    assert list(fanned.groups) == list(serial.groups)
    for algo in serial.groups:
        assert [(run.run_dir, res.to_dict()) for run, res in fanned.groups[algo]] == \
               [(run.run_dir, res.to_dict()) for run, res in serial.groups[algo]]
    assert fanned.frontier.to_dict() == serial.frontier.to_dict()
    assert len(serial.frontier.points) == 45


def test_resuming_a_finished_sweep_runs_nothing(finished_sweep):
    out, report = finished_sweep
    files = {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("*") if p.is_file()}
    again = run_sweep(tiny_sweep(out), show_progress=False)
    assert [(r.trial, r.status, r.run_dir, r.metrics) for r in again.rows] == \
           [(r.trial, r.status, r.run_dir, r.metrics) for r in report.rows]
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("*") if p.is_file()} == files


def test_another_sweep_file_in_a_used_folder_is_refused(finished_sweep):
    out, _ = finished_sweep
    with pytest.raises(ValueError, match="another sweep file"):
        run_sweep(tiny_sweep(out, grid={"algo": ["sac"], "seed": [2]}), show_progress=False)


def _trial_workers() -> list:
    """The Ray worker processes of this test's Ray that run a Tune trial (function trainables run
    in an actor named ImplicitFunc)."""
    import psutil

    out = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def test_a_trial_whose_worker_is_sigkilled_is_retried_and_completes(tmp_path):
    out = tmp_path / "killed"
    sweep = tiny_sweep(out, grid={"algo": ["sac"], "seed": [3]}, max_failures=2,
                       base={**TINY_BASE, "steps": 1_200, "eval_every_steps": 400})
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            run_dir, step = find_run(next(iter((out / "trials").glob("*")), out / "none")) \
                if (out / "trials").is_dir() else (None, 0)
            if run_dir is not None and 0 < step < 1_200:
                for proc in _trial_workers():
                    killed.append(proc.pid)
                    os.kill(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    report = run_sweep(sweep, show_progress=False)
    killer.join(timeout=5)
    assert killed, "no trial worker was found to kill"
    (row,) = report.rows
    assert row.status == "done" and row.retries >= 1
    run_dir, step = find_run(Path(row.run_dir).parent)
    assert step == 1_200 and len(list(Path(row.run_dir).parent.iterdir())) == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 1_200


def test_a_search_chooses_on_validation_seeds_and_evaluates_the_chosen_trial_once_on_the_evaluation_seeds(tmp_path):
    out = tmp_path / "search"
    sweep = sweep_from_dict({"name": "search", "out_dir": str(out), "metric": "carbon_g_per_request",
                             "base": {**TINY_BASE, "algo": "sac"}, "grid": {"seed": [0]},
                             "search": {"num_samples": 3, "seed": 0,
                                        "space": {"learning_rate": {"loguniform": [1e-4, 1e-2]}},
                                        "asha": {"grace_period_steps": 400, "reduction_factor": 2}}}, "test sweep")
    report = run_sweep(sweep, show_progress=False)
    assert len(report.rows) == 3 and len({r.overrides["learning_rate"] for r in report.rows}) == 3
    assert all(r.status in ("done", "stopped early") for r in report.rows), [r.status for r in report.rows]
    for row in report.rows:  # the trials saw the validation seeds only
        for line in (Path(row.run_dir) / "evaluations.jsonl").read_text().splitlines():
            assert [s["seed"] for s in json.loads(line)["result"]["per_seed"]] == [501]
    best = report.best
    assert best is not None and best.metrics["carbon_g_per_request"] == min(
        r.metrics["carbon_g_per_request"] for r in report.rows if r.status == "done")
    chosen = report.chosen_evaluation
    assert chosen["trial"] == best.trial and chosen["seeds"] == list(EVAL_SEEDS)
    assert "the evaluation seeds never entered the search" in chosen["chosen_on"]
    serial = evaluate_policy(load_run(best.run_dir).policy(), ServiceModel(get_scenario("tiny")), EVAL_SEEDS)
    assert chosen["result"] == serial.to_dict()
    again = run_sweep(sweep, show_progress=False)  # finished: nothing trains, the evaluation is read back
    assert [(r.trial, r.status) for r in again.rows] == [(r.trial, r.status) for r in report.rows]
    assert again.chosen_evaluation == chosen


# --- the fan-out of aolo evaluate ----------------------------------------------------------------
# two seeds on 2 CPUs: one task per seed, all margins (policies) side by side; one seed: two groups
@pytest.mark.parametrize("seeds", [[1001, 1003], [1003]])
def test_the_lp_frontier_on_ray_equals_the_serial_one(tiny_model, seeds):
    margins = (-0.05, 0.0, 0.02, 0.05, 0.08)
    serial = lp_frontier(tiny_model, seeds, n_bs=2, margins=margins)
    fanned = lp_frontier_on_ray(tiny_model, seeds, n_bs=2, margins=margins)
    assert fanned.to_dict() == serial.to_dict() and len(serial.points) == 5


@pytest.mark.parametrize("seeds", [[1001, 1003], [1003]])
def test_evaluate_on_ray_equals_the_serial_evaluation(tiny_model, seeds):
    names = ["base", "class-aware-lp", "random"]
    serial = [evaluate_policy(REFERENCE_POLICIES[n](), tiny_model, seeds, n_bs=2) for n in names]
    fanned = evaluate_on_ray(names, tiny_model.scenario, seeds, n_bs=2)
    assert [r.to_dict() for r in fanned] == [r.to_dict() for r in serial]


def test_aolo_evaluate_with_ray_prints_and_writes_the_serial_results(tmp_path):
    runner = CliRunner()
    args = ["evaluate", "--scenario", "tiny", "-p", "sprout-lp", "--seeds", "1001", "--n-bs", "2"]
    serial = runner.invoke(app, [*args, "--out", str(tmp_path / "serial.json")])
    fanned = runner.invoke(app, [*args, "--ray", "--out", str(tmp_path / "ray.json")])
    assert serial.exit_code == 0 and fanned.exit_code == 0, fanned.output
    assert json.loads((tmp_path / "ray.json").read_text()) == json.loads((tmp_path / "serial.json").read_text())


# --- the sweep file -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, named", [
    ("[grid]\nlerning_rate = [1e-4]\n", "grid.lerning_rate: not a TrainConfig field"),
    ("[base]\nsteps = -5\n", "base.steps:"),
    ("[grid]\nseed = [0, 1001]\n", "grid (seed=1001): seed 1001 is an evaluation or validation seed"),
    ("metrik = 'x'\n", "metrik: not a key of the sweep file"),
    ("[search]\nnum_samples = 2\n[search.space]\ngamma = { uniform = [0.9, 0.5] }\n", "search.space.gamma"),
    ("[search]\nnum_samples = 2\n[search.space]\n\"popsan.timestep\" = { choice = [3] }\n",
     "search.space.popsan.timestep: not a TrainConfig field"),
    ("[base]\nout_dir = 'x'\n", "base.out_dir: set by the sweep"),
    ("[grid]\nseed = [0, 1]\n[search]\nnum_samples = 2\n[search.space]\ngamma = { uniform = [0.4, 0.6] }\n",
     "grid: a search runs on one grid point, got 2"),
])
def test_a_bad_sweep_file_gets_one_line_naming_the_key(tmp_path, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_sweep_file(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and named in message, message
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2 and named in result.output and len(result.output.strip().splitlines()) == 1


def test_a_sweep_file_expands_its_grid_in_file_order_with_popsan_fields(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('[base]\nscenario = "tiny"\n[base.popsan]\ntimesteps = 3\n'
                    '[grid]\nalgo = ["sdrl", "sac"]\nseed = [4, 5]\n"popsan.hidden_sizes" = [[16], [8, 8]]\n')
    sweep = read_sweep_file(path)
    configs = sweep.check_trials(str(path))
    assert [(c.algo, c.seed, c.popsan.hidden_sizes) for c in configs][:3] == [
        ("sdrl", 4, (16,)), ("sdrl", 4, (8, 8)), ("sdrl", 5, (16,))]
    assert len(configs) == 8 and all(c.popsan.timesteps == 3 and c.scenario == "tiny" for c in configs)
    assert np.unique([c.model_dump_json() for c in configs]).size == 8
