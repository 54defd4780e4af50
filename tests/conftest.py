"""Shared test fixtures: where the shared (non-redistributable) data lives, the tiny scenario's
model, and a trained tiny SDRL run for the tests that read one.

The shared data dir is ``$AOLO_SHARED_DATA`` if set, else ``<repo>/../shared/data``. Tests that
need it take the ``shared_dir`` or ``sprout_file`` fixture and are skipped,
with the reason, when it is absent.

``make test`` runs the suite on two pytest-xdist workers, each file on one worker (``--dist
loadfile``), so a file's expensive fixtures are built once; they are session-scoped, since a worker
may interleave files and would build a module fixture again each time its file's tests resume.
:func:`tiny_sdrl_run`, which two files take, is trained once for the whole session (a file lock
in the session's shared temporary folder). The ``xdist_group`` marks of some files say which of
their tests share what; ``--dist loadgroup`` would honour them, but with pytest 9.2 and xdist 3.8
it did not (a group's fixture was built on both workers).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import pytest

# Lava's message infrastructure sets multiprocessing's start method (fork) when it is first imported
# and fails once anything in the process has fixed the method; Ray Tune's TensorBoard logger does
# (tests/test_sweep.py). Imported before any test, as aolo.pipeline imports it before its process
# pool, so that no test depends on which files ran before it on its xdist worker.
with contextlib.suppress(ImportError):
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401

from aolo.shared_data import shared_data_dir
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel


LONGEST_FILES_FIRST = (
    "test_training.py", "test_sweep.py", "test_pipeline.py", "test_run_trust.py", "test_export.py",
    "test_benchmarks.py", "test_popsan_actor.py", "test_replay.py", "test_checkpoint_durability.py",
    "test_gateway_proxy.py", "test_lava_backend.py", "test_gateway_sidecar.py", "test_reference_policies.py",
    "test_gateway_benchmark.py",
)
"""The files that take longest (about 15 s to 5 min each on the 2-core machine, measured with
``--durations``), longest first; the others follow in collection order."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run :data:`LONGEST_FILES_FIRST` first, each file's tests in their own order.

    ``make test`` hands whole files to two xdist workers in collection order (``--dist loadfile
    --no-loadscope-reorder``), a file to whichever worker is about to run out: longest first, the
    short files fill in at the end and the workers finish together (longest-processing-time-first
    scheduling). xdist's own reorder sorts files by their number of tests, which left the
    pipeline's 6 tests (about 90 s) and the benchmarks' smoke runs for last.
    """
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept


@pytest.fixture(scope="module")
def tiny_model() -> ServiceModel:
    """The tiny scenario's service model, one per test module (tests may set its fields)."""
    return ServiceModel(get_scenario("tiny"))


def _train_tiny_sdrl_run(out_dir: Path) -> Path:
    from aolo.train.train_config import TrainConfig
    from aolo.train.training import train

    config = TrainConfig(algo="sdrl", scenario="tiny", steps=1_200, n_envs=4, learning_starts=400, batch_size=64,
                         eval_every_steps=0, eval_n_bs=2, eval_seeds=(501,), log_every_steps=400, out_dir=str(out_dir))
    return train(config, show_progress=False)


@pytest.fixture(scope="session")
def tiny_sdrl_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A trained SDRL run on the tiny scenario (1,200 steps on 4 base stations, 200 updates), for
    tests that load, evaluate, compare or export a run; they must not write into it.

    Trained once per session: under pytest-xdist, the first worker to need it trains it into the
    folder the workers share while holding a file lock, and the other reads where it is
    (pytest-xdist's recipe for a session fixture that runs once; ``filelock`` is its lock)."""
    if worker_id == "master":  # no xdist
        return _train_tiny_sdrl_run(tmp_path_factory.mktemp("tiny_sdrl_run"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent
    where = shared / "tiny_sdrl_run.path"
    with FileLock(f"{where}.lock"):
        if not where.is_file():
            where.write_text(str(_train_tiny_sdrl_run(shared / "tiny_sdrl_run")))
        return Path(where.read_text())


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data dir; skips the test when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data dir {path} not found (set AOLO_SHARED_DATA or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def sprout_file() -> Callable[[str], Path]:
    """``sprout_file(relative)``: the path of ``sprout/<relative>`` in the shared data dir; skips
    the calling test when that file is absent."""

    def find(relative: str) -> Path:
        path = shared_data_dir() / "sprout" / relative
        if not path.is_file():
            pytest.skip(f"shared Sprout file {path} not found (set AOLO_SHARED_DATA or check out ../shared)")
        return path

    return find


@pytest.fixture(scope="session")
def llm():
    """A real LLM server for the whole session: llama.cpp's OpenAI-compatible server with
    SmolLM2-135M-Instruct on a free loopback port, one thread (``aolo.llm_server``). ``make test``
    installs both; without them the tests that need it fail, naming what to install."""
    from aolo.llm_server import LLMServerUnavailable, llama_server

    try:
        with llama_server() as server:
            yield server
    except LLMServerUnavailable as e:
        pytest.fail(str(e))
