"""Request sources for the environment: what each LLM request would cost at every directive level.

A request of task class ``c`` (alpaca, math, mmlu, naturalqa, scienceqa, triviaqa) is described by
its outcome at each of the three generation-directive levels (L0 none, L1 "Always answer briefly",
L2 "Always answer very briefly"): output tokens, GPU inference energy (J) and latency (s); by the
level an LLM judge preferred (quality ``q = 1`` when the chosen level is the preferred one, Sprout's
preference metric); by its prompt length and by its class deadline ``T_max(c)``. One
:class:`RequestBatch` holds ``n`` such requests as columns.

Two sources implement :class:`RequestSource` (``sample(rng, task_class) -> RequestBatch``):

* :class:`SyntheticRequests`, the embedded default: per class and level a log-normal of output
  tokens (fitted to the median and 95th percentile by default) with one standard normal ``z``
  shared by the three levels of a request,

      kappa_l = clip(round(exp(mu_cl + sigma_cl z)), 1, kappa_max_cl),
      E_l = e_tok(c, l) kappa_l,   tau_l = t_tok(c, l) kappa_l,

  the preferred level drawn from the class's judge preference probabilities, the deadline from
  the class table and the prompt length from aolo's per-class estimate. Its figures are
  ``aolo/train/data/sprout_defaults.json``, derived by ``scripts/derive_request_defaults.py``.
* :class:`TraceRequests`, trace replay: the measured Llama-2-13B-chat outcomes of the judged
  prompts of Sprout's artifact, read from ``requests.csv`` and ``judgements.csv``.

Data: Sprout artifact (Li et al., "Sprout: Green Generative AI with Carbon-Efficient LLM
Inference", EMNLP 2024; MIT licence): Llama-2-13B-chat under vLLM, batch 1, on an A100-class GPU.
Its L0 rows of alpaca, math, mmlu and naturalqa carry no output-token count; they are imputed as
``energy / e_imp(c)`` with ``e_imp(c)`` the class's energy per output token measured at L1 and L2
(ratio of sums), see :func:`impute_output_tokens`.

numpy (and ``scipy.special.ndtri``) and the standard library only.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

from aolo.runtime.policy_io import LEVELS, TASK_CLASSES  # the one definition, shared with the runtime

__all__ = [
    "DEFAULTS_RESOURCE",
    "LEVELS",
    "N_CLASSES",
    "N_LEVELS",
    "TASK_CLASSES",
    "RequestBatch",
    "RequestDataError",
    "RequestModelTables",
    "RequestSource",
    "SproutJudgements",
    "SproutMeasurements",
    "SyntheticRequests",
    "TraceRequests",
    "imputation_energy_per_token_j",
    "impute_output_tokens",
    "load_request_defaults",
    "prompt_tokens_from_sha1",
    "read_sprout_judgements",
    "read_sprout_requests",
    "wh_to_j",
]

N_CLASSES = len(TASK_CLASSES)
N_LEVELS = len(LEVELS)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(TASK_CLASSES)}
LEVEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}
OTHER_MODEL_LEVELS = frozenset({"7B"})
"""Levels of ``requests.csv`` that are another model (Llama-2-7B-chat); skipped by the readers."""

DEFAULTS_RESOURCE = "data/sprout_defaults.json"
"""The embedded defaults, relative to the ``aolo.train`` package."""

J_PER_WH = 3600.0


class RequestDataError(ValueError):
    """Request data that cannot be used; the message names the file (and line, column or field)."""


def wh_to_j(energy_wh: ArrayLike) -> np.ndarray:
    """Convert energy from Wh (Sprout's CSV unit) to J; the one place this conversion happens.

    :param energy_wh: any shape, Wh
    :return: same shape float64, J
    """
    return np.asarray(energy_wh, dtype=np.float64) * J_PER_WH


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class RequestBatch:
    """``n`` LLM requests, each with its outcome at every directive level (columns, row = request).

    :param task_class: (n,) int64 in 0..5, index into :data:`TASK_CLASSES`
    :param prompt_tokens: (n,) int64 >= 1, prompt length n_in (tokens)
    :param output_tokens: (n, 3) float64 >= 0, output tokens kappa at L0, L1, L2
    :param inference_energy_j: (n, 3) float64 >= 0, GPU inference energy at L0, L1, L2 (J)
    :param inference_latency_s: (n, 3) float64 >= 0, inference latency at L0, L1, L2 (s)
    :param preferred_level: (n,) int64 in 0..2, the level the judge prefers; quality of choosing
        level ``l`` is ``q = 1[l == preferred_level]``
    :param deadline_s: (n,) float64 > 0, latency budget T_max(c) of the request (s)
    :param output_tokens_imputed: (n, 3) bool, True where ``output_tokens`` was imputed from
        energy rather than measured; all False when omitted
    """

    task_class: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    inference_energy_j: np.ndarray
    inference_latency_s: np.ndarray
    preferred_level: np.ndarray
    deadline_s: np.ndarray
    output_tokens_imputed: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.task_class = np.asarray(self.task_class, dtype=np.int64)
        if self.task_class.ndim != 1:
            raise ValueError(f"RequestBatch.task_class: expected shape (n,), got {self.task_class.shape}")
        n = self.task_class.shape[0]
        self.prompt_tokens = _column(self.prompt_tokens, "prompt_tokens", np.int64, (n,))
        self.output_tokens = _column(self.output_tokens, "output_tokens", np.float64, (n, N_LEVELS))
        self.inference_energy_j = _column(self.inference_energy_j, "inference_energy_j", np.float64, (n, N_LEVELS))
        self.inference_latency_s = _column(self.inference_latency_s, "inference_latency_s", np.float64, (n, N_LEVELS))
        self.preferred_level = _column(self.preferred_level, "preferred_level", np.int64, (n,))
        self.deadline_s = _column(self.deadline_s, "deadline_s", np.float64, (n,))
        if self.output_tokens_imputed is None:
            self.output_tokens_imputed = np.zeros((n, N_LEVELS), dtype=bool)
        else:
            self.output_tokens_imputed = _column(self.output_tokens_imputed, "output_tokens_imputed", np.bool_, (n, N_LEVELS))
        if n:
            _check_range(self.task_class, "task_class", 0, N_CLASSES - 1)
            _check_range(self.preferred_level, "preferred_level", 0, N_LEVELS - 1)
            _check_range(self.prompt_tokens, "prompt_tokens", 1, None)
            for name in ("output_tokens", "inference_energy_j", "inference_latency_s"):
                _check_range(getattr(self, name), name, 0.0, None)
            if not np.all(self.deadline_s > 0):
                raise ValueError("RequestBatch.deadline_s: every deadline must be > 0 s")

    def __len__(self) -> int:
        return int(self.task_class.shape[0])

    def take(self, idx: ArrayLike | slice) -> RequestBatch:
        """The requests at ``idx`` (an int, a slice, an int array or a (n,) bool mask), as a batch.

        :param idx: int, slice, (k,) int or (n,) bool
        :return: a new batch (an int gives a batch of one)
        """
        if isinstance(idx, (int, np.integer)):
            idx = np.array([idx])
        return RequestBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    __getitem__ = take

    def quality(self, level: ArrayLike) -> np.ndarray:
        """Preference quality of choosing ``level`` for each request (Sprout's metric).

        :param level: (n,) int in 0..2, or a scalar level for all
        :return: (n,) float64, 1.0 where ``level == preferred_level`` else 0.0
        """
        return (np.asarray(level) == self.preferred_level).astype(np.float64)

    @classmethod
    def concatenate(cls, batches: Sequence[RequestBatch]) -> RequestBatch:
        """One batch holding ``batches`` in order.

        :param batches: at least one batch
        :return: a batch of ``sum(len(b))`` requests
        """
        if not batches:
            raise ValueError("RequestBatch.concatenate: needs at least one batch")
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)})


def _column(value: ArrayLike, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.shape != shape:
        raise ValueError(f"RequestBatch.{name}: expected shape {shape}, got {array.shape}")
    return array


def _check_range(array: np.ndarray, name: str, low: float, high: float | None) -> None:
    bad = ~(array >= low) if high is None else ~((array >= low) & (array <= high))
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"RequestBatch.{name}: row {i} is {array[i]!r}, must be {bound}")


class RequestSource(Protocol):
    """Anything that draws requests of given classes: the synthetic model or trace replay."""

    def sample(self, rng: np.random.Generator, task_class: ArrayLike) -> RequestBatch:
        """Draw one request per entry of ``task_class`` ((n,) int in 0..5)."""
        ...


# ---------------------------------------------------------------------------------------------
# Sprout CSV readers (shared by trace replay and scripts/derive_request_defaults.py)
# ---------------------------------------------------------------------------------------------

REQUESTS_COLUMNS = ("dataset", "prompt_sha1", "level", "output_tokens", "energy_wh", "latency_s")
JUDGEMENTS_COLUMNS = ("dataset", "prompt_sha1", "preferred_level")


@dataclass(frozen=True, eq=False)
class SproutMeasurements:
    """The Llama-2-13B-chat rows (levels L0, L1, L2) of Sprout's ``requests.csv``, as columns.

    :param path: the file read
    :param task_class: (m,) int64, class index
    :param prompt_sha1: (m,) str, prompt hash (joins levels and ``judgements.csv``)
    :param level: (m,) int64, level index
    :param output_tokens: (m,) float64, measured output tokens; NaN where the cell is empty
    :param energy_j: (m,) float64, GPU energy (J), converted from the file's Wh
    :param latency_s: (m,) float64, latency (s)
    :param line: (m,) int64, 1-based line of the row in the file
    """

    path: Path
    task_class: np.ndarray
    prompt_sha1: np.ndarray
    level: np.ndarray
    output_tokens: np.ndarray
    energy_j: np.ndarray
    latency_s: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return int(self.task_class.shape[0])


@dataclass(frozen=True, eq=False)
class SproutJudgements:
    """``judgements.csv``: the level a GPT-4 judge preferred per prompt, one row per judgement.

    :param path: the file read
    :param task_class: (k,) int64, class index
    :param prompt_sha1: (k,) str, prompt hash
    :param preferred_level: (k,) int64, level index
    :param line: (k,) int64, 1-based line in the file
    """

    path: Path
    task_class: np.ndarray
    prompt_sha1: np.ndarray
    preferred_level: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return int(self.task_class.shape[0])

    def majority(self) -> dict[tuple[int, str], int]:
        """One preferred level per (class, prompt_sha1): the most frequent judgement.

        A few mmlu prompts occur several times in the artifact (same hash, several judgements);
        aolo keeps the most frequent level, ties going to the lower level.

        :return: {(task_class, prompt_sha1): preferred level index}
        """
        votes: dict[tuple[int, str], list[int]] = {}
        for c, sha, lv in zip(self.task_class.tolist(), self.prompt_sha1.tolist(), self.preferred_level.tolist()):
            votes.setdefault((c, sha), [0] * N_LEVELS)[lv] += 1
        return {key: int(np.argmax(counts)) for key, counts in votes.items()}


def _open_csv(path: Path, wanted: Sequence[str]) -> tuple[Any, Any, dict[str, int]]:
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise RequestDataError(f"{path}: cannot read: {e.strerror}") from None
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise RequestDataError(f"{path}: line 1: empty file, expected a header") from None
    except UnicodeDecodeError as e:
        handle.close()
        raise RequestDataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    header = [h.strip() for h in header]
    missing = [name for name in wanted if name not in header]
    if missing:
        handle.close()
        raise RequestDataError(
            f"{path}: line 1: column {missing[0]!r}: missing from the header (has {', '.join(header)})"
        )
    return handle, reader, {name: header.index(name) for name in wanted}


def _number(text: str, path: Path, line: int, column: str, *, allow_empty: bool = False) -> float:
    text = text.strip()
    if not text:
        if allow_empty:
            return math.nan
        raise RequestDataError(f"{path}: line {line}: column {column!r}: empty, expected a number")
    try:
        value = float(text)
    except ValueError:
        raise RequestDataError(f"{path}: line {line}: column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise RequestDataError(f"{path}: line {line}: column {column!r}: {text!r} must be finite and >= 0")
    return value


def _data_rows(path: Path, reader: Any, width: int, n_columns: int) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, fields) of every non-empty data row; short rows, bad encoding and CSV errors
    become :class:`RequestDataError` naming the file and line."""
    try:
        for record in reader:
            if not record:
                continue
            line = reader.line_num
            if len(record) < width:
                raise RequestDataError(f"{path}: line {line}: row has {len(record)} fields, expected {n_columns} or more")
            yield line, record
    except UnicodeDecodeError as e:
        raise RequestDataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise RequestDataError(f"{path}: line {reader.line_num}: {e}") from None


def _class_index(dataset: str, path: Path, line: int) -> int:
    """Task-class index of a ``dataset`` cell, or an error naming the file and line."""
    name = dataset.strip()
    if name not in CLASS_INDEX:
        raise RequestDataError(f"{path}: line {line}: column 'dataset': {name!r} is not one of {', '.join(TASK_CLASSES)}")
    return CLASS_INDEX[name]


def read_sprout_requests(path: str | Path) -> SproutMeasurements:
    """Read the Llama-2-13B-chat rows (L0, L1, L2) of Sprout's ``requests.csv``; ``7B`` rows are skipped.

    Columns used: dataset, prompt_sha1, level, output_tokens (may be empty), energy_wh, latency_s.

    :param path: the CSV file
    :return: the rows as columns, energy in J
    :raises RequestDataError: naming the file, line and column of a missing column, an unknown
        dataset or level, or a bad number
    """
    path = Path(path)
    handle, reader, col = _open_csv(path, REQUESTS_COLUMNS)
    i_ds, i_sha, i_lv, i_tok, i_e, i_lat = (col[name] for name in REQUESTS_COLUMNS)
    width = max(col.values()) + 1
    cls_l: list[int] = []
    sha_l: list[str] = []
    lv_l: list[int] = []
    tok_l: list[float] = []
    e_l: list[float] = []
    lat_l: list[float] = []
    line_l: list[int] = []
    with handle:
        for line, record in _data_rows(path, reader, width, len(col)):
            level = record[i_lv].strip()
            if level in OTHER_MODEL_LEVELS:
                continue
            if level not in LEVEL_INDEX:
                raise RequestDataError(f"{path}: line {line}: column 'level': {level!r} is not one of L0, L1, L2, 7B")
            tok_l.append(_number(record[i_tok], path, line, "output_tokens", allow_empty=True))
            e_l.append(_number(record[i_e], path, line, "energy_wh"))
            lat_l.append(_number(record[i_lat], path, line, "latency_s"))
            cls_l.append(_class_index(record[i_ds], path, line))
            sha_l.append(record[i_sha].strip())
            lv_l.append(LEVEL_INDEX[level])
            line_l.append(line)
    if not cls_l:
        raise RequestDataError(f"{path}: no Llama-2-13B rows (levels L0, L1, L2)")
    return SproutMeasurements(
        path=path,
        task_class=np.array(cls_l, dtype=np.int64),
        prompt_sha1=np.array(sha_l),
        level=np.array(lv_l, dtype=np.int64),
        output_tokens=np.array(tok_l, dtype=np.float64),
        energy_j=wh_to_j(e_l),
        latency_s=np.array(lat_l, dtype=np.float64),
        line=np.array(line_l, dtype=np.int64),
    )


def read_sprout_judgements(path: str | Path) -> SproutJudgements:
    """Read Sprout's ``judgements.csv`` (dataset, prompt_sha1, preferred_level).

    :param path: the CSV file
    :return: one entry per row
    :raises RequestDataError: naming the file, line and column of a missing column or a bad value
    """
    path = Path(path)
    handle, reader, col = _open_csv(path, JUDGEMENTS_COLUMNS)
    i_ds, i_sha, i_pref = (col[name] for name in JUDGEMENTS_COLUMNS)
    width = max(col.values()) + 1
    cls_l: list[int] = []
    sha_l: list[str] = []
    pref_l: list[int] = []
    line_l: list[int] = []
    with handle:
        for line, record in _data_rows(path, reader, width, len(col)):
            pref = record[i_pref].strip()
            if pref not in LEVEL_INDEX:
                raise RequestDataError(f"{path}: line {line}: column 'preferred_level': {pref!r} is not one of L0, L1, L2")
            cls_l.append(_class_index(record[i_ds], path, line))
            sha_l.append(record[i_sha].strip())
            pref_l.append(LEVEL_INDEX[pref])
            line_l.append(line)
    if not cls_l:
        raise RequestDataError(f"{path}: no judgement rows after the header")
    return SproutJudgements(
        path=path,
        task_class=np.array(cls_l, dtype=np.int64),
        prompt_sha1=np.array(sha_l),
        preferred_level=np.array(pref_l, dtype=np.int64),
        line=np.array(line_l, dtype=np.int64),
    )


def imputation_energy_per_token_j(measurements: SproutMeasurements) -> np.ndarray:
    """Per class, the energy per output token measured at L1 and L2 (ratio of sums), J.

    The divisor that turns an L0 row's measured energy into an imputed token count. The L1/L2
    rows are used because every class has measured tokens there (L0 tokens are missing for
    alpaca, math, mmlu and naturalqa), and per-token energy is flat across levels in the data
    (within about 3% where L0 is measured: scienceqa, triviaqa).

    :param measurements: the 13B rows
    :return: (6,) float64, J per output token; NaN for a class without such rows
    """
    rows = (measurements.level >= 1) & np.isfinite(measurements.output_tokens)
    energy = np.bincount(measurements.task_class[rows], measurements.energy_j[rows], minlength=N_CLASSES)
    tokens = np.bincount(measurements.task_class[rows], measurements.output_tokens[rows], minlength=N_CLASSES)
    return np.where(tokens > 0, energy / np.where(tokens > 0, tokens, 1.0), np.nan)


def impute_output_tokens(measurements: SproutMeasurements) -> tuple[np.ndarray, np.ndarray]:
    """Output tokens of every row, imputing the missing ones as ``max(1, round(E / e_imp(c)))``.

    :param measurements: the 13B rows
    :return: tokens (m,) float64 (measured where present); imputed (m,) bool
    :raises RequestDataError: naming the line of a row that cannot be imputed (its class has no
        measured L1/L2 tokens)
    """
    e_imp_j = imputation_energy_per_token_j(measurements)
    imputed = ~np.isfinite(measurements.output_tokens)
    unusable = imputed & ~np.isfinite(e_imp_j[measurements.task_class])
    if unusable.any():
        i = int(np.flatnonzero(unusable)[0])
        raise RequestDataError(
            f"{measurements.path}: line {measurements.line[i]}: column 'output_tokens': empty, and class "
            f"{TASK_CLASSES[measurements.task_class[i]]} has no L1/L2 row with measured tokens to impute it from"
        )
    tokens = measurements.output_tokens.copy()
    tokens[imputed] = np.maximum(
        1.0, np.rint(measurements.energy_j[imputed] / e_imp_j[measurements.task_class[imputed]])
    )
    return tokens, imputed


# ---------------------------------------------------------------------------------------------
# Embedded defaults
# ---------------------------------------------------------------------------------------------


def load_request_defaults() -> dict[str, Any]:
    """The embedded request/workload defaults (``aolo/train/data/sprout_defaults.json``), parsed.

    :return: the JSON document (a fresh dict each call)
    """
    text = resources.files("aolo.train").joinpath(DEFAULTS_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True, eq=False)
class RequestModelTables:
    """The arrays the synthetic request model and the default workload sample from.

    Built from a defaults document (the schema ``scripts/derive_request_defaults.py`` writes).

    :param token_mu: (6, 3) mean of log output tokens per class and level (moment fit)
    :param token_sigma: (6, 3) std of log output tokens (moment fit)
    :param token_mu_q: (6, 3) median of log output tokens (quantile fit)
    :param token_sigma_q: (6, 3) (95th percentile - median) of log output tokens / 1.6449
    :param token_max: (6, 3) largest output-token count observed (the sampling cap)
    :param energy_per_token_j: (6, 3) J per output token
    :param latency_per_token_s: (6, 3) s per output token
    :param preferred_prob: (6, 3) P(judge prefers L0/L1/L2 | class), rows sum to 1
    :param deadline_s: (6,) T_max(c), s
    :param prompt_mu: (6,) mean of log prompt tokens (aolo estimate)
    :param prompt_sigma: (6,) std of log prompt tokens (aolo estimate)
    :param class_frequency: (6,) share of each class in the judged data, sums to 1
    :param diurnal_rate_shape: (24,) arrival-rate multiplier per hour of day, mean 1
    """

    token_mu: np.ndarray
    token_sigma: np.ndarray
    token_mu_q: np.ndarray
    token_sigma_q: np.ndarray
    token_max: np.ndarray
    energy_per_token_j: np.ndarray
    latency_per_token_s: np.ndarray
    preferred_prob: np.ndarray
    deadline_s: np.ndarray
    prompt_mu: np.ndarray
    prompt_sigma: np.ndarray
    class_frequency: np.ndarray
    diurnal_rate_shape: np.ndarray

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], origin: str = DEFAULTS_RESOURCE) -> RequestModelTables:
        """Pull the tables out of a defaults document.

        :param doc: the parsed JSON
        :param origin: where it came from, for error messages
        :raises RequestDataError: naming ``origin`` and the field that is missing or malformed
        """

        def get(*keys: str) -> Any:
            node: Any = doc
            for depth, key in enumerate(keys):
                if not isinstance(node, Mapping) or key not in node:
                    raise RequestDataError(f"{origin}: field {'.'.join(keys[: depth + 1])!r} is missing")
                node = node[key]
            return node

        def number(*keys: str) -> float:
            value = get(*keys)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RequestDataError(f"{origin}: field {'.'.join(keys)!r} must be a finite number, got {value!r}")
            return float(value)

        def per_level(section: str, key: str | None) -> np.ndarray:
            return np.array(
                [[number(section, c, lv, *((key,) if key else ())) for lv in LEVELS] for c in TASK_CLASSES]
            )

        def vector(keys: tuple[str, ...], length: int) -> np.ndarray:
            value = get(*keys)
            ok = isinstance(value, list) and len(value) == length
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            if not ok:
                raise RequestDataError(f"{origin}: field {'.'.join(keys)!r} must be a list of {length} finite numbers")
            return np.array(value, dtype=np.float64)

        pref = np.array([vector(("preferred_level_prob", c), N_LEVELS) for c in TASK_CLASSES])
        freq = np.array([number("class_frequency", c) for c in TASK_CLASSES])
        tables = cls(
            token_mu=per_level("output_tokens", "log_mu"),
            token_sigma=per_level("output_tokens", "log_sigma"),
            token_mu_q=per_level("output_tokens", "quantile_log_mu"),
            token_sigma_q=per_level("output_tokens", "quantile_log_sigma"),
            token_max=per_level("output_tokens", "max"),
            energy_per_token_j=per_level("energy_per_output_token_j", None),
            latency_per_token_s=per_level("latency_per_output_token_s", None),
            preferred_prob=pref,
            deadline_s=np.array([number("deadline_s", c) for c in TASK_CLASSES]),
            prompt_mu=np.array([number("prompt_tokens", c, "log_mu") for c in TASK_CLASSES]),
            prompt_sigma=np.array([number("prompt_tokens", c, "log_sigma") for c in TASK_CLASSES]),
            class_frequency=freq,
            diurnal_rate_shape=vector(("workload", "diurnal_rate_shape"), 24),
        )
        tables._validate(origin)
        return tables

    def _validate(self, origin: str) -> None:
        pref_sum = self.preferred_prob.sum(axis=1, keepdims=True)
        checks = [
            ("output_tokens.<class>.<level>.log_sigma", self.token_sigma >= 0, "must be >= 0"),
            ("output_tokens.<class>.<level>.quantile_log_sigma", self.token_sigma_q >= 0, "must be >= 0"),
            ("output_tokens.<class>.<level>.max", self.token_max >= 1, "must be >= 1"),
            ("energy_per_output_token_j", self.energy_per_token_j > 0, "must be > 0"),
            ("latency_per_output_token_s", self.latency_per_token_s > 0, "must be > 0"),
            ("preferred_level_prob", (self.preferred_prob >= 0) & np.isclose(pref_sum, 1.0, atol=1e-4),
             "each class's probabilities must be >= 0 and sum to 1"),
            ("deadline_s", self.deadline_s > 0, "must be > 0"),
            ("prompt_tokens.<class>.log_sigma", self.prompt_sigma >= 0, "must be >= 0"),
            ("class_frequency", (self.class_frequency >= 0) & np.isclose(self.class_frequency.sum(), 1.0, atol=1e-4),
             "must be >= 0 and sum to 1"),
            ("workload.diurnal_rate_shape", self.diurnal_rate_shape >= 0, "must be >= 0"),
        ]
        for field_name, ok, rule in checks:
            if not np.all(ok):
                raise RequestDataError(f"{origin}: field {field_name!r}: {rule}")
        for f in fields(self):
            getattr(self, f.name).flags.writeable = False  # shared by every user of the cached tables

    @classmethod
    def embedded(cls) -> RequestModelTables:
        """The tables of the embedded defaults (parsed once, arrays read-only)."""
        return _embedded_tables()


@functools.lru_cache(maxsize=1)
def _embedded_tables() -> RequestModelTables:
    return RequestModelTables.from_dict(load_request_defaults())


def _tables(defaults: Mapping[str, Any] | RequestModelTables | None) -> RequestModelTables:
    if defaults is None:
        return RequestModelTables.embedded()
    if isinstance(defaults, RequestModelTables):
        return defaults
    return RequestModelTables.from_dict(defaults, origin="defaults")


def _class_array(task_class: ArrayLike) -> np.ndarray:
    c = np.asarray(task_class)
    if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"task_class: expected a (n,) integer array, got shape {c.shape} dtype {c.dtype}")
    c = c.astype(np.int64, copy=False)
    if c.size and (c.min() < 0 or c.max() >= N_CLASSES):
        raise ValueError(f"task_class: values must be in 0..{N_CLASSES - 1}, got {c.min()}..{c.max()}")
    return c


# ---------------------------------------------------------------------------------------------
# Synthetic source
# ---------------------------------------------------------------------------------------------


class SyntheticRequests:
    """The embedded request model: per-class log-normal output tokens, linear energy and latency.

    For a request of class ``c``, with ``z ~ N(0, 1)`` shared by its three levels,

        kappa_l = clip(round(exp(mu_cl + sigma_cl z_l)), 1, kappa_max_cl)
        E_l = e_tok(c, l) kappa_l  (J),   tau_l = t_tok(c, l) kappa_l  (s)
        z_l = sqrt(rho) z + sqrt(1 - rho) eps_l,  eps_l ~ N(0, 1) independent (corr(z_l, z_m) = rho)

    so with the default ``rho = 1`` a request verbose at L0 is verbose at L1 and L2 too;
    ``kappa_max_cl`` is the largest count in the data. ``(mu, sigma)`` is one of two fits of log
    tokens stored in the JSON:

    * ``"quantile"`` (default): mu = median, sigma = (p95 - median) / 1.6449 of log tokens. It
      reproduces each cell's median and 95th percentile, its mean within 10% (mostly within 3%),
      and always-L0 then misses T_max(c) on about 5% of requests, as in the data.
    * ``"moments"``: mean and std of log tokens. Log tokens are left-skewed at L0 (a tail of
      short answers), so this fit overstates the upper tail: alpaca L0 mean +21%, and always-L0
      misses T_max(c) on up to 12% of requests instead of 5%.

    The preferred level is drawn from P(preferred | c), the deadline is T_max(c) and the prompt
    length ``max(1, round(exp(mu_p(c) + sigma_p(c) z_p)))`` (aolo's estimate; the data has no
    prompt lengths). ``e_tok`` already includes the prompt's prefill (Sprout measured whole
    requests).

    :param defaults: a defaults document (the JSON schema of ``sprout_defaults.json``), prebuilt
        :class:`RequestModelTables`, or None for the embedded defaults
    :param level_correlation: rho in [0, 1], correlation of the log-token normals across levels.
        The data's per-prompt correlation of log tokens is much weaker (``diagnostics`` in the
        JSON); 1.0 keeps the comonotone model.
    :param token_fit: ``"quantile"`` or ``"moments"``, which log-normal fit of the tokens to use
    """

    def __init__(
        self,
        defaults: Mapping[str, Any] | RequestModelTables | None = None,
        level_correlation: float = 1.0,
        token_fit: Literal["quantile", "moments"] = "quantile",
    ) -> None:
        if not 0.0 <= level_correlation <= 1.0:
            raise ValueError(f"level_correlation: must be in [0, 1], got {level_correlation}")
        if token_fit not in ("quantile", "moments"):
            raise ValueError(f"token_fit: must be 'quantile' or 'moments', got {token_fit!r}")
        self.tables = _tables(defaults)
        self.level_correlation = float(level_correlation)
        self.token_fit = token_fit
        t = self.tables
        if token_fit == "quantile":
            self.token_mu, self.token_sigma = t.token_mu_q, t.token_sigma_q
        else:
            self.token_mu, self.token_sigma = t.token_mu, t.token_sigma
        # every per-class parameter in one (6, 20) row table: one gather per sample call
        self._per_class = np.ascontiguousarray(
            np.concatenate(
                [
                    self.token_mu,  # 0:3
                    self.token_sigma,  # 3:6
                    t.token_max,  # 6:9
                    t.energy_per_token_j,  # 9:12
                    t.latency_per_token_s,  # 12:15
                    np.cumsum(t.preferred_prob, axis=1)[:, :2],  # 15:17, P(pref <= L0), P(pref <= L1)
                    t.deadline_s[:, None],  # 17
                    t.prompt_mu[:, None],  # 18
                    t.prompt_sigma[:, None],  # 19
                ],
                axis=1,
            )
        )

    def sample(self, rng: np.random.Generator, task_class: ArrayLike) -> RequestBatch:
        """Draw one request per entry of ``task_class``.

        :param rng: the random generator (the only source of randomness)
        :param task_class: (n,) int in 0..5
        :return: a batch of n requests
        """
        c = _class_array(task_class)
        n = c.shape[0]
        p = np.take(self._per_class, c, axis=0)  # (n, 20)
        z = rng.standard_normal(n)[:, None]
        if self.level_correlation < 1.0:
            rho = self.level_correlation
            z = math.sqrt(rho) * z + math.sqrt(1.0 - rho) * rng.standard_normal((n, N_LEVELS))
        tokens = np.exp(p[:, 0:3] + p[:, 3:6] * z)
        np.rint(tokens, out=tokens)
        np.clip(tokens, 1.0, p[:, 6:9], out=tokens)
        prompt = np.rint(np.exp(p[:, 18] + p[:, 19] * rng.standard_normal(n)))
        u = rng.random(n)
        preferred = (u >= p[:, 15]).astype(np.int64) + (u >= p[:, 16])
        return RequestBatch(
            task_class=c,
            prompt_tokens=np.maximum(prompt, 1.0).astype(np.int64),
            output_tokens=tokens,
            inference_energy_j=p[:, 9:12] * tokens,
            inference_latency_s=p[:, 12:15] * tokens,
            preferred_level=preferred,
            deadline_s=p[:, 17].copy(),
        )


# ---------------------------------------------------------------------------------------------
# Trace replay
# ---------------------------------------------------------------------------------------------


def prompt_tokens_from_sha1(prompt_sha1: ArrayLike, task_class: ArrayLike, tables: RequestModelTables) -> np.ndarray:
    """A fixed prompt length per trace prompt, drawn from the class estimate by the prompt's hash.

    Sprout's artifact records no prompt lengths, so trace replay assigns each prompt a length
    from aolo's per-class log-normal estimate, with the normal quantile taken from a BLAKE2b
    hash of the prompt's id: the same prompt always gets the same length, whatever the file
    order or seed.

    :param prompt_sha1: (m,) str, prompt ids (any text)
    :param task_class: (m,) int
    :param tables: the estimate's parameters
    :return: (m,) int64 >= 1
    """
    sha = np.asarray(prompt_sha1)
    c = np.asarray(task_class, dtype=np.int64)
    # 52 bits of the hash -> u in (0, 1), strictly inside so ndtri stays finite
    bits = np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") >> 12 for s in sha.tolist()],
        dtype=np.float64,
    )
    u = (bits + 0.5) / float(1 << 52)
    z = ndtri(u)
    return np.maximum(1, np.rint(np.exp(tables.prompt_mu[c] + tables.prompt_sigma[c] * z))).astype(np.int64)


class TraceRequests:
    """Trace replay: the measured outcomes of Sprout's judged prompts.

    :meth:`from_csv` joins, for every judged prompt (``judgements.csv``), the Llama-2-13B-chat rows
    at L0, L1 and L2 of ``requests.csv`` on (dataset, prompt_sha1) and keeps prompts that have all
    three levels. Energy is ``energy_wh * 3600`` J and latency the measured one; a missing output
    token count is imputed as ``max(1, round(E / e_imp(c)))`` (:func:`impute_output_tokens`) and
    flagged in ``output_tokens_imputed``. Where the artifact repeats a prompt (a few mmlu hashes
    occur under several prompt indices), aolo keeps the first row per level in file order and the
    most frequent judgement (ties to the lower level). Prompt lengths are not in the data: each
    prompt gets a fixed length from aolo's class estimate (:func:`prompt_tokens_from_sha1`);
    deadlines are the class table's.

    :param prompts: all joined prompts, sorted by class (stable within a class: file order)
    :param prompt_sha1: (m,) str, the hash of each prompt in ``prompts``
    :param n_duplicate_rows: 13B rows ignored because their (dataset, sha1, level) came earlier
    :param n_incomplete: judged prompts dropped for lacking a level
    """

    def __init__(
        self,
        prompts: RequestBatch,
        prompt_sha1: np.ndarray,
        n_duplicate_rows: int = 0,
        n_incomplete: int = 0,
    ) -> None:
        order = np.argsort(prompts.task_class, kind="stable")
        self.prompts = prompts.take(order)
        self.prompt_sha1 = np.asarray(prompt_sha1)[order]
        if len(self.prompt_sha1) != len(self.prompts):
            raise ValueError("TraceRequests: prompt_sha1 and prompts differ in length")
        counts = np.bincount(self.prompts.task_class, minlength=N_CLASSES)
        self.class_count = counts
        self.class_offset = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.n_duplicate_rows = int(n_duplicate_rows)
        self.n_incomplete = int(n_incomplete)
        self._index = {
            (int(c), s): i for i, (c, s) in enumerate(zip(self.prompts.task_class.tolist(), self.prompt_sha1.tolist()))
        }

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def from_csv(
        cls,
        requests_csv: str | Path,
        judgements_csv: str | Path,
        defaults: Mapping[str, Any] | RequestModelTables | None = None,
    ) -> TraceRequests:
        """Load and join Sprout's ``requests.csv`` and ``judgements.csv``.

        :param requests_csv: per-request measurements
        :param judgements_csv: the judge's preferred level per prompt
        :param defaults: where deadlines and the prompt-length estimate come from (None: embedded)
        :raises RequestDataError: naming the file and line of a malformed row, or when no judged
            prompt has all three levels
        """
        tables = _tables(defaults)
        meas = read_sprout_requests(requests_csv)
        judged = read_sprout_judgements(judgements_csv).majority()
        tokens, imputed = impute_output_tokens(meas)

        # first row per (class, sha1, level), file order
        row_of: dict[tuple[int, str], list[int]] = {}
        n_dup = 0
        for i, (c, sha, lv) in enumerate(zip(meas.task_class.tolist(), meas.prompt_sha1.tolist(), meas.level.tolist())):
            slots = row_of.setdefault((c, sha), [-1, -1, -1])
            if slots[lv] >= 0:
                n_dup += 1
            else:
                slots[lv] = i
        keys: list[tuple[int, str]] = []
        rows: list[list[int]] = []
        pref: list[int] = []
        n_incomplete = 0
        for key, level in judged.items():
            slots = row_of.get(key)
            if slots is None or min(slots) < 0:
                n_incomplete += 1
                continue
            keys.append(key)
            rows.append(slots)
            pref.append(level)
        if not keys:
            raise RequestDataError(
                f"{meas.path}: no prompt judged in {judgements_csv} has L0, L1 and L2 rows (join on dataset + prompt_sha1)"
            )
        r = np.array(rows, dtype=np.int64)  # (m, 3)
        c = np.array([k[0] for k in keys], dtype=np.int64)
        sha1 = np.array([k[1] for k in keys])
        batch = RequestBatch(
            task_class=c,
            prompt_tokens=prompt_tokens_from_sha1(sha1, c, tables),
            output_tokens=tokens[r],
            inference_energy_j=meas.energy_j[r],
            inference_latency_s=meas.latency_s[r],
            preferred_level=np.array(pref, dtype=np.int64),
            deadline_s=tables.deadline_s[c],
            output_tokens_imputed=imputed[r],
        )
        return cls(batch, sha1, n_duplicate_rows=n_dup, n_incomplete=n_incomplete)

    def sample(self, rng: np.random.Generator, task_class: ArrayLike) -> RequestBatch:
        """Draw prompts of the given classes uniformly, with replacement, and return their outcomes.

        :param rng: the random generator
        :param task_class: (n,) int in 0..5
        :return: a batch of n requests
        :raises ValueError: when a requested class has no prompt in the trace
        """
        c = _class_array(task_class)
        counts = self.class_count[c]
        if np.any(counts == 0):
            empty = sorted({TASK_CLASSES[k] for k in c[counts == 0].tolist()})
            raise ValueError(f"TraceRequests.sample: no prompts of class {', '.join(empty)} in the trace")
        idx = self.class_offset[c] + (rng.random(c.shape[0]) * counts).astype(np.int64)
        return self.prompts.take(idx)

    def prompt(self, dataset: str, prompt_sha1: str) -> RequestBatch:
        """The one-request batch of a given prompt, with its measured outcomes.

        :param dataset: class name, e.g. ``"triviaqa"``
        :param prompt_sha1: the prompt's hash as in the CSV
        :raises KeyError: when the prompt is not in the trace
        """
        if dataset not in CLASS_INDEX:
            raise KeyError(f"dataset {dataset!r} is not one of {', '.join(TASK_CLASSES)}")
        i = self._index.get((CLASS_INDEX[dataset], prompt_sha1))
        if i is None:
            raise KeyError(f"prompt {dataset}/{prompt_sha1} is not in the trace (unjudged or missing a level)")
        return self.prompts.take(i)
