"""A run's checkpoint, written so that a kill at any instant leaves one complete checkpoint.

A checkpoint is several files that must agree on one step: the config, SB3's ``model.zip``, the
actor's weights and construction parameters, the actor average, the actor spec,
``evaluations.jsonl``, the replay buffer (if saved), the manifest below and ``train_state.json``
(step, day counters). Each file alone is replaced atomically
(:mod:`aolo.runtime.atomic_files`), but a kill between two of them would leave, say, a new model
beside an old state. So a checkpoint is first written whole into ``<run>/.checkpoint/``, with
``train_state.json`` last, and then its files are renamed into the run directory, again with
``train_state.json`` last:

- a ``.checkpoint/`` without ``train_state.json`` was interrupted while being written: the run
  directory still holds the previous checkpoint, complete, and the folder is discarded;
- a ``.checkpoint/`` with ``train_state.json`` was interrupted while being moved in: every file
  of it is complete, and moving the rest finishes the new checkpoint.

:func:`recover_checkpoint` applies that rule (``aolo train --resume`` calls it first).

Every checkpoint also writes ``run_manifest.json``, the SHA-256 and size of each of its files
(``train_state.json`` included: its bytes are hashed before they are written), just before
``train_state.json``. ``aolo train --resume`` is the one command that unpickles a run's files (SB3's
``model.zip``, the replay buffer), so it first checks them against the manifest
(:func:`verified_checkpoint`) and refuses a directory whose files differ from what the run saved,
naming the file; a run directory without a manifest (written by an older aolo) resumes only with
``--trust-run``. The manifest catches a file changed or planted after the run saved it; it is not a
signature (whoever hands over a run directory can rewrite it too), so resume only runs you trust.
Every other command reads a run's actor from tensors and JSON (:func:`aolo.train.run.load_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from aolo.runtime.atomic_files import (TEMP_SUFFIX, atomic_path, fsync_dir, remove_temporary_files, write_bytes_atomic,
                                       write_json_atomic)

from .run import ACTOR_AVERAGE_FILE, CONFIG_FILE, MODEL_FILE, REPLAY_FILE, STATE_FILE
from .run_files import open_run_file, read_run_file

__all__ = ["STAGING_DIR", "MANIFEST_FILE", "RunManifest", "write_checkpoint", "recover_checkpoint",
           "verified_checkpoint"]

STAGING_DIR = ".checkpoint"
"""Folder in the run directory where a checkpoint is written before it is moved in."""
MANIFEST_FILE = "run_manifest.json"
"""SHA-256 and size of every file of the run's last checkpoint."""
RESUME_READS = (CONFIG_FILE, STATE_FILE, MODEL_FILE, REPLAY_FILE, ACTOR_AVERAGE_FILE)
"""The files ``aolo train --resume`` reads: each one present must be in the manifest."""
PICKLED_FILES = (MODEL_FILE, REPLAY_FILE)
"""The files resume unpickles (SB3's ``load`` and ``load_replay_buffer``): read once, hashed, and
handed to SB3 as those very bytes."""
MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a handful of files: a few hundred bytes
MAX_RUN_FILE_BYTES = 1 << 40  # 1 TiB: above any replay buffer (SB3's default 1M transitions of aolo's are ~0.2 GB)


class FileDigest(BaseModel):
    """One file of a checkpoint.

    :param sha256: lower-case hex SHA-256 of the file's bytes
    :param size_bytes: its size, bytes
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0, le=MAX_RUN_FILE_BYTES)


FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
"""A plain file name in the run directory: no folder, no leading dot, no ``..``."""


class RunManifest(BaseModel):
    """``run_manifest.json``: what the run's last checkpoint wrote.

    :param format: always ``"aolo-run-manifest"``
    :param format_version: 1
    :param files: file name in the run directory -> its digest
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["aolo-run-manifest"] = "aolo-run-manifest"
    format_version: Literal[1] = 1
    files: dict[FileName, FileDigest] = Field(max_length=64)


def _digest(data: bytes) -> FileDigest:
    return FileDigest(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _digest_file(path: Path) -> FileDigest:
    """The digest of a plain file, read in chunks (a replay buffer may be large); a symbolic
    link is refused (O_NOFOLLOW).

    :raises ValueError: naming the file
    """
    h, n_bytes = hashlib.sha256(), 0
    with open_run_file(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n_bytes += len(chunk)
    return FileDigest(sha256=h.hexdigest(), size_bytes=n_bytes)


def write_checkpoint(run_dir: Path, writers: Mapping[str, Callable[[Path], None]], state: Mapping[str, Any]) -> None:
    """Write one checkpoint into ``run_dir``: every file or none of them, as the module says.

    :param run_dir: the run directory
    :param writers: file name -> function that writes that file at the path it is given (not
        ``train_state.json`` or ``run_manifest.json``, which this function writes)
    :param state: the content of ``train_state.json`` (JSON values), written last
    """
    reserved = {STATE_FILE, MANIFEST_FILE} & set(writers)
    if reserved:
        raise ValueError(f"write_checkpoint: {', '.join(sorted(reserved))} is written by write_checkpoint itself")
    staging = run_dir / STAGING_DIR
    if staging.exists():  # left by a kill and not recovered: it is not newer than what we write now
        shutil.rmtree(staging)
    staging.mkdir()
    for name, write in writers.items():
        with atomic_path(staging / name) as tmp:
            write(tmp)
    state_bytes = json.dumps(dict(state), indent=1).encode()
    files = {name: _digest_file(staging / name) for name in writers}
    manifest = RunManifest(files={**files, STATE_FILE: _digest(state_bytes)})
    write_json_atomic(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
    write_bytes_atomic(staging / STATE_FILE, state_bytes)
    fsync_dir(run_dir)
    _move_in(run_dir, staging)


def verified_checkpoint(run_dir: Path, trust_run: bool = False) -> dict[str, bytes]:
    """Check a run directory's checkpoint against its manifest before anything in it is unpickled.

    Every file the manifest lists must be a plain file with the listed size and SHA-256, and every
    file resume reads (:data:`RESUME_READS`) that is present must be listed.

    :param run_dir: the run directory (after :func:`recover_checkpoint`)
    :param trust_run: skip the check (``aolo train --resume --trust-run``), for a run directory
        written before runs had manifests that the user vouches for
    :return: file name -> bytes of the files resume unpickles (:data:`PICKLED_FILES`) that are
        present, as read (and hashed) here
    :raises ValueError: one line naming the file: no manifest (without ``trust_run``), a malformed
        manifest, a listed file missing, a link, or one whose size or hash differs, an unlisted file
    """
    present = {name: run_dir / name for name in PICKLED_FILES if (run_dir / name).is_file()}
    if trust_run:
        return {name: read_run_file(path, MAX_RUN_FILE_BYTES) for name, path in present.items()}
    mpath = run_dir / MANIFEST_FILE
    if not mpath.is_file():
        raise ValueError(f"{mpath}: missing, so the run's files cannot be checked before resume unpickles them "
                         "(a run saved by an older aolo); resume it only if you trust where it came from, with "
                         "--trust-run")
    raw = read_run_file(mpath, MAX_MANIFEST_BYTES)
    try:
        manifest = RunManifest.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "(root)"
        raise ValueError(f"{mpath}: field {where!r}: {err['msg']}") from None
    for name in RESUME_READS:
        if ((run_dir / name).exists() or (run_dir / name).is_symlink()) and name not in manifest.files:
            raise ValueError(f"{run_dir / name}: not listed in {MANIFEST_FILE}, so not written by the run's last "
                             "checkpoint; refusing to resume")
    loaded = {}
    for name, want in manifest.files.items():
        path = run_dir / name
        if not path.exists() and not path.is_symlink():
            raise ValueError(f"{path}: missing (listed in {MANIFEST_FILE})")
        if path.is_symlink():
            raise ValueError(f"{path}: a symbolic link; a run directory holds plain files (refusing to resume)")
        size = path.lstat().st_size
        if size != want.size_bytes:  # before reading: a planted file may be huge
            raise ValueError(f"{path}: {size} bytes, {MANIFEST_FILE} says {want.size_bytes}: changed since the run "
                             "saved it; refusing to resume")
        if name in present:  # read once: what SB3 unpickles is what was hashed
            loaded[name] = read_run_file(path, want.size_bytes)
            got = _digest(loaded[name])
        else:
            got = _digest_file(path)
        if got.sha256 != want.sha256 or got.size_bytes != want.size_bytes:
            raise ValueError(f"{path}: SHA-256 {got.sha256} differs from {MANIFEST_FILE}'s {want.sha256}: changed "
                             "since the run saved it; refusing to resume")
    return loaded


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
