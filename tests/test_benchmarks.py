"""Every script in ``benchmarks/`` runs: each one's ``--smoke`` mode (a few seconds of work) in a
subprocess, as ``make bench`` would run it, so that a change that breaks a benchmark fails here.

The figures a smoke run prints mean nothing (tiny budgets on a shared machine); the tests check
that the script finishes and prints its summary lines. Speed targets are the benchmarks' own
business, never a test's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

SUMMARY_LINES: dict[str, tuple[str, ...]] = {
    "env_throughput.py": ("single env (LLMServiceEnv)", "ratio vector / single"),
    "request_sources.py": ("synthetic: 100,000 requests sampled",),
    "runtime_latency.py": ("in-process decisions", "PolicyService.decide", "HTTP on loopback"),
    "train_throughput.py": ("sdrl:", "sac :", "ratio sac / sdrl"),
}
"""What each benchmark prints when it has run every part; a new script must be added here."""

SMOKE_TESTED_ELSEWHERE: dict[str, str] = {
    "gateway_overhead.py": "tests/test_gateway_benchmark.py",  # needs the session's real LLM server
}
"""Benchmarks whose smoke mode a test file of their own runs (it checks their JSON figures too)."""


def test_every_benchmark_has_a_smoke_test() -> None:
    assert sorted(p.name for p in BENCHMARKS.glob("*.py")) == sorted([*SUMMARY_LINES, *SMOKE_TESTED_ELSEWHERE])
    repo = BENCHMARKS.parent
    for test_file in SMOKE_TESTED_ELSEWHERE.values():
        assert (repo / test_file).is_file(), test_file


@pytest.mark.parametrize("script", sorted(SUMMARY_LINES))
def test_benchmark_smoke_mode_runs(script: str) -> None:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{script} --smoke failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for line in SUMMARY_LINES[script]:
        assert line in result.stdout, f"{script} --smoke did not print {line!r}:\n{result.stdout[-3000:]}"
