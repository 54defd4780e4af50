"""Opening a file someone handed over (a bundle's, a run directory's) without following a
symbolic link, so that a link swapped in after its folder was checked cannot point the reader
outside the folder. The standard library has no such open; this is ``os.open`` with
``O_NOFOLLOW`` (where the platform has it) wrapped in a file object."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_no_follow"]


def open_no_follow(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading; a symbolic link is refused.

    :raises OSError: the file cannot be opened, or is a symbolic link (ELOOP)
    """
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "rb")
