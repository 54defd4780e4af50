"""Grid carbon-intensity traces: Electricity Maps hourly CSV exports and embedded zone profiles.

A trace is one value per UTC hour, ``ci_g_per_kwh[h]`` in gCO2eq/kWh for the hour that starts at
``start_utc + h hours``. It comes either from a user's Electricity Maps export
(:func:`load_electricity_maps_csv`) or from an embedded 24-hour diurnal profile tiled over days
(:meth:`GridTrace.from_profile`); :func:`load_grid` picks one from a string.

Normalisation for a policy observation: :func:`trailing_minmax_norm` uses only past hours (what a
deployed controller can know); :func:`annual_minmax_norm` looks ahead over the whole trace and
exists only to reproduce Sprout's setting.

numpy and the standard library only: this module is imported by the torch-free runtime.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .csv_rows import read_csv_rows

if TYPE_CHECKING:
    from ..hw_profiles.grid_zone import GridZoneProfile

__all__ = [
    "BASES",
    "GridTrace",
    "HOUR",
    "GridTraceError",
    "annual_minmax_norm",
    "embedded_zones",
    "load_electricity_maps_csv",
    "load_grid",
    "minmax_scale",
    "trailing_minmax",
    "trailing_minmax_norm",
]

BASES = ("direct", "lca")
HOUR = timedelta(hours=1)
TRAILING_WINDOW_H = 168  # ci_norm's trailing window: one week, so every hour of day and weekday is in it

# Electricity Maps export column names (as written in the file, with the subscript ₂)
DATETIME_COLUMN = "Datetime (UTC)"
ZONE_ID_COLUMN = "Zone Id"
ZONE_NAME_COLUMN = "Zone Name"
CI_COLUMNS = {
    "direct": "Carbon Intensity gCO₂eq/kWh (direct)",
    "lca": "Carbon Intensity gCO₂eq/kWh (LCA)",
}


class GridTraceError(ValueError):
    """A grid trace that cannot be read; the message names the file, the 1-based line and the column."""


# ---------------------------------------------------------------------------------------------
# the trace
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GridTrace:
    """Hourly carbon intensity of one electricity zone.

    :param zone_id: Electricity Maps zone id, e.g. ``"US-TEX-ERCO"``.
    :param zone_name: human-readable zone name.
    :param basis: ``"direct"`` (operational emissions) or ``"lca"`` (life-cycle).
    :param start_utc: start of hour 0, timezone-aware UTC, on the hour.
    :param ci_g_per_kwh: (n_hours,) float64, gCO2eq/kWh, hour h starts at ``start_utc + h hours``;
        finite and >= 0. Stored read-only.
    :param gaps: hours missing from the source, as ``(first missing hour's start, n_hours)``;
        their values in ``ci_g_per_kwh`` were filled (see ``fill``).
    :param source: the CSV path or ``"profile <name>"``.
    :param fill: how missing hours were filled (``"linear interpolation"``), or how the trace was
        built (``"24-h profile tiled"``); empty when every hour comes straight from the source.
    """

    zone_id: str
    zone_name: str
    basis: str
    start_utc: datetime
    ci_g_per_kwh: np.ndarray
    gaps: list[tuple[datetime, int]] = field(default_factory=list)
    source: str = ""
    fill: str = ""

    def __post_init__(self) -> None:
        ci = np.array(self.ci_g_per_kwh, dtype=np.float64)
        if ci.ndim != 1 or ci.size == 0:
            raise ValueError(f"ci_g_per_kwh: needs shape (n_hours,) with n_hours >= 1, got {ci.shape}")
        if not np.all(np.isfinite(ci)) or np.any(ci < 0):
            raise ValueError("ci_g_per_kwh: values must be finite and >= 0")
        if self.basis not in BASES:
            raise ValueError(f"basis: must be one of {BASES}, got {self.basis!r}")
        _check_utc_hour(self.start_utc, "start_utc")
        ci.setflags(write=False)
        object.__setattr__(self, "ci_g_per_kwh", ci)

    @property
    def n_hours(self) -> int:
        return int(self.ci_g_per_kwh.size)

    @property
    def end_utc(self) -> datetime:
        """Start of the last hour (UTC)."""
        return self.start_utc + (self.n_hours - 1) * HOUR

    @property
    def n_missing_hours(self) -> int:
        return sum(n for _, n in self.gaps)

    def at_hours(self, hour_index: np.ndarray) -> np.ndarray:
        """Intensity at hour indices counted from ``start_utc``; vectorised.

        :param hour_index: any shape, int or float hours since ``start_utc`` (floats are floored);
            indices before 0 or after the last hour are clipped to the first or last hour.
        :return: same shape as ``hour_index``, float64, gCO2eq/kWh.
        """
        hours = np.asarray(hour_index, dtype=np.float64)
        if not np.all(np.isfinite(hours)):
            raise ValueError("hour_index: values must be finite")
        idx = np.clip(np.floor(hours), 0, self.n_hours - 1).astype(np.int64)
        return self.ci_g_per_kwh[idx]

    def window(self, start_hour: int, n_hours: int) -> "GridTrace":
        """The sub-trace of hours ``[start_hour, start_hour + n_hours)``; gaps inside it are kept.

        :raises ValueError: the window is empty or reaches outside the trace.
        """
        if n_hours < 1 or start_hour < 0 or start_hour + n_hours > self.n_hours:
            raise ValueError(
                f"window [{start_hour}, {start_hour + n_hours}) is not inside the trace's "
                f"{self.n_hours} hours"
            )
        start = self.start_utc + start_hour * HOUR
        stop = start + n_hours * HOUR
        gaps = []
        for gap_start, gap_n in self.gaps:
            lo, hi = max(gap_start, start), min(gap_start + gap_n * HOUR, stop)
            if lo < hi:
                gaps.append((lo, (hi - lo) // HOUR))
        return GridTrace(
            zone_id=self.zone_id,
            zone_name=self.zone_name,
            basis=self.basis,
            start_utc=start,
            ci_g_per_kwh=self.ci_g_per_kwh[start_hour : start_hour + n_hours],
            gaps=gaps,
            source=self.source,
            fill="" if self.gaps and not gaps else self.fill,
        )

    def mean_by_utc_hour(self) -> np.ndarray:
        """Mean intensity at each UTC hour of the day.

        :return: (24,) float64, gCO2eq/kWh, index = UTC hour 0..23.
        :raises ValueError: the trace is shorter than 24 hours.
        """
        if self.n_hours < 24:
            raise ValueError(f"mean by UTC hour needs >= 24 hours, the trace has {self.n_hours}")
        hour_of_day = (self.start_utc.hour + np.arange(self.n_hours)) % 24
        sums = np.bincount(hour_of_day, weights=self.ci_g_per_kwh, minlength=24)
        counts = np.bincount(hour_of_day, minlength=24)
        return sums / counts

    def summary(self) -> dict:
        """Key figures of the trace, JSON-friendly (datetimes as ISO strings, intensities in g/kWh)."""
        ci = self.ci_g_per_kwh
        p10, p90 = np.percentile(ci, [10, 90])
        return {
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "basis": self.basis,
            "source": self.source,
            "n_hours": self.n_hours,
            "start_utc": self.start_utc.isoformat(),
            "end_utc": self.end_utc.isoformat(),
            "ci_min_g_per_kwh": float(ci.min()),
            "ci_mean_g_per_kwh": float(ci.mean()),
            "ci_max_g_per_kwh": float(ci.max()),
            "ci_p10_g_per_kwh": float(p10),
            "ci_p90_g_per_kwh": float(p90),
            "n_gaps": len(self.gaps),
            "n_missing_hours": self.n_missing_hours,
            "gaps": [(start.isoformat(), n) for start, n in self.gaps],
            "fill": self.fill,
        }

    @classmethod
    def from_profile(
        cls,
        profile: "GridZoneProfile",
        n_days: int,
        start_utc: datetime | None = None,
    ) -> "GridTrace":
        """Tile a zone's 24-hour diurnal profile over ``n_days`` days.

        Hour h of the trace gets the profile's value for UTC hour ``(start_utc.hour + h) % 24``.

        :param profile: an embedded or user grid-zone profile (24 values, g/kWh).
        :param n_days: number of days; the trace has ``24 * n_days`` hours.
        :param start_utc: start of hour 0, UTC, on the hour; default 1 January of the profile's year.
        """
        if n_days < 1:
            raise ValueError(f"n_days: must be >= 1, got {n_days}")
        if start_utc is None:
            start_utc = datetime(profile.year, 1, 1, tzinfo=timezone.utc)
        _check_utc_hour(start_utc, "start_utc")
        by_hour = np.asarray(profile.ci_by_utc_hour_g_per_kwh, dtype=np.float64)
        hour_of_day = (start_utc.hour + np.arange(24 * n_days)) % 24
        return cls(
            zone_id=profile.zone_id,
            zone_name=profile.zone_name,
            basis=profile.basis,
            start_utc=start_utc,
            ci_g_per_kwh=by_hour[hour_of_day],
            source=f"profile {profile.name}",
            fill=f"24-h profile tiled over {n_days} days (no day-to-day variation)",
        )


def _check_utc_hour(t: datetime, name: str) -> None:
    if t.tzinfo is None or t.utcoffset() != timedelta(0):
        raise ValueError(f"{name}: must be a timezone-aware UTC datetime, got {t!r}")
    if (t.minute, t.second, t.microsecond) != (0, 0, 0):
        raise ValueError(f"{name}: must be on the hour, got {t.isoformat()}")


# ---------------------------------------------------------------------------------------------
# Electricity Maps CSV
# ---------------------------------------------------------------------------------------------


def _normalise_header(name: str) -> str:
    """Header spelling that tolerates ₂/2, case and surrounding spaces."""
    return name.strip().replace("₂", "2").casefold()


def _parse_utc_hour(text: str) -> datetime:
    """``2023-01-01 00:00:00`` (naive = UTC), or ISO 8601 with ``Z`` or an offset; on the hour."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    if (t.minute, t.second, t.microsecond) != (0, 0, 0):
        raise ValueError("is not on the hour (hourly exports only)")
    return t


@dataclass
class _Rows:
    """What the CSV reader collects before gaps are found."""

    zone_id: str
    zone_name: str
    times: list[datetime]
    values: list[float]  # NaN where the cell is empty
    lines: list[int] = field(default_factory=list)  # 1-based line of each row in the file


def _read_rows(path: Path, basis: str) -> _Rows:
    """The rows of an Electricity Maps export: one zone, times strictly increasing, intensities
    finite and >= 0 (an empty cell is a missing hour, NaN); header names compared ignoring case
    and the ₂ of gCO₂."""
    rows = _Rows(zone_id="", zone_name="", times=[], values=[])
    for row in read_csv_rows(path, _required_columns(basis), error=GridTraceError,
                             optional={"zone_name": ZONE_NAME_COLUMN}, header_key=_normalise_header):
        raw_time = row.text("time")
        try:
            t = _parse_utc_hour(raw_time)
        except ValueError as e:
            reason = str(e) if "on the hour" in str(e) else "not a date-time"
            raise row.error("time", f"{raw_time!r} {reason}") from None
        if rows.times and t <= rows.times[-1]:
            raise row.error("time", f"{t:%Y-%m-%d %H:%M} is not after the previous row's "
                                    f"{rows.times[-1]:%Y-%m-%d %H:%M} (times must be strictly increasing)")
        zone_id = row.text("zone_id")
        if not rows.times:
            rows.zone_id = zone_id
            rows.zone_name = row.text("zone_name") if row.has("zone_name") else zone_id
        elif zone_id != rows.zone_id:
            raise row.error("zone_id", f"{zone_id!r} differs from the first row's {rows.zone_id!r} (one zone per file)")
        rows.times.append(t)
        rows.values.append(row.number("ci", allow_empty=True))  # an empty cell is a missing hour
        rows.lines.append(row.line)
    if not rows.times:
        raise GridTraceError(f"{path}: line 2: no data rows after the header")
    return rows


def _required_columns(basis: str) -> dict[str, str]:
    return {"time": DATETIME_COLUMN, "zone_id": ZONE_ID_COLUMN, "ci": CI_COLUMNS[basis]}


def _check_bounds(rows: _Rows, path: Path, basis: str) -> None:
    """Every time within ``limits.TIMESTAMP_RANGE_UTC``, the trace no longer than
    ``limits.GRID_TRACE_HOURS_MAX`` hours, every intensity within ``limits.INPUT_BOUNDS["ci_g_per_kwh"]``:
    checked on the parsed rows, before the hourly grid is allocated.

    :raises GridTraceError: naming the file, the line and the column
    """
    from .limits import GRID_TRACE_HOURS_MAX, INPUT_BOUNDS, TIMESTAMP_RANGE_UTC

    earliest, latest = TIMESTAMP_RANGE_UTC
    # times increase strictly, so the first row out of range is the first or the last row
    for i in (0, len(rows.times) - 1):
        if not earliest <= rows.times[i] < latest:
            raise GridTraceError(f"{path}: line {rows.lines[i]}: column {DATETIME_COLUMN!r}: "
                                 f"{rows.times[i].isoformat(sep=' ', timespec='minutes')} is outside "
                                 f"{earliest:%Y-%m-%d} to {latest:%Y-%m-%d} (UTC)")
    n_hours = (rows.times[-1] - rows.times[0]) // HOUR + 1
    if n_hours > GRID_TRACE_HOURS_MAX:
        beyond = next(i for i, t in enumerate(rows.times) if (t - rows.times[0]) // HOUR >= GRID_TRACE_HOURS_MAX)
        raise GridTraceError(f"{path}: line {rows.lines[beyond]}: column {DATETIME_COLUMN!r}: the trace would span "
                             f"{n_hours} hours from line {rows.lines[0]}, more than {GRID_TRACE_HOURS_MAX} (ten years)")
    low, high = INPUT_BOUNDS["ci_g_per_kwh"]
    for value, line in zip(rows.values, rows.lines):
        if not low <= value <= high and not math.isnan(value):  # NaN: an empty cell, a missing hour
            raise GridTraceError(f"{path}: line {line}: column {CI_COLUMNS[basis]!r}: {value:g} is outside "
                                 f"[{low:g}, {high:g}] gCO2eq/kWh")


def _place_on_hour_grid(times: list[datetime], values: list[float]) -> np.ndarray:
    """Values on a gap-free hourly grid from ``times[0]`` to ``times[-1]``; NaN where missing.

    :return: (n_hours,) float64.
    """
    start = times[0]
    idx = np.array([(t - start) // HOUR for t in times], dtype=np.int64)
    grid = np.full(idx[-1] + 1, np.nan)
    grid[idx] = values
    return grid


def _find_gaps(grid: np.ndarray, start_utc: datetime) -> list[tuple[datetime, int]]:
    """Runs of NaN in ``grid`` (n_hours,) as ``(first missing hour's start, n_hours)``."""
    missing = np.isnan(grid).astype(np.int8)
    edges = np.diff(np.concatenate(([0], missing, [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(start_utc + int(a) * HOUR, int(b - a)) for a, b in zip(starts, stops)]


def _interpolate_gaps(grid: np.ndarray) -> np.ndarray:
    """Fill NaN in ``grid`` (n_hours,) linearly between neighbours (held flat at either end)."""
    known = ~np.isnan(grid)
    hours = np.arange(grid.size)
    return np.interp(hours, hours[known], grid[known])


def load_electricity_maps_csv(path: str | os.PathLike, basis: str = "direct") -> GridTrace:
    """Read an Electricity Maps hourly CSV export (one zone) into a :class:`GridTrace`.

    Columns used: ``Datetime (UTC)``, ``Zone Id``, ``Zone Name`` (optional) and
    ``Carbon Intensity gCO₂eq/kWh (direct)`` or ``(LCA)`` (``CO2`` is accepted for ``CO₂``). A BOM
    is ignored. Times must be on the hour and strictly increasing. Hours absent from the file, and
    empty intensity cells, are gaps: reported in ``GridTrace.gaps`` and filled by linear
    interpolation (``GridTrace.fill`` says so).

    :param path: the CSV file.
    :param basis: ``"direct"`` (operational) or ``"lca"`` (life-cycle) intensity column.
    :raises GridTraceError: unreadable or empty file, missing column, unparsable date or number,
        negative intensity, non-increasing time, several zones, a time outside 1970-2100, a trace
        spanning more than ten years, an intensity above 5,000 g/kWh (``runtime/limits.py``);
        the message names the file, the 1-based line and the column.
    """
    if basis not in BASES:
        raise GridTraceError(f"basis: must be one of {', '.join(BASES)}, got {basis!r}")
    path = Path(path)
    rows = _read_rows(path, basis)
    _check_bounds(rows, path, basis)
    grid = _place_on_hour_grid(rows.times, rows.values)
    if np.isnan(grid).all():
        raise GridTraceError(f"{path}: column {CI_COLUMNS[basis]!r}: every intensity cell is empty")
    gaps = _find_gaps(grid, rows.times[0])
    return GridTrace(
        zone_id=rows.zone_id,
        zone_name=rows.zone_name,
        basis=basis,
        start_utc=rows.times[0],
        ci_g_per_kwh=_interpolate_gaps(grid) if gaps else grid,
        gaps=gaps,
        source=str(path),
        fill="linear interpolation" if gaps else "",
    )


# ---------------------------------------------------------------------------------------------
# by name: a file or an embedded zone
# ---------------------------------------------------------------------------------------------


def embedded_zones() -> list["GridZoneProfile"]:
    """The grid-zone profiles shipped with aolo (``hw_profiles/data/grids``), sorted by name."""
    from ..hw_profiles.grid_zone import GridZoneProfile
    from ..hw_profiles.registry import embedded_profiles, load_profile_file

    zones = [load_profile_file(e.path) for e in embedded_profiles() if e.type == GridZoneProfile.TYPE]
    return sorted(zones, key=lambda z: z.name)  # type: ignore[return-value]


def load_grid(spec: str, basis: str = "direct", n_days: int = 365) -> GridTrace:
    """A trace from a CSV path or an embedded zone (profile name or zone id, any case).

    :param spec: path to an Electricity Maps CSV (anything ending in ``.csv`` or naming an
        existing file), or ``"us-tex-erco"`` / ``"US-TEX-ERCO"`` for an embedded zone.
    :param basis: intensity column for a CSV; an embedded zone must have this basis.
    :param n_days: for an embedded zone, days of its 24-hour profile to tile (from 1 January of
        the profile's year, 00:00 UTC).
    :raises GridTraceError: a bad file (see :func:`load_electricity_maps_csv`), an unknown zone
        (the message lists the known ones) or a zone without that basis.
    """
    if spec.lower().endswith(".csv") or os.path.sep in spec or Path(spec).is_file():
        return load_electricity_maps_csv(spec, basis=basis)
    zones = embedded_zones()
    for zone in zones:
        if spec.lower() in (zone.name.lower(), zone.zone_id.lower()):
            if zone.basis != basis:
                raise GridTraceError(
                    f"grid zone {zone.name!r}: embedded profile has basis {zone.basis!r}, "
                    f"not {basis!r}; give an Electricity Maps CSV for {basis!r}"
                )
            return GridTrace.from_profile(zone, n_days=n_days)
    known = ", ".join(f"{z.name} ({z.zone_id})" for z in zones) or "none"
    raise GridTraceError(f"{spec!r} is neither a CSV file nor a known grid zone (known: {known})")


# ---------------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------------


def _as_trace_array(ci_g_per_kwh: np.ndarray) -> np.ndarray:
    ci = np.asarray(ci_g_per_kwh, dtype=np.float64)
    if ci.ndim != 1 or ci.size == 0:
        raise ValueError(f"ci_g_per_kwh: needs shape (n_hours,) with n_hours >= 1, got {ci.shape}")
    if not np.all(np.isfinite(ci)):
        raise ValueError("ci_g_per_kwh: values must be finite")
    return ci


def minmax_scale(ci: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(ci - lo) / (hi - lo)`` clipped to [0, 1], 0.5 where hi <= lo; arguments broadcast."""
    ci, lo, hi = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (ci, lo, hi)))
    span = hi - lo
    flat = span <= 0
    out = (ci - lo) / np.where(flat, 1.0, span)
    return np.clip(np.where(flat, 0.5, out), 0.0, 1.0)


def trailing_minmax(ci_g_per_kwh: np.ndarray, window_h: int = TRAILING_WINDOW_H) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of each hour's trailing window ``[h - window_h + 1, h]`` (``[0, h]``
    before ``window_h`` hours have passed).

    :param ci_g_per_kwh: (n_hours,) gCO2eq/kWh
    :param window_h: window length in hours, >= 1
    :return: lo (n_hours,), hi (n_hours,) gCO2eq/kWh
    """
    ci = _as_trace_array(ci_g_per_kwh)
    if window_h < 1:
        raise ValueError(f"window_h: must be >= 1, got {window_h}")
    # repeating ci[0] in front turns the first windows into [0, h] without changing min or max
    padded = np.concatenate((np.full(window_h - 1, ci[0]), ci))
    windows = sliding_window_view(padded, window_h)  # (n_hours, window_h), a view
    return windows.min(axis=1), windows.max(axis=1)


def trailing_minmax_norm(ci_g_per_kwh: np.ndarray, window_h: int = TRAILING_WINDOW_H) -> np.ndarray:
    """Min-max normalise each hour against the trailing window of hours ``[h - window_h + 1, h]``.

    ``x[h] = (ci[h] - min W_h) / (max W_h - min W_h)``, 0.5 where max == min. Only past and present
    hours are used (never future data), so a deployed controller can compute it online. Before
    ``window_h`` hours have passed the window is ``[0, h]``.

    :param ci_g_per_kwh: (n_hours,) gCO2eq/kWh.
    :param window_h: window length in hours (default one week), >= 1.
    :return: (n_hours,) float64 in [0, 1].
    """
    ci = _as_trace_array(ci_g_per_kwh)
    return minmax_scale(ci, *trailing_minmax(ci, window_h))


def annual_minmax_norm(ci_g_per_kwh: np.ndarray) -> np.ndarray:
    """Min-max normalise against the whole trace: ``(ci - min) / (max - min)``, 0.5 if constant.

    LOOK-AHEAD: every hour sees the minimum and maximum of the whole (e.g. annual) trace, including
    hours still in its future. Use it only to reproduce Sprout (Li et al., EMNLP 2024); a
    deployable controller uses :func:`trailing_minmax_norm`.

    :param ci_g_per_kwh: (n_hours,) gCO2eq/kWh.
    :return: (n_hours,) float64 in [0, 1].
    """
    ci = _as_trace_array(ci_g_per_kwh)
    return minmax_scale(ci, ci.min(), ci.max())
