"""Policy bundle: the deployable actor as a directory, validated before anything runs it.

Layout (format version 2)::

    <bundle>/
      manifest.json      # Manifest: what the actor reads and writes, where it came from, file hashes
      actor_spec.json    # ActorSpec.to_dict(): the actor as plain data (numpy reference)
      actor.onnx         # one artefact per target, e.g. "onnx"; also "nir", "lava_fixed", ...

Every file but the manifest is listed in ``manifest.files`` with its SHA-256 and size, and
``PolicyBundle.sha256`` (the hash of ``manifest.json``) therefore pins the whole bundle; the
ledger stores it on every row. The writer copies artefacts into a temporary sibling directory and
renames it into place (:func:`aolo.runtime.atomic_files.replace_dir_atomic`, every file fsynced
first), so a reader never sees half a bundle. torch-free: numpy, pydantic, stdlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .actor_spec import MAX_PARAMETERS, MAX_TIMESTEPS, ActorSpec, CubaLIF, Linear, PopulationDecoder, PopulationEncoder
from .atomic_files import TEMP_SUFFIX, copy_file_atomic, replace_dir_atomic, write_bytes_atomic, write_text_atomic
from .plain_files import open_no_follow
from .policy_io import ACT_DIM, LEVELS, OBSERVATION

__all__ = [
    "ACTOR_SPEC_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ActionSpec",
    "ActorSummary",
    "BundleError",
    "FileEntry",
    "Manifest",
    "ObservationSpec",
    "PolicyBundle",
    "Signature",
    "actor_summary",
    "write_bundle",
]

FORMAT_VERSION = 2  # 2: the observation section carries the whole contract (input, unit, transform, bounds)
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"  # optional, beside the manifest it signs (aolo.runtime.signing)
SIGNATURE_ALGORITHM = "ed25519"
ACTOR_SPEC_FILE = "actor_spec.json"
ACTOR_SPEC_TARGET = "actor_spec"
# Canonical file names for known targets; any other target keeps its source file's name.
TARGET_FILE_NAMES = {"onnx": "actor.onnx", "nir": "actor.nir", "lava_fixed": "lava_fixed.npz",
                     "netx": "actor_netx.h5", "loihi_resources": "loihi_resources.json",
                     "observations": "observations.npy", "box_observations": "box_observations.npy"}
_TARGET_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a plain name: no directories, no '..'
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few kB
MAX_FILE_BYTES = 256 << 20  # per file; today's largest artefact (a 32 x 32 SNN's spec) is ~100 kB
MAX_RECORDED_OBS = 100_000  # rows of the recorded observations (export writes 1,000)
OBSERVATIONS_TARGET = "observations"  # recorded from the training scenario (export)
BOX_OBSERVATIONS_TARGET = "box_observations"  # drawn from the contract's box when the writer gives none
N_BOX_OBS, BOX_OBS_SEED = 64, 0
OBS_NORMALISATION_NOTE = (
    "Observation built by aolo.runtime.policy_io.build_observation: each field is transform(input), "
    "clipped to [low, high]; ci_norm is min-max over the trailing week of the grid trace (grid.trailing_minmax)."
)
POWER_MAPPING_NOTE = "tx_power_w = p_min_w + (clip(a_1, -1, 1) + 1) / 2 * (p_max_w - p_min_w)"


class BundleError(ValueError):
    """A bundle that cannot be written or loaded; the message names the file and the field."""


@dataclass(frozen=True)
class Signature:
    """A parsed ``signature.json``: who claims to have signed ``manifest.json`` (see
    :mod:`aolo.runtime.signing`, which checks the claim against trusted keys).

    :param key_id: the signer's key id (16 hex digits)
    :param signature: the 64-byte Ed25519 signature of the manifest's bytes
    """

    key_id: str
    signature: bytes

    @classmethod
    def parse(cls, path: Path, data: bytes) -> "Signature":
        """:raises BundleError: not ``{"algorithm": "ed25519", "key_id": ..., "signature": ...}``, naming the field"""
        import base64

        raw = _read_json(path, data)
        if not isinstance(raw, dict) or set(raw) != {"algorithm", "key_id", "signature"}:
            raise BundleError(f"{path}: field '(root)': needs exactly 'algorithm', 'key_id' and 'signature'")
        if raw["algorithm"] != SIGNATURE_ALGORITHM:
            raise BundleError(f"{path}: field 'algorithm': {raw['algorithm']!r} is not {SIGNATURE_ALGORITHM!r}")
        kid = raw["key_id"]
        if not isinstance(kid, str) or not re.fullmatch(r"[0-9a-f]{16}", kid):
            raise BundleError(f"{path}: field 'key_id': 16 lower-case hex digits expected")
        try:
            sig = base64.b64decode(str(raw["signature"]), validate=True)
        except ValueError:
            sig = b""
        if len(sig) != 64:
            raise BundleError(f"{path}: field 'signature': a base64 Ed25519 signature (64 bytes) expected")
        return cls(key_id=kid, signature=sig)


# ---------------------------------------------------------------------------------------------
# manifest schema
# ---------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FileEntry(_Strict):
    """One file of the bundle.

    :param path: file name inside the bundle directory (no sub-directories)
    :param sha256: lower-case hex SHA-256 of the file's bytes
    :param bytes: file size, bytes
    """

    path: str = Field(pattern=_FILE_RE.pattern)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0, le=MAX_FILE_BYTES)

    @field_validator("path")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in (MANIFEST_FILE, SIGNATURE_FILE):
            raise ValueError(f"{v} is reserved: the manifest cannot list itself or its signature")
        return v


class ObservationField(_Strict):
    """One observation entry, as :class:`aolo.runtime.policy_io.ObsField` defines it."""

    name: str
    input: str
    unit: str
    transform: Literal["linear", "sin_day", "cos_day", "onehot"]
    low: float
    high: float
    meaning: str
    offset: float = 0.0
    scale: float = 1.0
    category: Optional[int] = None


class ObservationSpec(_Strict):
    """What the actor reads: ``obs``: (batch, obs_dim) float32, fields in this order."""

    obs_dim: int = Field(ge=1)
    fields: list[ObservationField]
    normalisation: str = OBS_NORMALISATION_NOTE

    @model_validator(mode="after")
    def _dims_match(self) -> "ObservationSpec":
        if len(self.fields) != self.obs_dim:
            raise ValueError(f"fields: {len(self.fields)} names for obs_dim {self.obs_dim}")
        return self

    @classmethod
    def default(cls) -> "ObservationSpec":
        """The runtime's observation contract, ``policy_io.OBSERVATION``."""
        return cls(obs_dim=len(OBSERVATION), fields=[ObservationField(**asdict(f)) for f in OBSERVATION])


class RadioRef(_Strict):
    """The radio profile the action's power range came from."""

    name: str
    version: str


class ActionSpec(_Strict):
    """What the actor writes: ``action``: (batch, 2) float32 in [-1, 1].

    :param act_dim: 2 (level, power)
    :param levels: directive level names, index = level
    :param level_bin_edges: a_0 < edge[0] -> level 0, < edge[1] -> level 1, else level 2
    :param p_min_w: power at a_1 = -1, W
    :param p_max_w: power at a_1 = +1, W
    :param power_mapping: the affine map from a_1 to power, in words
    :param radio: the radio profile (name, version) the power range comes from
    """

    act_dim: int = ACT_DIM
    levels: list[str] = Field(default_factory=lambda: list(LEVELS))
    level_bin_edges: list[float] = Field(default_factory=lambda: [-1.0 / 3.0, 1.0 / 3.0])
    p_min_w: float = Field(gt=0)
    p_max_w: float = Field(gt=0)
    power_mapping: str = POWER_MAPPING_NOTE
    radio: RadioRef

    @model_validator(mode="after")
    def _consistent(self) -> "ActionSpec":
        if self.act_dim != ACT_DIM:
            raise ValueError(f"act_dim: the runtime maps {ACT_DIM} action values (level, power), got {self.act_dim}")
        if len(self.level_bin_edges) != len(self.levels) - 1:
            raise ValueError(f"level_bin_edges: {len(self.levels)} levels need {len(self.levels) - 1} edges")
        if self.p_min_w > self.p_max_w:
            raise ValueError(f"p_min_w: {self.p_min_w} W is above p_max_w {self.p_max_w} W")
        return self

    @classmethod
    def from_radio_profile(cls, radio: Any) -> "ActionSpec":
        """The action spec for a :class:`aolo.hw_profiles.RadioProfile` (its P_min, P_max, name, version)."""
        return cls(p_min_w=radio.si("p_min"), p_max_w=radio.si("p_max"),
                   radio=RadioRef(name=radio.name, version=radio.version))


class LayerSummary(_Strict):
    """One node of the actor: its type and parameter shape (``[out, in]`` for weights, ``[n]`` for neurons)."""

    type: str
    shape: list[int]
    bias: bool = False


class NeuronSummary(_Strict):
    """CubaLIF constants of one spiking layer, as (min, max) over its neurons."""

    n: int
    alpha: tuple[float, float]
    beta: tuple[float, float]
    threshold: tuple[float, float]


class ActorSummary(_Strict):
    """Shape of the actor, for people and reports (the numbers that run are in actor_spec.json).

    :param timesteps: T, simulation steps per decision (1 for an ANN)
    :param encoder_population: neurons per observation dimension (SNN), else None
    :param encoder_vth: regular-spike threshold of the encoder (SNN), else None
    :param n_parameters: weights and biases in Linear / decoder nodes
    """

    timesteps: int = Field(ge=1, le=MAX_TIMESTEPS)
    encoder_population: Optional[int] = None
    encoder_vth: Optional[float] = None
    decoder_population: Optional[int] = None
    layers: list[LayerSummary]
    neurons: list[NeuronSummary] = Field(default_factory=list)
    n_parameters: int = Field(ge=0, le=MAX_PARAMETERS)


class Manifest(_Strict):
    """``manifest.json``: everything needed to trust and run the bundle's actor.

    :param format_version: bundle format; this aolo reads only ``FORMAT_VERSION``
    :param created_utc: when the bundle was written
    :param aolo_version: aolo version that wrote it
    :param algo: training algorithm ("sdrl", "sac", or another name)
    :param actor_kind: "snn" or "ann"
    :param files: by target name ("actor_spec", "onnx", "nir", ...): path, sha256, bytes
    :param training: free provenance (run dir, seed, steps, scenario)
    :param op_counts: free per-layer operation counts (synops, MACs) for energy estimates
    :param profile_versions: profile name -> version the policy was trained against
    """

    format_version: int
    created_utc: AwareDatetime
    aolo_version: str
    algo: str = Field(min_length=1)
    actor_kind: Literal["snn", "ann"]
    observation: ObservationSpec
    action: ActionSpec
    actor: ActorSummary
    files: dict[str, FileEntry]
    training: dict[str, Any] = Field(default_factory=dict)
    op_counts: dict[str, Any] = Field(default_factory=dict)
    profile_versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("files")
    @classmethod
    def _files_ok(cls, v: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for target in v:
            if not _TARGET_RE.match(target):
                raise ValueError(f"target {target!r}: names are lower-case letters, digits and '_'")
        if ACTOR_SPEC_TARGET not in v:
            raise ValueError(f"needs the {ACTOR_SPEC_TARGET!r} entry ({ACTOR_SPEC_FILE})")
        paths = [e.path for e in v.values()]
        if len(set(paths)) != len(paths):
            raise ValueError("two targets name the same file")
        return v


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with _open_plain(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_plain(path: Path):
    """Open a regular file for reading without following a symbolic link (O_NOFOLLOW), so a link
    swapped in after the directory was checked is refused too."""
    try:
        return open_no_follow(path)
    except OSError as e:
        raise BundleError(f"{path}: cannot open ({e.strerror}; a bundle holds plain files only)") from None


def _read_plain(path: Path, max_bytes: int) -> bytes:
    with _open_plain(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BundleError(f"{path}: larger than {max_bytes} bytes")
    return data


def _field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ``loc`` as ``action.p_min_w`` / ``files.onnx.sha256`` / ``requests[3].gain_db``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _range(x: np.ndarray) -> tuple[float, float]:
    return float(np.min(x)), float(np.max(x))


def actor_summary(spec: ActorSpec) -> ActorSummary:
    """Layer shapes, neuron constants, T and population sizes of ``spec``."""
    layers, neurons, n_params = [], [], 0
    for node in spec.nodes:
        if isinstance(node, Linear):
            layers.append(LayerSummary(type="Linear", shape=list(node.weight.shape), bias=node.bias is not None))
            n_params += node.weight.size + (0 if node.bias is None else node.bias.size)
        elif isinstance(node, CubaLIF):
            layers.append(LayerSummary(type="CubaLIF", shape=[int(node.threshold.size)]))
            neurons.append(NeuronSummary(n=int(node.threshold.size), alpha=_range(node.alpha),
                                         beta=_range(node.beta), threshold=_range(node.threshold)))
        elif isinstance(node, PopulationEncoder):
            layers.append(LayerSummary(type="PopulationEncoder", shape=list(node.mean.shape)))
            n_params += node.mean.size + node.std.size
        elif isinstance(node, PopulationDecoder):
            layers.append(LayerSummary(type="PopulationDecoder", shape=list(node.weight.shape), bias=True))
            n_params += node.weight.size + node.bias.size
        else:
            layers.append(LayerSummary(type=type(node).__name__, shape=[]))
    enc = spec.nodes[0] if isinstance(spec.nodes[0], PopulationEncoder) else None
    dec = spec.nodes[-2] if len(spec.nodes) > 1 and isinstance(spec.nodes[-2], PopulationDecoder) else None
    return ActorSummary(
        timesteps=spec.timesteps,
        encoder_population=None if enc is None else int(enc.mean.shape[1]),
        encoder_vth=None if enc is None else float(enc.vth),
        decoder_population=None if dec is None else int(dec.weight.shape[1]),
        layers=layers, neurons=neurons, n_parameters=int(n_params),
    )


def _aolo_version() -> str:
    try:
        from aolo import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover - the runtime outside its package
        return "unknown"


# ---------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------


def write_bundle(
    out_dir: str | os.PathLike,
    spec: ActorSpec,
    artefacts: Mapping[str, str | os.PathLike],
    *,
    algo: str,
    action: ActionSpec,
    observation: ObservationSpec | None = None,
    training_metadata: Mapping[str, Any] | None = None,
    op_counts: Mapping[str, Any] | None = None,
    profile_versions: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a policy bundle directory and return its path.

    :param out_dir: the bundle directory to create; it must not exist unless ``overwrite``
    :param spec: the deterministic actor; written as ``actor_spec.json``
    :param artefacts: target name -> existing file, copied in (``onnx`` -> ``actor.onnx``,
        ``nir`` -> ``actor.nir``, ``lava_fixed`` -> ``lava_fixed.npz``, ``observations`` ->
        ``observations.npy``, others keep their name); without ``observations``, 64 observations
        drawn from the contract's box are recorded as ``box_observations``
    :param algo: training algorithm, e.g. "sdrl" or "sac"
    :param action: the action contract (power range and radio profile), see
        :meth:`ActionSpec.from_radio_profile`
    :param observation: the observation contract; default ``policy_io.OBSERVATION``
    :param training_metadata: JSON-ready provenance (run dir, seed, steps, scenario)
    :param op_counts: JSON-ready per-layer operation counts
    :param profile_versions: profile name -> version; the radio profile is added
    :param overwrite: replace an existing ``out_dir``
    :raises BundleError: a missing artefact, a bad target name, a spec that does not match the
        observation or action contract, non-finite weights, an existing ``out_dir``
    """
    out = Path(out_dir)
    observation = observation or ObservationSpec.default()
    if spec.obs_dim != observation.obs_dim:
        raise BundleError(f"actor spec: field 'obs_dim': {spec.obs_dim} does not match the observation's {observation.obs_dim}")
    if spec.act_dim != action.act_dim:
        raise BundleError(f"actor spec: field 'act_dim': {spec.act_dim} does not match the action's {action.act_dim}")
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists (pass overwrite=True to replace it)")
    sources = _artefact_sources(artefacts)
    try:
        spec_json = json.dumps(spec.to_dict(), allow_nan=False)
    except ValueError as e:
        raise BundleError(f"actor spec: parameters must be finite ({e})") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=TEMP_SUFFIX, dir=out.parent))
    try:
        write_text_atomic(tmp / ACTOR_SPEC_FILE, spec_json)
        names = {ACTOR_SPEC_TARGET: ACTOR_SPEC_FILE}
        for target, (src, name) in sources.items():
            copy_file_atomic(src, tmp / name)
            names[target] = name
        if OBSERVATIONS_TARGET not in names:
            names[BOX_OBSERVATIONS_TARGET] = _write_box_observations(tmp, spec.obs_dim)
        files = {t: FileEntry(path=n, sha256=_sha256_file(tmp / n), bytes=(tmp / n).stat().st_size)
                 for t, n in names.items()}
        versions = dict(profile_versions or {})
        versions.setdefault(action.radio.name, action.radio.version)
        manifest = _manifest(algo=algo, spec=spec, observation=observation, action=action, files=files,
                             training=dict(training_metadata or {}), op_counts=dict(op_counts or {}),
                             profile_versions=versions)
        try:
            text = json.dumps(manifest.model_dump(mode="json"), indent=2, allow_nan=False)
        except ValueError as e:
            raise BundleError(f"{MANIFEST_FILE}: training metadata and op counts must be JSON with finite numbers ({e})") from None
        write_text_atomic(tmp / MANIFEST_FILE, text + "\n")
        replace_dir_atomic(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_box_observations(folder: Path, obs_dim: int) -> str:
    """Record :data:`N_BOX_OBS` observations drawn uniformly from the contract's box (fixed seed)
    for a bundle whose writer recorded none, so that every bundle can be replayed when it is
    served (:func:`aolo.runtime.backends.check_against_recorded`). They are not the scenario's
    (export records those as ``observations``), so nothing estimates energy or spike rates from
    them. Returns the file name."""
    import io

    from .policy_io import OBS_HIGH, OBS_LOW

    low, high = (OBS_LOW, OBS_HIGH) if obs_dim == OBS_LOW.shape[0] else (-1.0, 1.0)
    obs = np.random.default_rng(BOX_OBS_SEED).uniform(low, high, (N_BOX_OBS, obs_dim)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, obs, allow_pickle=False)
    name = TARGET_FILE_NAMES[BOX_OBSERVATIONS_TARGET]
    write_bytes_atomic(folder / name, buf.getvalue())
    return name


def _artefact_sources(artefacts: Mapping[str, str | os.PathLike]) -> dict[str, tuple[Path, str]]:
    """Target -> (source file, file name in the bundle), every target and name checked.

    :raises BundleError: a reserved or malformed target or name, a missing source, two targets on one name
    """
    sources: dict[str, tuple[Path, str]] = {}
    for target, src in artefacts.items():
        src = Path(src)
        if target == ACTOR_SPEC_TARGET or not _TARGET_RE.match(target):
            raise BundleError(f"artefacts: target {target!r} is reserved or not lower-case letters, digits and '_'")
        if not src.is_file():
            raise BundleError(f"artefacts: target {target!r}: {src} is not a file")
        name = TARGET_FILE_NAMES.get(target, src.name)
        if name in (MANIFEST_FILE, SIGNATURE_FILE, ACTOR_SPEC_FILE) or not _FILE_RE.match(name):
            raise BundleError(f"artefacts: target {target!r}: file name {name!r} is reserved or not a plain name")
        if any(name == n for _, n in sources.values()):
            raise BundleError(f"artefacts: target {target!r}: two targets would write {name!r}")
        sources[target] = (src, name)
    return sources


def _manifest(*, algo: str, spec: ActorSpec, **fields: Any) -> "Manifest":
    """The bundle's manifest, stamped now with this aolo version.

    :raises BundleError: a field the manifest refuses (named with its path)
    """
    try:
        return Manifest(format_version=FORMAT_VERSION, created_utc=datetime.now(timezone.utc),
                        aolo_version=_aolo_version(), algo=algo, actor_kind=spec.kind, actor=actor_summary(spec),
                        **fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise BundleError(f"{MANIFEST_FILE}: field {_field_path(err['loc'])!r}: "
                          f"{err['msg'].removeprefix('Value error, ')}") from None


# ---------------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path, data: bytes | None = None) -> Any:
    if data is None:
        if not path.is_file():
            raise BundleError(f"{path}: missing")
        data = _read_plain(path, MAX_FILE_BYTES)
    try:
        return json.loads(data, parse_constant=lambda c: _reject_constant(path, c))
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not valid JSON: not UTF-8 text") from None


def _reject_constant(path: Path, constant: str) -> Any:
    raise BundleError(f"{path}: not valid JSON: {constant} is not a finite number")


@dataclass(frozen=True, eq=False)
class PolicyBundle:
    """A loaded, verified bundle.

    :param path: the bundle directory
    :param manifest: the validated manifest
    :param spec: the actor (numpy reference), from ``actor_spec.json``
    :param sha256: hex SHA-256 of ``manifest.json``, the bundle's identity in the ledger
    :param manifest_bytes: ``manifest.json`` as read (what a signature signs)
    :param signature: the parsed ``signature.json``, None for an unsigned bundle (not yet checked
        against any key: see :func:`aolo.runtime.signing.verify_signer`)
    """

    path: Path
    manifest: Manifest
    spec: ActorSpec
    sha256: str
    manifest_bytes: bytes = b""
    signature: Optional[Signature] = None

    @property
    def targets(self) -> list[str]:
        """Target names with a file in the bundle (always includes ``actor_spec``)."""
        return sorted(self.manifest.files)

    def file(self, target: str) -> Path:
        """Path of ``target``'s file.

        :raises BundleError: the bundle has no such target
        """
        entry = self.manifest.files.get(target)
        if entry is None:
            raise BundleError(f"{self.path / MANIFEST_FILE}: field 'files': no {target!r} target "
                              f"(the bundle has {', '.join(self.targets)})")
        return self.path / entry.path

    def verify_bytes(self, target: str, data: bytes) -> None:
        """Check ``data`` against ``target``'s manifest hash (for a backend that reads the file itself).

        :raises BundleError: the hash differs
        """
        entry = self.manifest.files[target]
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise BundleError(f"{self.path / entry.path}: sha256 mismatch for target {target!r}: "
                              f"manifest says {entry.sha256}, file has {digest}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PolicyBundle":
        """Read and verify a bundle.

        Checks, in order: the manifest exists and is JSON; ``format_version`` is known; the
        manifest validates; every listed file exists with the listed size and SHA-256; the actor
        spec parses and its kind, ``obs_dim`` and ``act_dim`` match the manifest.

        :raises BundleError: naming the file and the field of the first failure
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: not a bundle directory")
        mpath = root / MANIFEST_FILE
        if not mpath.is_file() and not mpath.is_symlink():
            raise BundleError(f"{mpath}: missing")
        raw_bytes = _read_plain(mpath, MAX_MANIFEST_BYTES)
        raw = _read_json(mpath, raw_bytes)
        if not isinstance(raw, dict):
            raise BundleError(f"{mpath}: field '(root)': must be a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{mpath}: field 'format_version': {version!r} is not supported "
                              f"(this aolo reads format version {FORMAT_VERSION})")
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            raise BundleError(f"{mpath}: field {_field_path(err['loc'])!r}: "
                              f"{err['msg'].removeprefix('Value error, ')}") from None
        _check_closed(root, manifest)
        for target, entry in manifest.files.items():
            fpath = root / entry.path
            if not fpath.is_file():
                raise BundleError(f"{fpath}: missing (listed in {MANIFEST_FILE} field 'files.{target}')")
            size = fpath.stat().st_size
            if size != entry.bytes:
                raise BundleError(f"{fpath}: size mismatch for target {target!r}: manifest says {entry.bytes} bytes, "
                                  f"file has {size}")
            digest = _sha256_file(fpath)
            if digest != entry.sha256:
                raise BundleError(f"{fpath}: sha256 mismatch for target {target!r}: manifest says {entry.sha256}, "
                                  f"file has {digest}")
        spath = root / manifest.files[ACTOR_SPEC_TARGET].path
        spec_raw = _read_json(spath)
        try:
            spec = ActorSpec.from_dict(spec_raw)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise BundleError(f"{spath}: not a valid actor spec: {what}") from None
        checks = (("kind", spec.kind, "actor_kind", manifest.actor_kind),
                  ("obs_dim", spec.obs_dim, "observation.obs_dim", manifest.observation.obs_dim),
                  ("act_dim", spec.act_dim, "action.act_dim", manifest.action.act_dim))
        for field, got, mfield, want in checks:
            if got != want:
                raise BundleError(f"{spath}: field {field!r}: {got!r} does not match {MANIFEST_FILE} "
                                  f"field {mfield!r} = {want!r}")
        _check_spec_shapes(spec, spath)
        summary = actor_summary(spec)
        if summary != manifest.actor:
            got, want = summary.model_dump(), manifest.actor.model_dump()
            field = next(k for k in want if got[k] != want[k])
            raise BundleError(f"{mpath}: field 'actor.{field}': {want[field]!r} does not describe {spath.name} "
                              f"({got[field]!r})")
        spath_sig = root / SIGNATURE_FILE
        signature = (Signature.parse(spath_sig, _read_plain(spath_sig, MAX_MANIFEST_BYTES))
                     if spath_sig.exists() or spath_sig.is_symlink() else None)
        return cls(path=root, manifest=manifest, spec=spec, sha256=hashlib.sha256(raw_bytes).hexdigest(),
                   manifest_bytes=raw_bytes, signature=signature)

    def read_verified(self, target: str) -> bytes:
        """The bytes of ``target``'s file, checked against the manifest (read once, then checked, so
        what is used is what was hashed).

        :raises BundleError: no such target, a link, a size or hash mismatch
        """
        data = _read_plain(self.file(target), self.manifest.files[target].bytes)
        self.verify_bytes(target, data)
        return data

    def recorded_observations(self) -> np.ndarray:
        """The observations recorded with the actor, (n, obs_dim) float32: the training scenario's
        (``observations``, written by export), else the contract-box draw of a bundle written
        without them (``box_observations``).

        :raises BundleError: neither target, or a file that is not a finite (n, obs_dim) float32
            ``.npy`` array with 1 <= n <= MAX_RECORDED_OBS (named)
        """
        target = OBSERVATIONS_TARGET if OBSERVATIONS_TARGET in self.manifest.files else BOX_OBSERVATIONS_TARGET
        return self._read_observations(target)

    def scenario_observations(self) -> np.ndarray | None:
        """The training scenario's observations recorded by export (``observations``), (n, obs_dim)
        float32, read and checked as :meth:`recorded_observations` reads them; None for a bundle
        without them (its contract-box draw is not the scenario's, so energy and spike rates are
        never estimated from it).

        :raises BundleError: a file that is not a finite (n, obs_dim) float32 ``.npy`` array with
            1 <= n <= MAX_RECORDED_OBS, or that does not match its manifest entry (named)
        """
        return self._read_observations(OBSERVATIONS_TARGET) if OBSERVATIONS_TARGET in self.manifest.files else None

    def _read_observations(self, target: str) -> np.ndarray:
        """``target``'s observations: hash-checked bytes, parsed without pickle, shape, dtype and
        finiteness checked (:raises BundleError: naming the file)."""
        import io

        path = self.file(target)
        try:
            obs = np.load(io.BytesIO(self.read_verified(target)), allow_pickle=False)
        except ValueError as e:
            raise BundleError(f"{path}: not a numpy .npy array: {e}") from None
        n_dim = self.manifest.observation.obs_dim
        if obs.dtype != np.float32 or obs.ndim != 2 or obs.shape[1] != n_dim or not 1 <= obs.shape[0] <= MAX_RECORDED_OBS:
            raise BundleError(f"{path}: expected (n, {n_dim}) float32 with 1 <= n <= {MAX_RECORDED_OBS}, "
                              f"got {obs.dtype} {obs.shape}")
        if not np.all(np.isfinite(obs)):
            raise BundleError(f"{path}: observations must be finite")
        return obs


def _check_closed(root: Path, manifest: Manifest) -> None:
    """The bundle directory holds the manifest and the files it lists, as plain files, and nothing else.

    :raises BundleError: a symbolic link, a sub-directory or another non-file, or an unlisted file
    """
    listed = {e.path for e in manifest.files.values()} | {MANIFEST_FILE, SIGNATURE_FILE}
    for entry in sorted(root.iterdir()):
        if entry.is_symlink():
            raise BundleError(f"{entry}: a symbolic link; a bundle holds plain files only")
        if not entry.is_file():
            raise BundleError(f"{entry}: not a plain file; a bundle holds plain files only")
        if entry.name not in listed:
            raise BundleError(f"{entry}: not listed in {MANIFEST_FILE} field 'files'; a bundle holds only what "
                              "its manifest pins")


def _check_spec_shapes(spec: ActorSpec, spath: Path) -> None:
    """The node chain must carry (batch, obs_dim) to (batch, act_dim): run one zero observation."""
    try:
        out = spec.forward(np.zeros((1, spec.obs_dim), dtype=np.float32))
    except ValueError as e:
        raise BundleError(f"{spath}: field 'nodes': the layers do not chain from obs_dim {spec.obs_dim} "
                          f"to act_dim {spec.act_dim}: {e}") from None
    if out.shape != (1, spec.act_dim):
        raise BundleError(f"{spath}: field 'nodes': the actor writes {out.shape[1]} values, act_dim is {spec.act_dim}")
