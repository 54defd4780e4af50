"""scripts/device_check.sh (issue 26) on a CPU-only machine: a clear "no GPU" line, then the CPU
parts (training on cpu, the ONNX actors on CPU with their energy estimated and labelled, since no
counter is readable) in one table, in its smoke mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_device_check_on_a_cpu_only_machine_says_no_gpu_and_prints_the_cpu_table(tmp_path):
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU: run scripts/device_check.sh itself")
    res = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), "--smoke", "--json", str(tmp_path / "d.json")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "AOLO_PYTHON": sys.executable})
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("no GPU: nvidia-smi finds no NVIDIA GPU on this machine")
    table = [line for line in lines if line.startswith("| ")]
    assert [c.strip() for c in table[0].strip("|").split("|")] == ["check", "SAC (ANN actor)", "SDRL (SNN actor)"]
    text = "\n".join(table)
    assert "ONNX CUDA vs CPU, max abs delta a | n/a (no CUDA provider)" in " ".join(text.split())
    for batch in (1, 256):
        assert f"CPUExecutionProvider: J/decision batch {batch}, estimated (server-cpu profile)" in text
    assert "training env steps/s on cpu" in text and "cuda" not in text.split("training", 1)[1]
    import json

    figures = json.loads((tmp_path / "d.json").read_text())
    e = figures["onnx"]["actors"]["sdrl"]["energy"]["cpu"]["batches"]
    assert set(e) == {"1", "256"} and all(b["estimated_j"] > 0 for b in e.values())
    if not figures["onnx"]["counters"]:  # nothing measured: no measured figure, and the reasons are printed
        assert all("measured_j" not in b for b in e.values()) and "not measured" in text
        assert figures["onnx"]["counter_reasons"] and "energy counters: none (not read: " in res.stdout
    rates = figures["train"]["env_steps_per_s"]
    assert set(rates) == {"sac", "sdrl"} and all(r["cpu"] > 0 for r in rates.values())


def test_train_device_auto_hands_sb3_the_cpu_and_an_explicit_device_as_given():
    from aolo.train.train_config import TrainConfig
    from aolo.train.training import sac_kwargs

    assert sac_kwargs(TrainConfig(device="auto"))["device"] == TrainConfig.AUTO_DEVICE == "cpu"
    assert sac_kwargs(TrainConfig(device="cuda"))["device"] == "cuda"  # checked against torch when training starts
