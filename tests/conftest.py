"""Shared test fixtures: where the shared (non-redistributable) data lives.

The shared data dir is ``$AOLO_SHARED_DATA`` if set, else ``<repo>/../shared/data``. Tests that
need it take the ``shared_dir`` fixture (or call :func:`require_shared_file`) and are skipped,
with the reason, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$AOLO_SHARED_DATA`` if set, else ``<repo>/../shared/data`` (which may not exist)."""
    return Path(os.environ.get("AOLO_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared_file(relative: str) -> Path:
    """The path of ``relative`` inside the shared data dir, or skip the calling test."""
    path = shared_data_dir() / relative
    if not path.is_file():
        pytest.skip(f"shared data file {path} not found (set AOLO_SHARED_DATA or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data dir; skips the test when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data dir {path} not found (set AOLO_SHARED_DATA or check out ../shared)")
    return path
