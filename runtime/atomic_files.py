"""Atomic file and folder replacement: after a crash or a kill, a file that a run or a bundle
writes holds either its old content or its new content, never a truncated mix.

    write a temporary file in the target's folder -> fsync it -> rename it over the target
    -> fsync the folder, so that the rename itself is on disk

The rename is atomic only within one file system, hence the temporary file beside the target.
The standard library has the pieces (``os.replace``, ``os.fsync``) but no function that puts
them together (``tempfile`` deletes or keeps, it does not replace), and the packages that did
(``atomicwrites``) are unmaintained; so this module, torch-free, serves both the training side
(checkpoints, SB3's ``model.zip``, the actor average) and the runtime (policy bundles).

Leftovers of a kill are temporary files named ``.<name>.<random hex>.tmp``;
:func:`remove_temporary_files` deletes them from a folder that no other process writes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "copy_file_atomic",
           "replace_dir_atomic", "fsync_dir", "remove_temporary_files", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary files (and folders) this module writes beside their targets."""


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (file creations, renames, deletions) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_name(target: Path) -> Path:
    """A fresh name beside ``target``: ``.<name>.<8 hex>.tmp`` (hidden, and never a name a run or
    bundle reads)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a path (``torch.save``, SB3's
    ``save``, ``onnx.save``, ``np.save``). When the block ends normally the file there is
    fsynced and renamed over ``path`` and the folder fsynced; when it raises, the temporary file
    is deleted and ``path`` is untouched.

    :param path: the file to replace; its folder must exist
    :return: the temporary path to write (it does not exist yet)
    """
    target = Path(path)
    tmp = _temporary_name(target)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the writer did not create the file for {target}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see the module docstring); returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1, **dumps_kwargs: Any) -> Path:
    """Replace ``path`` with ``data`` as JSON atomically; returns the path.

    :param dumps_kwargs: further :func:`json.dumps` arguments (``allow_nan=False``, ...)
    """
    return write_text_atomic(path, json.dumps(data, indent=indent, **dumps_kwargs))


def copy_file_atomic(src: str | Path, dst: str | Path) -> Path:
    """Replace ``dst`` with a copy of ``src`` atomically; returns ``dst``."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def replace_dir_atomic(staged: str | Path, target: str | Path) -> Path:
    """Publish a folder written at ``staged`` (beside ``target``, same file system) as ``target``.

    Every file in ``staged`` and the folder itself are fsynced before the rename. A ``target``
    that exists is first renamed aside and deleted after the new one is in place, so a kill
    leaves either folder complete under ``target``, or, in the instant between the two renames,
    the old one complete under a ``.<name>.<hex>.tmp`` name (Linux has no portable atomic swap
    of two folders).

    :param staged: the complete new folder (flat or nested)
    :param target: the folder to create or replace
    :return: ``target``
    """
    staged, target = Path(staged), Path(target)
    for root, _, files in os.walk(staged):
        for name in files:
            _fsync_file(Path(root) / name)
        fsync_dir(root)
    aside = None
    if target.exists():
        aside = _temporary_name(target)
        os.replace(target, aside)
    os.replace(staged, target)
    fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside)
        fsync_dir(target.parent)
    return target


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders that a kill left in ``folder`` (not recursive).
    Call it only on a folder no other process is writing.

    :return: what was deleted
    """
    removed = []
    for p in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(p)
    if removed:
        fsync_dir(folder)
    return removed
