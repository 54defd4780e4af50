"""Policy bundles: write, load, and every kind of damage reported with its file and field.

The helpers at the top (:func:`random_ann_spec`, :func:`ann_onnx_file`, :func:`make_bundle`)
build small real bundles and are shared by the runtime's other test files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from aolo.hw_profiles import RadioProfile, load_profile
from aolo.runtime.actor_spec import ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder, ReLU, Tanh
from aolo.runtime.bundle import (ACTOR_SPEC_FILE, FORMAT_VERSION, MANIFEST_FILE, ActionSpec, BundleError,
                                 PolicyBundle, write_bundle)
from aolo.runtime.policy_io import OBS_DIM, OBS_FIELDS, OBS_HIGH, OBS_LOW

# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def random_ann_spec(seed: int = 0, hidden: tuple[int, ...] = (32, 32), obs_dim: int = OBS_DIM) -> ActorSpec:
    """A SAC-shaped actor with random weights: [Linear -> ReLU] * n -> Linear -> Tanh."""
    rng = np.random.default_rng(seed)
    nodes, fan_in = [], obs_dim
    for h in hidden:
        nodes += [Linear(rng.normal(0, 1 / np.sqrt(fan_in), (h, fan_in)), rng.normal(0, 0.1, h)), ReLU()]
        fan_in = h
    nodes += [Linear(rng.normal(0, 1 / np.sqrt(fan_in), (2, fan_in)), rng.normal(0, 0.1, 2)), Tanh()]
    return ActorSpec(kind="ann", obs_dim=obs_dim, act_dim=2, nodes=nodes)


def random_snn_spec(seed: int = 0, pop: int = 4, hidden: int = 16, out_pop: int = 5, timesteps: int = 5) -> ActorSpec:
    """A PopSAN-shaped spiking actor with random weights."""
    rng = np.random.default_rng(seed)
    enc = PopulationEncoder(np.tile(np.linspace(-1, 1, pop), (OBS_DIM, 1)), np.full((OBS_DIM, pop), 0.5))
    n_out = 2 * out_pop

    def lif(n: int) -> CubaLIF:
        return CubaLIF(np.full(n, 0.5), np.full(n, 0.75), np.full(n, 0.5))

    nodes = [enc, Linear(rng.normal(0, 0.5, (hidden, OBS_DIM * pop))), lif(hidden),
             Linear(rng.normal(0, 0.5, (n_out, hidden))), lif(n_out),
             PopulationDecoder(rng.normal(0, 1, (2, out_pop)), rng.normal(0, 0.1, 2)), Tanh()]
    return ActorSpec(kind="snn", obs_dim=OBS_DIM, act_dim=2, nodes=nodes, timesteps=timesteps)


def ann_onnx_file(spec: ActorSpec, path: Path, input_dim: int | None = None) -> Path:
    """Write ``spec`` (an ANN) as ONNX with onnx.helper: MatMul/Add/Relu/Tanh, dynamic batch.

    :param input_dim: declared input width (default ``spec.obs_dim``); another value makes a
        graph that does not fit the bundle
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "obs"
    for i, node in enumerate(spec.nodes):
        out = f"h{i}"
        if isinstance(node, Linear):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(node.weight.T), f"w{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [out + "_mm" if node.bias is not None else out]))
            if node.bias is not None:
                inits.append(numpy_helper.from_array(node.bias, f"b{i}"))
                nodes.append(helper.make_node("Add", [out + "_mm", f"b{i}"], [out]))
        elif isinstance(node, ReLU):
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif isinstance(node, Tanh):
            out = "action"
            nodes.append(helper.make_node("Tanh", [x], [out]))
        x = out
    graph = helper.make_graph(
        nodes, "test_ann_actor",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", input_dim or spec.obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", spec.act_dim])], initializer=inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def macro_action_spec() -> ActionSpec:
    return ActionSpec.from_radio_profile(load_profile("macro", RadioProfile))


def make_bundle(root: Path, spec: ActorSpec | None = None, with_onnx: bool = False, name: str = "bundle") -> Path:
    """A real bundle directory under ``root`` with 64 recorded observations; with an ``actor.onnx``
    when ``with_onnx``."""
    spec = spec or random_ann_spec()
    obs_path = root / f"{name}_observations.npy"
    np.save(obs_path, np.random.default_rng(0).uniform(OBS_LOW, OBS_HIGH, (64, OBS_DIM)).astype(np.float32))
    artefacts = {"observations": obs_path}
    if with_onnx:
        artefacts["onnx"] = ann_onnx_file(spec, root / f"{name}_src.onnx")
    return write_bundle(root / name, spec, artefacts, algo="sac" if spec.kind == "ann" else "sdrl",
                        action=macro_action_spec(), training_metadata={"seed": 7, "steps": 1000, "scenario": "tiny"},
                        op_counts={"layer0_macs": 480})


def rehash(bundle_dir: Path, target: str) -> None:
    """Bring the manifest's hash and size of ``target`` in line with its (edited) file."""
    mpath = bundle_dir / MANIFEST_FILE
    manifest = json.loads(mpath.read_text())
    entry = manifest["files"][target]
    data = (bundle_dir / entry["path"]).read_bytes()
    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    mpath.write_text(json.dumps(manifest))


def edit_manifest(bundle_dir: Path, edit) -> None:
    mpath = bundle_dir / MANIFEST_FILE
    manifest = json.loads(mpath.read_text())
    edit(manifest)
    mpath.write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------


def test_bundle_round_trip_keeps_the_actor_and_the_manifest(tmp_path):
    spec = random_ann_spec(seed=3)
    bundle = PolicyBundle.load(make_bundle(tmp_path, spec, with_onnx=True))
    obs = np.random.default_rng(0).normal(size=(16, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(bundle.spec.forward(obs), spec.forward(obs))
    m = bundle.manifest
    assert m.format_version == FORMAT_VERSION
    assert (m.algo, m.actor_kind) == ("sac", "ann")
    assert [f.name for f in m.observation.fields] == list(OBS_FIELDS)
    assert m.observation.obs_dim == OBS_DIM and m.action.act_dim == 2
    assert (m.action.p_min_w, m.action.p_max_w, m.action.radio.name) == (0.2, 20.0, "macro")
    assert m.profile_versions["macro"] == m.action.radio.version
    assert m.training == {"seed": 7, "steps": 1000, "scenario": "tiny"}
    assert m.op_counts == {"layer0_macs": 480}
    assert [layer.shape for layer in m.actor.layers if layer.type == "Linear"] == [[32, OBS_DIM], [32, 32], [2, 32]]
    assert bundle.targets == ["actor_spec", "observations", "onnx"]
    assert bundle.file("onnx").name == "actor.onnx"
    for target, entry in m.files.items():
        data = (bundle.path / entry.path).read_bytes()
        assert (entry.sha256, entry.bytes) == (hashlib.sha256(data).hexdigest(), len(data)), target


def test_snn_bundle_summarises_timesteps_populations_and_neurons(tmp_path):
    bundle = PolicyBundle.load(make_bundle(tmp_path, random_snn_spec(pop=4, out_pop=5, timesteps=5)))
    a = bundle.manifest.actor
    assert (bundle.manifest.actor_kind, a.timesteps, a.encoder_population, a.decoder_population) == ("snn", 5, 4, 5)
    assert [n.n for n in a.neurons] == [16, 10]
    assert a.neurons[0].beta == (0.75, 0.75) and a.neurons[0].threshold == (0.5, 0.5)


def test_bundle_sha256_is_the_hash_of_its_manifest_and_changes_with_any_file(tmp_path):
    path = make_bundle(tmp_path)
    bundle = PolicyBundle.load(path)
    assert bundle.sha256 == hashlib.sha256((path / MANIFEST_FILE).read_bytes()).hexdigest()
    other = PolicyBundle.load(make_bundle(tmp_path, random_ann_spec(seed=99), name="other"))
    assert other.sha256 != bundle.sha256


def test_writer_refuses_an_existing_directory_a_missing_artefact_and_a_reserved_target(tmp_path):
    path = make_bundle(tmp_path)
    spec = random_ann_spec()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(path, spec, {}, algo="sac", action=macro_action_spec())
    with pytest.raises(BundleError, match="target 'onnx'.*is not a file"):
        write_bundle(tmp_path / "b2", spec, {"onnx": tmp_path / "nope.onnx"}, algo="sac", action=macro_action_spec())
    with pytest.raises(BundleError, match="target 'actor_spec'"):
        write_bundle(tmp_path / "b3", spec, {"actor_spec": path / ACTOR_SPEC_FILE}, algo="sac",
                     action=macro_action_spec())
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()


def test_writer_refuses_a_spec_that_does_not_read_the_runtime_observation(tmp_path):
    with pytest.raises(BundleError, match="field 'obs_dim': 12"):
        write_bundle(tmp_path / "b", random_ann_spec(obs_dim=12), {}, algo="sac", action=macro_action_spec())


def test_writer_overwrite_replaces_the_bundle(tmp_path):
    path = make_bundle(tmp_path)
    before = PolicyBundle.load(path).sha256
    write_bundle(path, random_ann_spec(seed=5), {}, algo="sac", action=macro_action_spec(), overwrite=True)
    assert PolicyBundle.load(path).sha256 != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]  # no temp dirs left


# ---------------------------------------------------------------------------------------------
# corruption: each gives a BundleError naming the file and the field
# ---------------------------------------------------------------------------------------------


def test_missing_manifest_is_named(tmp_path):
    path = make_bundle(tmp_path)
    (path / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        PolicyBundle.load(path)


def test_missing_artefact_file_is_named(tmp_path):
    path = make_bundle(tmp_path, with_onnx=True)
    (path / "actor.onnx").unlink()
    with pytest.raises(BundleError, match=r"actor\.onnx: missing \(listed in manifest\.json field 'files\.onnx'\)"):
        PolicyBundle.load(path)


def test_sha256_mismatch_is_named(tmp_path):
    path = make_bundle(tmp_path, with_onnx=True)
    data = bytearray((path / "actor.onnx").read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    (path / "actor.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"actor\.onnx: sha256 mismatch for target 'onnx'"):
        PolicyBundle.load(path)


def test_size_mismatch_is_named(tmp_path):
    path = make_bundle(tmp_path)
    with open(path / ACTOR_SPEC_FILE, "a") as f:
        f.write(" ")
    with pytest.raises(BundleError, match=r"actor_spec\.json: size mismatch for target 'actor_spec'"):
        PolicyBundle.load(path)


def test_actor_spec_obs_dim_that_disagrees_with_the_manifest_is_named(tmp_path):
    path = make_bundle(tmp_path)
    spec = json.loads((path / ACTOR_SPEC_FILE).read_text())
    spec["obs_dim"] = 14
    (path / ACTOR_SPEC_FILE).write_text(json.dumps(spec))
    rehash(path, "actor_spec")  # the hash is right: only the shape is wrong
    with pytest.raises(BundleError, match=r"actor_spec\.json: field 'obs_dim': 14 does not match manifest\.json "
                                          r"field 'observation\.obs_dim' = 15"):
        PolicyBundle.load(path)


def test_actor_layers_that_do_not_chain_are_named(tmp_path):
    path = make_bundle(tmp_path)
    spec = json.loads((path / ACTOR_SPEC_FILE).read_text())
    spec["nodes"][2]["weight"] = [row[:5] for row in spec["nodes"][2]["weight"]]  # second Linear reads 5, not 32
    (path / ACTOR_SPEC_FILE).write_text(json.dumps(spec))
    rehash(path, "actor_spec")
    with pytest.raises(BundleError, match=r"actor_spec\.json: field 'nodes'"):
        PolicyBundle.load(path)


def test_unknown_format_version_is_named(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m.update(format_version=1))
    with pytest.raises(BundleError, match=r"manifest\.json: field 'format_version': 1 is not supported"):
        PolicyBundle.load(path)


def test_malformed_manifest_json_is_named(tmp_path):
    path = make_bundle(tmp_path)
    (path / MANIFEST_FILE).write_text('{"format_version": 1,')
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON: .* line 1"):
        PolicyBundle.load(path)


def test_malformed_actor_spec_json_is_named(tmp_path):
    path = make_bundle(tmp_path)
    (path / ACTOR_SPEC_FILE).write_text("[1, 2")
    rehash(path, "actor_spec")
    with pytest.raises(BundleError, match=r"actor_spec\.json: not valid JSON"):
        PolicyBundle.load(path)


def test_invalid_manifest_field_is_named_with_its_path(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m["action"].update(p_min_w=-1.0))
    with pytest.raises(BundleError, match=r"manifest\.json: field 'action\.p_min_w': Input should be greater than 0"):
        PolicyBundle.load(path)


def test_manifest_missing_a_field_is_named(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m.pop("algo"))
    with pytest.raises(BundleError, match=r"manifest\.json: field 'algo': Field required"):
        PolicyBundle.load(path)


def test_manifest_file_path_outside_the_bundle_is_refused(tmp_path):
    path = make_bundle(tmp_path)
    edit_manifest(path, lambda m: m["files"]["actor_spec"].update(path="../actor_spec.json"))
    with pytest.raises(BundleError, match=r"field 'files\.actor_spec\.path'"):
        PolicyBundle.load(path)


def test_nan_in_the_manifest_is_refused(tmp_path):
    path = make_bundle(tmp_path)
    text = (path / MANIFEST_FILE).read_text().replace('"p_max_w": 20.0', '"p_max_w": NaN')
    (path / MANIFEST_FILE).write_text(text)
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON: NaN is not a finite number"):
        PolicyBundle.load(path)


def test_asking_for_an_absent_target_names_the_targets_there(tmp_path):
    bundle = PolicyBundle.load(make_bundle(tmp_path))
    with pytest.raises(BundleError, match=r"no 'onnx' target \(the bundle has actor_spec, observations\)"):
        bundle.file("onnx")


def test_writer_names_a_bad_manifest_field(tmp_path):
    with pytest.raises(BundleError, match=r"manifest\.json: field 'algo'"):
        write_bundle(tmp_path / "b", random_ann_spec(), {}, algo="", action=macro_action_spec())
    with pytest.raises(BundleError, match=r"training metadata and op counts must be JSON"):
        write_bundle(tmp_path / "c", random_ann_spec(), {}, algo="sac", action=macro_action_spec(),
                     training_metadata={"policy": object()})
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
