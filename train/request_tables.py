"""The embedded request and workload defaults (``aolo/train/data/sprout_defaults.json``, derived from
Sprout's artifact by ``scripts/derive_request_defaults.py``) and the arrays the synthetic request
model and the default workload sample from (:class:`RequestModelTables`).

A defaults document is validated by a pydantic model of the fields the tables use
(:class:`RequestDefaultsDocument`); the document's other fields (sources, rules, diagnostics) are
its own business. An error names the document and the dotted field: ``field 'deadline_s.mmlu' is
missing``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from .request_batch import LEVELS, N_LEVELS, TASK_CLASSES, RequestDataError

__all__ = ["DEFAULTS_RESOURCE", "RequestDefaultsDocument", "RequestModelTables", "load_request_defaults", "tables_of"]

DEFAULTS_RESOURCE = "data/sprout_defaults.json"
"""The embedded defaults, relative to the ``aolo.train`` package."""

SUM_TOLERANCE = 1e-4
"""How far a set of shares or probabilities may sum from 1 (the JSON rounds them to 6 digits)."""


def load_request_defaults() -> dict[str, Any]:
    """The embedded request/workload defaults (``aolo/train/data/sprout_defaults.json``), parsed.

    :return: the JSON document (a fresh dict each call)
    """
    text = resources.files("aolo.train").joinpath(DEFAULTS_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


# ---------------------------------------------------------------------------------------------
# The document's schema (the fields the tables use)
# ---------------------------------------------------------------------------------------------
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite JSON number (an int or a float; not true/false, not a string)."""
NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]


def _sums_to_one(values: list[float]) -> list[float]:
    if abs(sum(values) - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"must sum to 1, sums to {sum(values):.6g}")
    return values


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _by(keys: tuple[str, ...], value: Any, name: str) -> type[_Part]:
    """A model with one required field per key (a class or a level), each of type ``value``."""
    return create_model(name, __base__=_Part, **{key: (value, ...) for key in keys})


class TokenFit(_Part):
    """Log-normal fits of one class and level's output tokens."""

    log_mu: Number
    log_sigma: NonNegative
    quantile_log_mu: Number
    quantile_log_sigma: NonNegative
    max: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=1)]


class PromptFit(_Part):
    """aolo's log-normal estimate of one class's prompt tokens."""

    log_mu: Number
    log_sigma: NonNegative


class WorkloadShape(_Part):
    diurnal_rate_shape: Annotated[list[NonNegative], Field(min_length=24, max_length=24)]


LevelProbabilities = Annotated[list[NonNegative], Field(min_length=N_LEVELS, max_length=N_LEVELS),
                               AfterValidator(_sums_to_one)]


class _ClassShares(_by(TASK_CLASSES, NonNegative, "_ClassSharesFields")):  # type: ignore[misc]
    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> "_ClassShares":
        _sums_to_one([getattr(self, c) for c in TASK_CLASSES])
        return self


class RequestDefaultsDocument(_Part):
    """The fields of a defaults document that :class:`RequestModelTables` reads, per class
    (``alpaca`` ... ``triviaqa``) and level (``L0``, ``L1``, ``L2``)."""

    output_tokens: _by(TASK_CLASSES, _by(LEVELS, TokenFit, "TokenFitByLevel"), "TokenFitByClass")  # type: ignore[valid-type]
    energy_per_output_token_j: _by(TASK_CLASSES, _by(LEVELS, Positive, "JByLevel"), "JByClass")  # type: ignore[valid-type]
    latency_per_output_token_s: _by(TASK_CLASSES, _by(LEVELS, Positive, "SByLevel"), "SByClass")  # type: ignore[valid-type]
    preferred_level_prob: _by(TASK_CLASSES, LevelProbabilities, "ProbabilitiesByClass")  # type: ignore[valid-type]
    deadline_s: _by(TASK_CLASSES, Positive, "DeadlineByClass")  # type: ignore[valid-type]
    prompt_tokens: _by(TASK_CLASSES, PromptFit, "PromptFitByClass")  # type: ignore[valid-type]
    class_frequency: _ClassShares
    workload: WorkloadShape


def _first_error(e: ValidationError, origin: str) -> RequestDataError:
    """One line naming the document and the dotted field of the first problem pydantic found."""
    err = e.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        return RequestDataError(f"{origin}: field {where!r} is missing")
    message = err["msg"].removeprefix("Value error, ")
    return RequestDataError(f"{origin}: field {where!r}: {message} (got {err['input']!r})"[:300])


# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------
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

    def __post_init__(self) -> None:
        for f in fields(self):  # shared by every user of the cached tables
            object.__setattr__(self, f.name, np.array(getattr(self, f.name), dtype=np.float64))
            getattr(self, f.name).flags.writeable = False

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], origin: str = DEFAULTS_RESOURCE) -> RequestModelTables:
        """Pull the tables out of a defaults document.

        :param doc: the parsed JSON
        :param origin: where it came from, for error messages
        :raises RequestDataError: naming ``origin`` and the field that is missing or malformed
        """
        try:
            d = RequestDefaultsDocument.model_validate(doc)
        except ValidationError as e:
            raise _first_error(e, origin) from None

        def per_class(section: BaseModel, value: Any = lambda v: v) -> list[Any]:
            return [value(getattr(section, c)) for c in TASK_CLASSES]

        def per_level(section: BaseModel, key: str | None = None) -> list[list[float]]:
            return per_class(section, lambda by_level: [getattr(by_level, lv) if key is None
                                                        else getattr(getattr(by_level, lv), key) for lv in LEVELS])

        return cls(
            token_mu=per_level(d.output_tokens, "log_mu"),
            token_sigma=per_level(d.output_tokens, "log_sigma"),
            token_mu_q=per_level(d.output_tokens, "quantile_log_mu"),
            token_sigma_q=per_level(d.output_tokens, "quantile_log_sigma"),
            token_max=per_level(d.output_tokens, "max"),
            energy_per_token_j=per_level(d.energy_per_output_token_j),
            latency_per_token_s=per_level(d.latency_per_output_token_s),
            preferred_prob=per_class(d.preferred_level_prob),
            deadline_s=per_class(d.deadline_s),
            prompt_mu=per_class(d.prompt_tokens, lambda p: p.log_mu),
            prompt_sigma=per_class(d.prompt_tokens, lambda p: p.log_sigma),
            class_frequency=per_class(d.class_frequency),
            diurnal_rate_shape=d.workload.diurnal_rate_shape,
        )

    @classmethod
    def embedded(cls) -> RequestModelTables:
        """The tables of the embedded defaults (parsed once, arrays read-only)."""
        return _embedded_tables()


@functools.lru_cache(maxsize=1)
def _embedded_tables() -> RequestModelTables:
    return RequestModelTables.from_dict(load_request_defaults())


def tables_of(defaults: Mapping[str, Any] | RequestModelTables | None) -> RequestModelTables:
    """Tables from a defaults document, prebuilt tables, or None (the embedded defaults)."""
    if defaults is None:
        return RequestModelTables.embedded()
    if isinstance(defaults, RequestModelTables):
        return defaults
    return RequestModelTables.from_dict(defaults, origin="defaults")
