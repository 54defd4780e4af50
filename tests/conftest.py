"""Shared test fixtures: where the shared (non-redistributable) data lives, and the tiny scenario's model.

The shared data dir is ``$AOLO_SHARED_DATA`` if set, else ``<repo>/../shared/data``. Tests that
need it take the ``shared_dir`` or ``sprout_file`` fixture and are skipped,
with the reason, when it is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from aolo.shared_data import shared_data_dir
from aolo.train.scenario import get_scenario
from aolo.train.simulator import ServiceModel


@pytest.fixture(scope="module")
def tiny_model() -> ServiceModel:
    """The tiny scenario's service model, one per test module (tests may set its fields)."""
    return ServiceModel(get_scenario("tiny"))


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
