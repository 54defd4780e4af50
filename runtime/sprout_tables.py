"""The shipped Sprout tables the runtime reads: expected answer quality by task class and
directive level, and each class's latency budget.

Sprout's quality metric is the judge's preference: an answer at level l has quality 1 when the
judge preferred level l for that prompt, else 0 (``train/requests.py``). Its expectation for a
request of class c served at level l is therefore P(judge prefers l | c), the
``preferred_level_prob`` table of ``train/data/sprout_defaults.json`` (measured on about 2,000
judged prompts per class in Sprout's artifact); the quality the L0 answer would have had is
P(prefers L0 | c). The runtime counts a served request at these values until the client sends
feedback, so the sliding quality floor works without it.

Read as JSON through ``importlib.resources`` (the file ships in the ``aolo.train`` package's
data; that package's ``__init__`` imports nothing), so the runtime stays torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .policy_io import LEVELS, TASK_CLASSES

__all__ = ["ExpectedQuality", "class_deadline_s", "expected_quality_table"]

TABLE_FILE = "data/sprout_defaults.json"


@dataclass(frozen=True)
class ExpectedQuality:
    """P(judge prefers level | class), one row of ``len(LEVELS)`` probabilities per class.

    :param preferred_prob: {task_class: (P(L0), P(L1), P(L2))}, each row summing to 1
    :param source: where the table comes from, for the ledger's readers
    """

    preferred_prob: dict[str, tuple[float, ...]]
    source: str

    def quality(self, task_class: str, level_index: int) -> tuple[float, float]:
        """(expected quality at ``level_index``, expected quality at L0) of a request of ``task_class``."""
        row = self.preferred_prob[task_class]
        return row[level_index], row[0]


@lru_cache(maxsize=1)
def _tables() -> dict:
    return json.loads(resources.files("aolo.train").joinpath(TABLE_FILE).read_text())


def class_deadline_s() -> dict[str, float]:
    """Latency budget T_max of each class, s: the 95th percentile of its L0 inference latency
    (the file's ``deadline_s``, derived from Sprout's measurements)."""
    data = _tables()["deadline_s"]
    return {c: float(data[c]) for c in TASK_CLASSES}


@lru_cache(maxsize=1)
def expected_quality_table() -> ExpectedQuality:
    """The shipped table (read once).

    :raises ValueError: the shipped file lacks a class or a row does not sum to 1
    """
    data = _tables()["preferred_level_prob"]
    table: dict[str, tuple[float, ...]] = {}
    for c in TASK_CLASSES:
        row = tuple(float(x) for x in data[c])
        if len(row) != len(LEVELS) or abs(sum(row) - 1.0) > 1e-3 or min(row) < 0:
            raise ValueError(f"aolo.train/{TABLE_FILE}: field 'preferred_level_prob.{c}': {row} is not a "
                             f"distribution over {LEVELS}")
        table[c] = row
    return ExpectedQuality(table, f"aolo.train/{TABLE_FILE} preferred_level_prob ({data.get('kind', 'measured')})")
