"""Backends: the registry, and the same bundle giving the same actions through every backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from aolo.runtime.backends import (BackendError, PolicyBackend, available_backends,
                                   make_backend)
from aolo.runtime.bundle import BundleError, PolicyBundle, write_bundle
from aolo.runtime.policy_io import OBS_DIM

from test_bundle import ann_onnx_file, macro_action_spec, make_bundle, random_ann_spec, random_snn_spec

pytest.importorskip("onnx")


def _obs(n: int, seed: int = 0) -> np.ndarray:
    """Observations in and beyond the env's ranges, (n, OBS_DIM) float32."""
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, OBS_DIM)).astype(np.float32)


@pytest.fixture()
def ann_bundle(tmp_path) -> PolicyBundle:
    return PolicyBundle.load(make_bundle(tmp_path, random_ann_spec(seed=11, hidden=(64, 64)), with_onnx=True))


def _lava_ready() -> bool:
    try:
        import aolo.runtime.backends.lava  # noqa: F401
    except ImportError:
        return False
    return True


def test_registry_lists_onnx_reference_and_lava_with_their_precisions():
    backends = available_backends()
    assert backends["onnx"] == ("float",)
    assert backends["reference"] == ("float",)
    assert backends["lava"] == ("float", "fixed")


@pytest.mark.parametrize("name", ["onnx", "reference"])
def test_backend_follows_the_protocol(ann_bundle, name):
    backend = make_backend(name, ann_bundle)
    try:
        assert isinstance(backend, PolicyBackend)
        assert (backend.name, backend.precision, backend.energy_per_decision_j) == (name, "float", None)
        assert backend.thread_safe is True
        out = backend.decide(_obs(5))
        assert out.shape == (5, 2) and out.dtype == np.float32
        assert np.all(np.abs(out) <= 1.0)
    finally:
        backend.close()


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_onnx_actor_matches_numpy_reference_within_1e_5(ann_bundle, batch):
    onnx_backend, ref = make_backend("onnx", ann_bundle), make_backend("reference", ann_bundle)
    obs = _obs(batch, seed=batch)
    np.testing.assert_allclose(onnx_backend.decide(obs), ref.decide(obs), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ref.decide(obs), ann_bundle.spec.forward(obs), rtol=0, atol=0)


def test_onnx_backend_runs_on_cpu_when_no_gpu_provider_is_built_in(ann_bundle):
    import onnxruntime as ort

    backend = make_backend("onnx", ann_bundle)
    assert "CPUExecutionProvider" in backend.providers
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert backend.providers[0] == "CUDAExecutionProvider"


def test_unknown_backend_name_is_named_with_the_known_ones(ann_bundle):
    with pytest.raises(BackendError, match=r"backend: unknown name 'tpu' \(known: lava, onnx, reference\)"):
        make_backend("tpu", ann_bundle)


@pytest.mark.parametrize("name", ["onnx", "reference"])
def test_fixed_precision_is_refused_by_float_only_backends(ann_bundle, name):
    with pytest.raises(BackendError, match=rf"precision: backend '{name}' runs float, not 'fixed'"):
        make_backend(name, ann_bundle, precision="fixed")


def test_onnx_backend_on_a_bundle_without_onnx_names_the_missing_target(tmp_path):
    bundle = PolicyBundle.load(make_bundle(tmp_path))
    with pytest.raises(BundleError, match=r"no 'onnx' target"):
        make_backend("onnx", bundle)


def test_onnx_graph_of_the_wrong_input_width_is_refused(tmp_path):
    spec = random_ann_spec()
    src = ann_onnx_file(random_ann_spec(obs_dim=OBS_DIM - 1), tmp_path / "narrow.onnx")
    bundle = PolicyBundle.load(write_bundle(tmp_path / "b", spec, {"onnx": src}, algo="sac",
                                            action=macro_action_spec()))
    with pytest.raises(BackendError, match=r"actor\.onnx: input 'obs' is tensor\(float\) \['batch', 14\], "
                                           r"the bundle needs tensor\(float\) \[batch, 15\]"):
        make_backend("onnx", bundle)


def test_onnx_file_changed_after_loading_the_bundle_is_refused(ann_bundle):
    path = ann_bundle.file("onnx")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch for target 'onnx'"):
        make_backend("onnx", ann_bundle)


@pytest.mark.parametrize("name", ["onnx", "reference"])
def test_observation_of_the_wrong_width_is_refused(ann_bundle, name):
    with pytest.raises(ValueError, match=r"obs: expected shape \(n, 15\), got \(2, 14\)"):
        make_backend(name, ann_bundle).decide(np.zeros((2, OBS_DIM - 1), np.float32))


def test_importing_the_backends_package_imports_neither_onnxruntime_nor_lava():
    code = ("import sys, aolo.runtime.backends\n"
            "print(any(m == 'onnxruntime' or m.startswith('lava') for m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_lava_backend_without_lava_nc_says_what_to_install(tmp_path):
    """A base station without the [lava] extra: lava-nc made unimportable in a subprocess."""
    path = make_bundle(tmp_path, random_snn_spec())
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lava' or name.startswith('lava.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'lava'\", name='lava')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from aolo.runtime.backends import BackendUnavailable, make_backend\n"
        "from aolo.runtime.bundle import PolicyBundle\n"
        f"bundle = PolicyBundle.load({str(path)!r})\n"
        "try:\n"
        "    make_backend('lava', bundle)\n"
        "except BackendUnavailable as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "backend 'lava': cannot import 'lava'" in r.stdout and "aolo[lava]" in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(not _lava_ready(), reason="aolo.runtime.backends.lava (or lava-nc) is not installed")
def test_lava_float_backend_matches_the_numpy_reference_on_an_snn_bundle(tmp_path):
    bundle = PolicyBundle.load(make_bundle(tmp_path, random_snn_spec(seed=2)))
    obs = _obs(4, seed=3)
    lava = make_backend("lava", bundle, precision="float")
    try:
        assert (lava.name, lava.precision, lava.thread_safe) == ("lava", "float", False)
        np.testing.assert_allclose(lava.decide(obs), make_backend("reference", bundle).decide(obs), atol=1e-5)
    finally:
        lava.close()


@pytest.mark.slow
@pytest.mark.skipif(not _lava_ready(), reason="aolo.runtime.backends.lava (or lava-nc) is not installed")
def test_lava_fixed_backend_runs_the_bundles_quantised_actor(tmp_path):
    from aolo.runtime.fixed_point import load_fixed_point, quantize_actor, save_fixed_point

    spec = random_snn_spec(seed=5)
    npz = save_fixed_point(quantize_actor(spec), tmp_path / "q.npz")
    bundle = PolicyBundle.load(write_bundle(tmp_path / "b", spec, {"lava_fixed": npz}, algo="sdrl",
                                            action=macro_action_spec()))
    obs = _obs(3, seed=4)
    lava = make_backend("lava", bundle, precision="fixed")
    try:
        expected = load_fixed_point(spec, bundle.file("lava_fixed")).forward(obs)
        np.testing.assert_allclose(lava.decide(obs), expected, atol=1e-6)
    finally:
        lava.close()
