"""The sweep file of ``aolo sweep``: a small TOML schema, validated by pydantic and torch-free (the
CLI reads it without importing torch or Ray).

A sweep is a base :class:`~aolo.train.train_config.TrainConfig` (the ``[base]`` table), a grid
(``[grid]``: config field -> list of values; the trials are the cross product) and, optionally, a
search (``[search]``: Optuna's TPE over named fields, with ASHA stopping the poor trials early).
Fields of PopSAN are named ``popsan.<field>``. Example::

    out_dir = "runs/sweep"            # the sweep folder: trials/, tune/, results
    metric = "excess_vs_lp_frac"      # validation metric: excess over the class-aware LP at equal quality
    max_failures = 2                  # retries of a trial whose worker dies

    [base]                            # every trial's TrainConfig fields (aolo train --config)
    scenario = "default"
    steps = 150000

    [grid]                            # the cross product, in this order
    algo = ["sdrl", "sac"]
    seed = [0, 1, 2]

    [search]                          # optional: num_samples trials drawn by Optuna's TPE (the grid: one point)
    num_samples = 16
    [search.space]
    learning_rate = { loguniform = [1e-4, 1e-3] }
    "popsan.timesteps" = { choice = [3, 5] }

Every trial's config is validated before anything starts; a bad key or value is one line naming
the file and the key (:func:`read_sweep_file`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

import tomli
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, \
    model_validator

from .popsan_config import PopSANConfig
from .train_config import TrainConfig

__all__ = ["SweepConfig", "SearchConfig", "AshaConfig", "Distribution", "read_sweep_file", "METRICS",
           "trial_key", "SWEEP_OWNED_FIELDS", "read_sweep_tables", "sweep_from_dict"]

METRICS: dict[str, Literal["min", "max"]] = {
    "excess_vs_lp_frac": "min",
    "carbon_g_per_request": "min",
    "saving_vs_base_frac": "max",
    "quality_vs_base_frac": "max",
    "latency_violation_frac": "min",
    "outage_frac": "min",
    "floor_violation_frac": "min",
}
"""Validation metrics a sweep can optimise, with the direction that is better. All but the first are
columns of a validation's summary row (:func:`aolo.train.evaluate.summary_row`); the first is the
run's carbon over the class-aware LP's at the run's own quality, minus one (the README's measure;
the LP's frontier on the validation seeds is computed once per sweep)."""

SWEEP_OWNED_FIELDS = ("out_dir",)
"""TrainConfig fields the sweep sets itself (each trial's folder), so a sweep file may not."""


def _field_names() -> set[str]:
    names = {n for n in TrainConfig.model_fields if n != "popsan"}
    return names | {f"popsan.{n}" for n in PopSANConfig.model_fields}


class Distribution(BaseModel):
    """One searched field's distribution: exactly one of ``uniform = [low, high]``, ``loguniform =
    [low, high]``, ``randint = [low, high)`` (integers) or ``choice = [values...]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [k for k in ("uniform", "loguniform", "randint", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uniform, loguniform, randint, choice (got {given or 'none'})")
        low_high = getattr(self, given[0]) if given[0] != "choice" else None
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"{given[0]}: low {low_high[0]} must be below high {low_high[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: low must be > 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "loguniform", "randint", "choice") if getattr(self, k) is not None)

    def to_tune(self) -> Any:
        """The matching Ray Tune search space (imports Ray)."""
        from ray import tune

        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        if self.randint is not None:
            return tune.randint(*self.randint)
        # Optuna's categorical takes scalars only: lists (layer sizes) travel as their JSON text
        return tune.choice([json.dumps(v) if isinstance(v, (list, dict)) else v for v in self.choice or []])

    def example(self) -> Any:
        """A value inside the distribution (for checking that the field accepts it)."""
        if self.choice is not None:
            return self.choice[0]
        low, high = getattr(self, self.kind)
        return int(low) if self.kind == "randint" else float(low)


class AshaConfig(BaseModel):
    """ASHA (asynchronous successive halving) early stopping, in environment steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace_period_steps: PositiveInt = Field(
        25_000, description="environment steps every trial runs before it can be stopped")
    reduction_factor: float = Field(3.0, gt=1.0, description="1/reduction_factor of trials go on at each rung")


class SearchConfig(BaseModel):
    """Optuna's TPE over named config fields, ASHA stopping the poor trials early."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_samples: PositiveInt = Field(8, description="trials drawn by the search")
    seed: NonNegativeInt = Field(0, description="seed of Optuna's sampler")
    space: dict[str, Distribution] = Field(..., min_length=1, description="config field -> distribution")
    asha: AshaConfig | None = Field(default_factory=AshaConfig, description="early stopping (omit to turn off)")
    evaluate_best: bool = Field(
        True, description="evaluate the chosen trial once on the evaluation seeds after the search")



class SweepConfig(BaseModel):
    """A sweep: every trial's config is ``base`` with one point of ``grid`` (and, with ``search``,
    one draw of the search space) over it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the sweep's name (Tune's experiment)")
    out_dir: str = Field("runs/sweep", min_length=1, description="the sweep folder: trials/, tune/ and the results")
    metric: str = Field("excess_vs_lp_frac", description=f"validation metric: {', '.join(METRICS)}")
    max_failures: NonNegativeInt = Field(2, description="retries of a trial whose worker dies")
    cpus_per_trial: float = Field(1.0, gt=0, le=256, description="CPUs Ray reserves per trial")
    max_concurrent: NonNegativeInt = Field(0, description="trials at once (0: as many as the CPUs allow)")
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields of every trial")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="config field -> values (cross product)")
    search: SearchConfig | None = Field(None, description="Optuna TPE + ASHA over named fields")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r} (known: {', '.join(METRICS)})")
        return value


    @model_validator(mode="after")
    def _one_point_searched(self) -> "SweepConfig":
        n_points = len(self.grid_points())
        if self.search is not None and n_points > 1:
            raise ValueError(f"grid: a search runs on one grid point, got {n_points} (one value per grid key; "
                             "run a sweep per seed or algorithm)")
        return self

    @property
    def mode(self) -> Literal["min", "max"]:
        return METRICS[self.metric]

    def grid_points(self) -> list[dict[str, Any]]:
        """The grid's cross product in file order: one dict of (possibly dotted) overrides per point."""
        names = list(self.grid)
        return [dict(zip(names, values)) for values in itertools.product(*(self.grid[n] for n in names))]

    def trial_config(self, overrides: dict[str, Any]) -> TrainConfig:
        """``base`` with ``overrides`` (dotted ``popsan.<field>`` names allowed) over it, validated;
        ``out_dir`` is left at its default (the sweep sets it per trial).

        :raises ValueError: one line naming the field
        """
        data = {k: v for k, v in self.base.items()}
        popsan = dict(data.pop("popsan", {}) or {})
        for name, value in overrides.items():
            if name.startswith("popsan."):
                popsan[name.removeprefix("popsan.")] = value
            else:
                data[name] = value
        if popsan:
            data["popsan"] = popsan
        return TrainConfig.from_dict(data, "trial")

    def check_trials(self, source: str) -> list[TrainConfig]:
        """Every grid point's config (with a value of each searched field), validated, so that a
        bad value is refused before Ray starts.

        :raises ValueError: ``<source>: <table>.<key>: <message>``, naming the key
        """
        configs = []
        example = {name: dist.example() for name, dist in (self.search.space.items() if self.search else [])}
        tables = {**{k: "base" for k in self.base}, **{k: "grid" for k in self.grid},
                  **{k: "search.space" for k in example}}
        for point in self.grid_points():
            try:
                configs.append(self.trial_config({**point, **example}))
            except ValueError as e:
                text = str(e).removeprefix("trial: ")
                field = text.split("'", 2)[1] if text.startswith("field '") else ""
                message = text.split("': ", 1)[1] if field else text
                table = tables.get(field, tables.get(field.split(".")[0], "base"))
                if field:
                    raise ValueError(f"{source}: {table}.{field}: {message}") from None
                where = ", ".join(f"{k}={v}" for k, v in point.items())  # a rule over several fields
                raise ValueError(f"{source}: grid ({where}): {message}" if where else f"{source}: {message}") \
                    from None
        return configs


def trial_key(config: TrainConfig) -> str:
    """A trial's folder name: ``<algo>__seed<seed>__<digest>``, the digest (12 hex digits of
    SHA-256) over every field of the config but ``out_dir``, so that the same config always finds
    the same folder (and its run) again."""
    data = config.to_dict()
    data.pop("out_dir", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    return f"{config.algo}__seed{config.seed}__{digest}"


def read_sweep_tables(path: str | Path) -> dict[str, Any]:
    """A sweep file's TOML tables, not yet validated (the CLI lays its options over them).

    :raises ValueError: one line naming the file (unreadable, or not TOML: with its line)
    """
    path = Path(path)
    try:
        return tomli.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    except tomli.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None


def read_sweep_file(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file (TOML), and every trial config it implies.

    :raises ValueError: one line naming the file and the key (``sweep.toml: grid.lerning_rate: ...``)
    """
    return sweep_from_dict(read_sweep_tables(path), str(path))


def _check_keys(data: dict[str, Any], source: str) -> None:
    """Refuse, in one line naming the key, a table key that is no TrainConfig field, or a field the
    sweep owns, before pydantic (whose messages for dict keys would not name it)."""
    known = _field_names()
    search = data.get("search") if isinstance(data.get("search"), dict) else {}
    tables = {"base": data.get("base"), "grid": data.get("grid"), "search.space": search.get("space")}
    for table, values in tables.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if table == "base" and name == "popsan" and isinstance(value, dict):
                bad = [k for k in value if f"popsan.{k}" not in known]
                if bad:
                    raise ValueError(f"{source}: base.popsan.{bad[0]}: not a PopSANConfig field")
                continue
            if name not in known:
                raise ValueError(f"{source}: {table}.{name}: not a TrainConfig field")
            if name in SWEEP_OWNED_FIELDS:
                raise ValueError(f"{source}: {table}.{name}: set by the sweep (each trial's folder under the "
                                 "sweep's out_dir)")
            if table == "search.space" and name == "seed":
                raise ValueError(f"{source}: search.space.seed: seeds are not searched; list them in [grid]")
            if table == "grid":
                if not isinstance(value, list) or not value:
                    raise ValueError(f"{source}: grid.{name}: give a non-empty list of values")
                if len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
                    raise ValueError(f"{source}: grid.{name}: a value appears twice")
    both = set(tables["grid"] or {}) & set(tables["search.space"] or {}) if isinstance(tables["grid"], dict) \
        and isinstance(tables["search.space"], dict) else set()
    if both:
        raise ValueError(f"{source}: search.space.{sorted(both)[0]}: also in [grid]; give it in one of them")


def sweep_from_dict(data: dict[str, Any], source: str = "sweep") -> SweepConfig:
    """:func:`read_sweep_file` on already parsed data (the CLI's flags build one).

    :raises ValueError: one line naming the source and the key
    """
    _check_keys(data, source)
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "not a key of the sweep file" if "." not in where else "not a key here"
        raise ValueError(f"{source}: {where}: {message}" if where else f"{source}: {message}") from None
    sweep.check_trials(source)
    return sweep
