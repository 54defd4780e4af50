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

The batch and what sources share are in :mod:`aolo.train.request_batch`, Sprout's CSV readers in
:mod:`aolo.train.sprout_data`, the embedded defaults in :mod:`aolo.train.request_tables`; their
public names are re-exported here. numpy (and ``scipy.special.ndtri``) and the standard library only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

from .request_batch import (CLASS_INDEX, LEVEL_INDEX, LEVELS, N_CLASSES, N_LEVELS, TASK_CLASSES, RequestBatch,
                            RequestDataError, RequestSource, wh_to_j)
from .request_tables import DEFAULTS_RESOURCE, RequestModelTables, load_request_defaults, tables_of
from .sprout_data import (SproutJudgements, SproutMeasurements, imputation_energy_per_token_j, impute_output_tokens,
                          read_sprout_judgements, read_sprout_requests)

__all__ = [
    "CLASS_INDEX",
    "DEFAULTS_RESOURCE",
    "LEVEL_INDEX",
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
        self.tables = tables_of(defaults)
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
        tables = tables_of(defaults)
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
