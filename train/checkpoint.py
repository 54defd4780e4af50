"""A run's checkpoint, written so that a kill at any instant leaves one complete checkpoint.

A checkpoint is several files that must agree on one step: SB3's ``model.zip``, the actor
average, the actor spec, ``evaluations.jsonl``, the replay buffer (if saved) and
``train_state.json`` (step, day counters). Each file alone is replaced atomically
(:mod:`aolo.runtime.atomic_files`), but a kill between two of them would leave, say, a new model
beside an old state. So a checkpoint is first written whole into ``<run>/.checkpoint/``, with
``train_state.json`` last, and then its files are renamed into the run directory, again with
``train_state.json`` last:

- a ``.checkpoint/`` without ``train_state.json`` was interrupted while being written: the run
  directory still holds the previous checkpoint, complete, and the folder is discarded;
- a ``.checkpoint/`` with ``train_state.json`` was interrupted while being moved in: every file
  of it is complete, and moving the rest finishes the new checkpoint.

:func:`recover_checkpoint` applies that rule (``aolo train --resume`` calls it first).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from aolo.runtime.atomic_files import TEMP_SUFFIX, atomic_path, fsync_dir, remove_temporary_files

from .run import STATE_FILE

__all__ = ["STAGING_DIR", "write_checkpoint", "recover_checkpoint"]

STAGING_DIR = ".checkpoint"
"""Folder in the run directory where a checkpoint is written before it is moved in."""


def write_checkpoint(run_dir: Path, writers: Mapping[str, Callable[[Path], None]]) -> None:
    """Write one checkpoint into ``run_dir``: every file or none of them, as the module says.

    :param run_dir: the run directory
    :param writers: file name -> function that writes that file at the path it is given; must
        include ``train_state.json``, which is written last whatever its place in the mapping
    """
    if STATE_FILE not in writers:
        raise ValueError(f"write_checkpoint: the writers must include {STATE_FILE}")
    staging = run_dir / STAGING_DIR
    if staging.exists():  # left by a kill and not recovered: it is not newer than what we write now
        shutil.rmtree(staging)
    staging.mkdir()
    for name in [n for n in writers if n != STATE_FILE] + [STATE_FILE]:
        with atomic_path(staging / name) as tmp:
            writers[name](tmp)
    fsync_dir(run_dir)
    _move_in(run_dir, staging)


def _move_in(run_dir: Path, staging: Path) -> None:
    """Rename every file of a complete ``staging`` into ``run_dir``, ``train_state.json`` last."""
    names = sorted(n for n in os.listdir(staging) if n != STATE_FILE and not n.endswith(TEMP_SUFFIX))
    for name in names:
        os.replace(staging / name, run_dir / name)
    fsync_dir(run_dir)
    os.replace(staging / STATE_FILE, run_dir / STATE_FILE)
    fsync_dir(run_dir)
    staging.rmdir()
    fsync_dir(run_dir)


def recover_checkpoint(run_dir: Path) -> str | None:
    """Bring a run directory that a kill interrupted back to one complete checkpoint, and delete
    the temporary files the kill left. Only for a run no process is writing.

    :return: what was done, in words, or None when there was nothing to do
    """
    staging = run_dir / STAGING_DIR
    done = None
    if staging.is_dir():
        if (staging / STATE_FILE).is_file():
            _move_in(run_dir, staging)
            done = f"{run_dir}: finished moving in the checkpoint that a kill interrupted"
        else:
            shutil.rmtree(staging)
            fsync_dir(run_dir)
            done = f"{run_dir}: discarded a checkpoint that a kill interrupted while it was written"
    removed = remove_temporary_files(run_dir)
    if removed and done is None:
        done = f"{run_dir}: deleted {len(removed)} temporary file(s) a kill left"
    return done
