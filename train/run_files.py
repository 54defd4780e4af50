"""Reading one file of a run directory someone handed over: a plain file (a symbolic link is
refused, so nothing outside the folder is read) of bounded size, else one line naming it.

Its own module, below :mod:`aolo.train.run`, :mod:`aolo.train.actor_weights`,
:mod:`aolo.train.actor_average` and :mod:`aolo.train.checkpoint`, which all read run files through
it (so that none of them imports another in a circle).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from aolo.runtime.plain_files import open_no_follow

__all__ = ["MAX_RUN_FILE_READ_BYTES", "open_run_file", "read_run_file"]

MAX_RUN_FILE_READ_BYTES = 256 << 20
"""Largest file :func:`aolo.train.run.load_run` reads, bytes (a bundle's limit, ``runtime.bundle.MAX_FILE_BYTES``:
a 32 x 32 SDRL actor's spec is ~100 kB, its weights ~30 kB, the evaluations a few MB)."""


def open_run_file(path: Path) -> BinaryIO:
    """A plain file of a run directory opened for reading; a symbolic link is refused (O_NOFOLLOW).

    :raises ValueError: naming the file
    """
    try:
        return open_no_follow(path)
    except OSError as e:
        what = "a symbolic link" if path.is_symlink() else e.strerror
        raise ValueError(f"{path}: cannot read ({what}; a run directory holds plain files)") from None


def read_run_file(path: str | Path, max_bytes: int = MAX_RUN_FILE_READ_BYTES) -> bytes:
    """The bytes of a plain file of a run directory: a symbolic link is refused (O_NOFOLLOW), so
    nothing outside the folder is read, and so is a file over ``max_bytes``.

    :raises ValueError: naming the file
    """
    path = Path(path)
    chunks, n_bytes = [], 0
    with open_run_file(path) as f:
        # in chunks: read(max_bytes + 1) would allocate max_bytes up front
        while chunk := f.read(1 << 20):
            n_bytes += len(chunk)
            if n_bytes > max_bytes:
                raise ValueError(f"{path}: larger than {max_bytes} bytes")
            chunks.append(chunk)
    return b"".join(chunks)
