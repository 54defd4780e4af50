"""Where the shared Sprout data (not redistributable, never committed) lives on a checkout."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "AOLO_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$AOLO_SHARED_DATA`` if set, else ``shared/data`` beside the checkout (which may not exist);
    it holds ``sprout/`` (see ``../shared/README.md``)."""
    return Path(os.environ.get(ENV_VAR, Path(__file__).resolve().parents[2] / "shared" / "data"))
