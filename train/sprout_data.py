"""Sprout's artifact read from its CSV files: the Llama-2-13B-chat measurements of ``requests.csv``
and the judge's preferred levels of ``judgements.csv``, with the imputation of the output-token
counts the artifact lacks. Shared by trace replay (:class:`aolo.train.requests.TraceRequests`) and
``scripts/derive_request_defaults.py``.

Data: Sprout artifact (Li et al., "Sprout: Green Generative AI with Carbon-Efficient LLM
Inference", EMNLP 2024; MIT licence): Llama-2-13B-chat under vLLM, batch 1, on an A100-class GPU.
Its L0 rows of alpaca, math, mmlu and naturalqa carry no output-token count; they are imputed as
``energy / e_imp(c)`` with ``e_imp(c)`` the class's energy per output token measured at L1 and L2
(ratio of sums), see :func:`impute_output_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from aolo.runtime.csv_rows import CsvRow, read_csv_rows

from .request_batch import CLASS_INDEX, LEVEL_INDEX, N_CLASSES, N_LEVELS, TASK_CLASSES, RequestDataError, wh_to_j

__all__ = ["JUDGEMENTS_COLUMNS", "OTHER_MODEL_LEVELS", "REQUESTS_COLUMNS", "SproutJudgements", "SproutMeasurements",
           "imputation_energy_per_token_j", "impute_output_tokens", "read_sprout_judgements", "read_sprout_requests"]

OTHER_MODEL_LEVELS = frozenset({"7B"})
"""Levels of ``requests.csv`` that are another model (Llama-2-7B-chat); skipped by the readers."""

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


def _class_index(row: CsvRow) -> int:
    """Task-class index of a row's ``dataset`` cell, or an error naming the file and line."""
    name = row.text("dataset")
    if name not in CLASS_INDEX:
        raise row.error("dataset", f"{name!r} is not one of {', '.join(TASK_CLASSES)}")
    return CLASS_INDEX[name]


def _read_columns(path: Path, columns: tuple[str, ...], parse: Callable[[CsvRow], Mapping[str, Any] | None],
                  dtypes: Mapping[str, type], empty: str) -> dict[str, np.ndarray]:
    """The rows of one of Sprout's CSV files as columns (both readers): ``task_class`` (int64),
    ``prompt_sha1`` (str) and ``line`` (int64) of every row that ``parse`` keeps, beside the fields
    it returns.

    :param parse: a row's own fields, checked (raising ``row.error``), or None to skip the row
    :param dtypes: numpy dtype of each field ``parse`` returns
    :param empty: what the file lacks when no row is kept (the error's text after the path)
    :raises RequestDataError: naming the file, line and column of a bad cell, or the file when no row is kept
    """
    lists: dict[str, list] = {name: [] for name in ("task_class", "prompt_sha1", "line", *dtypes)}
    for row in read_csv_rows(path, columns, error=RequestDataError):
        fields = parse(row)
        if fields is None:
            continue
        for name, value in fields.items():
            lists[name].append(value)
        lists["task_class"].append(_class_index(row))
        lists["prompt_sha1"].append(row.text("prompt_sha1"))
        lists["line"].append(row.line)
    if not lists["line"]:
        raise RequestDataError(f"{path}: {empty}")
    types = {"task_class": np.int64, "prompt_sha1": None, "line": np.int64, **dtypes}
    return {name: np.array(values, dtype=types[name]) for name, values in lists.items()}


def read_sprout_requests(path: str | Path) -> SproutMeasurements:
    """Read the Llama-2-13B-chat rows (L0, L1, L2) of Sprout's ``requests.csv``; ``7B`` rows are skipped.

    Columns used: dataset, prompt_sha1, level, output_tokens (may be empty), energy_wh, latency_s.

    :param path: the CSV file
    :return: the rows as columns, energy in J
    :raises RequestDataError: naming the file, line and column of a missing column, an unknown
        dataset or level, or a bad number
    """

    def parse(row: CsvRow) -> dict[str, Any] | None:
        level = row.text("level")
        if level in OTHER_MODEL_LEVELS:
            return None
        if level not in LEVEL_INDEX:
            raise row.error("level", f"{level!r} is not one of L0, L1, L2, 7B")
        return {"level": LEVEL_INDEX[level], "output_tokens": row.number("output_tokens", allow_empty=True),
                "energy_wh": row.number("energy_wh"), "latency_s": row.number("latency_s")}

    path = Path(path)
    cols = _read_columns(path, REQUESTS_COLUMNS, parse, {"level": np.int64, "output_tokens": np.float64,
                                                          "energy_wh": np.float64, "latency_s": np.float64},
                         "no Llama-2-13B rows (levels L0, L1, L2)")
    return SproutMeasurements(path=path, energy_j=wh_to_j(cols.pop("energy_wh")), **cols)


def read_sprout_judgements(path: str | Path) -> SproutJudgements:
    """Read Sprout's ``judgements.csv`` (dataset, prompt_sha1, preferred_level).

    :param path: the CSV file
    :return: one entry per row
    :raises RequestDataError: naming the file, line and column of a missing column or a bad value
    """

    def parse(row: CsvRow) -> dict[str, Any]:
        pref = row.text("preferred_level")
        if pref not in LEVEL_INDEX:
            raise row.error("preferred_level", f"{pref!r} is not one of L0, L1, L2")
        return {"preferred_level": LEVEL_INDEX[pref]}

    path = Path(path)
    cols = _read_columns(path, JUDGEMENTS_COLUMNS, parse, {"preferred_level": np.int64},
                         "no judgement rows after the header")
    return SproutJudgements(path=path, **cols)


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
