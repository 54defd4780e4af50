"""A policy bundle is a file people hand around: loading one never reads outside its folder, never
runs or serves an artefact that disagrees with the bundle's reference, and every refusal is one
line naming the file and the field or tensor. Each case is a crafted bundle made here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aolo.runtime.backends import BackendError, check_against_recorded, make_backend
from aolo.runtime.bundle import ACTOR_SPEC_FILE, BundleError, PolicyBundle

from test_bundle import edit_manifest, make_bundle, random_ann_spec, rehash


def _cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aolo", *args], capture_output=True, text=True, timeout=timeout_s)


def _one_line_exit_2(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _edit_onnx(bundle_dir: Path, edit) -> None:
    path = bundle_dir / "actor.onnx"
    model = onnx.load_model_from_string(path.read_bytes())
    edit(model)
    path.write_bytes(model.SerializeToString())
    rehash(bundle_dir, "onnx")


def _edit_spec(bundle_dir: Path, edit) -> None:
    path = bundle_dir / ACTOR_SPEC_FILE
    spec = json.loads(path.read_text())
    edit(spec)
    path.write_text(json.dumps(spec))
    rehash(bundle_dir, "actor_spec")


@pytest.fixture()
def onnx_bundle(tmp_path) -> Path:
    return make_bundle(tmp_path, random_ann_spec(seed=5), with_onnx=True)


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_onnx_weights_kept_outside_the_file_are_refused_naming_the_tensor(tmp_path, onnx_bundle, where):
    """An absolute path, or a relative one (which a session built from bytes resolves against the
    server's working directory): either way the tensor is refused before a session exists."""
    outside = tmp_path / "outside.bin"
    location = str(outside) if where == "absolute" else os.path.relpath(outside)

    def externalise(model):
        w = model.graph.initializer[0]
        outside.write_bytes(numpy_helper.to_array(w).tobytes())
        w.ClearField("raw_data")
        w.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(outside.stat().st_size))):
            entry = w.external_data.add()
            entry.key, entry.value = key, value

    _edit_onnx(onnx_bundle, externalise)
    bundle = PolicyBundle.load(onnx_bundle)  # the manifest pins actor.onnx; the weights are elsewhere
    with pytest.raises(BackendError, match=r"tensor 'w0' keeps its data outside the file"):
        make_backend("onnx", bundle)
    _one_line_exit_2(_cli("verify", str(onnx_bundle), "--n-obs", "50"), "tensor 'w0'", "external data")


def test_onnx_weights_that_are_nan_are_refused_naming_the_tensor(onnx_bundle):
    def poison(model):
        w = model.graph.initializer[2]
        w.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(w), np.nan), w.name))

    _edit_onnx(onnx_bundle, poison)
    with pytest.raises(BackendError, match=r"tensor 'w2' holds non-finite values"):
        make_backend("onnx", PolicyBundle.load(onnx_bundle))
    r = _cli("serve", str(onnx_bundle), "--backend", "onnx", "--port", "0", "--ledger", str(onnx_bundle.parent / "l.db"))
    _one_line_exit_2(r, "tensor 'w2'")


def test_garbage_onnx_is_one_line_from_verify(onnx_bundle):
    (onnx_bundle / "actor.onnx").write_bytes(b"\x08\x07this is not a protobuf of a model" * 10)
    rehash(onnx_bundle, "onnx")
    _one_line_exit_2(_cli("verify", str(onnx_bundle), "--n-obs", "50"), "actor.onnx", "not an ONNX model")


def test_a_tampered_but_finite_graph_is_refused_when_serving_starts(onnx_bundle):
    def nudge(model):
        w = model.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.5, w.name))

    _edit_onnx(onnx_bundle, nudge)
    bundle = PolicyBundle.load(onnx_bundle)
    backend = make_backend("onnx", bundle)
    with pytest.raises(BackendError, match=r"does not reproduce the bundle's reference on recorded observation \d+"):
        check_against_recorded(backend, bundle)
    r = _cli("serve", str(onnx_bundle), "--backend", "onnx", "--port", "0", "--ledger", str(onnx_bundle.parent / "l.db"))
    _one_line_exit_2(r, "refusing to serve")


def test_an_untouched_bundle_passes_the_serving_check(onnx_bundle):
    bundle = PolicyBundle.load(onnx_bundle)
    for name in ("onnx", "reference"):
        assert check_against_recorded(make_backend(name, bundle), bundle) <= 1e-5


def test_a_symlink_inside_a_bundle_is_refused(tmp_path, onnx_bundle):
    secret = tmp_path / "secret.onnx"
    (onnx_bundle / "actor.onnx").rename(secret)
    (onnx_bundle / "actor.onnx").symlink_to(secret)
    with pytest.raises(BundleError, match=r"actor\.onnx: a symbolic link; a bundle holds plain files only"):
        PolicyBundle.load(onnx_bundle)
    (onnx_bundle / "actor.onnx").unlink()
    (onnx_bundle / "actor.onnx").symlink_to("/etc/passwd")
    _one_line_exit_2(_cli("verify", str(onnx_bundle)), "actor.onnx", "symbolic link")


def test_files_and_folders_the_manifest_does_not_list_are_refused(onnx_bundle):
    (onnx_bundle / "extra.py").write_text("print('hello')\n")
    with pytest.raises(BundleError, match=r"extra\.py: not listed in manifest\.json"):
        PolicyBundle.load(onnx_bundle)
    (onnx_bundle / "extra.py").unlink()
    (onnx_bundle / "sub").mkdir()
    with pytest.raises(BundleError, match=r"sub: not a plain file"):
        PolicyBundle.load(onnx_bundle)


@pytest.mark.parametrize("timesteps", [10**5, 10**12])
def test_a_huge_timestep_count_is_refused_before_anything_runs(tmp_path, timesteps):
    path = make_bundle(tmp_path)
    _edit_spec(path, lambda s: s.update(timesteps=timesteps))
    t0 = time.perf_counter()
    with pytest.raises(BundleError, match=r"field 'timesteps' is \d+, must be in \[1, 1000\]"):
        PolicyBundle.load(path)
    r = _cli("verify", str(path), "--n-obs", "50")
    _one_line_exit_2(r, ACTOR_SPEC_FILE, "timesteps")
    assert time.perf_counter() - t0 < 60  # it used to hang for minutes


def test_an_infinite_weight_is_refused_naming_the_node(tmp_path):
    path = make_bundle(tmp_path)
    spec_path = path / ACTOR_SPEC_FILE
    # json reads the literal 1e400 as inf (NaN and Infinity are refused as constants already)
    spec_path.write_text(re.sub(r'"weight": \[\[[^,]+', '"weight": [[1e400', spec_path.read_text(), count=1))
    rehash(path, "actor_spec")
    with pytest.raises(BundleError, match=r"field 'nodes\[0\]\.weight' \(Linear\) is not finite"):
        PolicyBundle.load(path)


def test_a_manifest_whose_actor_summary_lies_is_refused(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m["actor"].update(n_parameters=m["actor"]["n_parameters"] + 1))
    with pytest.raises(BundleError, match=r"field 'actor\.n_parameters'"):
        PolicyBundle.load(path)


def test_sizes_in_the_manifest_are_bounded_before_anything_is_read(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m["files"]["actor_spec"].update(bytes=10**15))
    with pytest.raises(BundleError, match=r"field 'files\.actor_spec\.bytes'"):
        PolicyBundle.load(path)


def test_recorded_observations_must_be_a_plain_finite_array(tmp_path):
    path = make_bundle(tmp_path)
    obs = np.load(path / "observations.npy")
    obs[3, 2] = np.nan
    np.save(path / "observations.npy", obs)
    rehash(path, "observations")
    with pytest.raises(BundleError, match=r"observations\.npy: observations must be finite"):
        PolicyBundle.load(path).recorded_observations()
    np.save(path / "observations.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rehash(path, "observations")
    with pytest.raises(BundleError, match=r"observations\.npy: not a numpy \.npy array"):
        PolicyBundle.load(path).recorded_observations()


@pytest.mark.parametrize("crafted, named", [
    (np.array([{"a": 1}], dtype=object), r"not a numpy \.npy array"),
    (np.zeros((4, 3), np.float32), r"expected \(n, 15\) float32"),
    (np.zeros((4, 15), np.float64), r"expected \(n, 15\) float32"),
])
def test_actor_energy_reads_the_observations_through_the_bundles_checked_reader(tmp_path, crafted, named):
    """``bundle_op_counts`` (the ledger's actor energy) and ``aolo energy`` read ``observations.npy``
    as the runtime does: a crafted file is one line naming it, never a traceback."""
    from aolo.runtime.energy import bundle_op_counts
    from aolo.runtime.energy_report import measure_bundle

    path = make_bundle(tmp_path)  # its manifest's op counts have no kind: they are counted on the file
    np.save(path / "observations.npy", crafted, allow_pickle=crafted.dtype == object)
    rehash(path, "observations")
    bundle = PolicyBundle.load(path)
    with pytest.raises(BundleError, match=rf"observations\.npy: {named}"):
        bundle_op_counts(bundle)
    with pytest.raises(BundleError, match=rf"observations\.npy: {named}"):
        measure_bundle(path, hardware=("server-cpu",), use_lava=False)
    _one_line_exit_2(_cli("energy", str(path), "--no-lava", "--hardware", "server-cpu"), "observations.npy")
