"""Grid carbon-intensity traces: the Electricity Maps loader, normalisation, embedded zones, CLI."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aolo.cli import app
from aolo.hw_profiles import GridZoneProfile, load_profile
from aolo.runtime.grid import (
    HOUR,
    GridTrace,
    GridTraceError,
    annual_minmax_norm,
    load_electricity_maps_csv,
    load_grid,
    trailing_minmax_norm,
)

UTC = timezone.utc
# 2023 direct intensity, gCO2eq/kWh: (min, mean, max) as computed from the Electricity Maps exports
EXPECTED_2023_DIRECT = {
    "US-TEX-ERCO": (124.0, 316.5, 494.3),
    "US-CAL-CISO": (54.9, 193.5, 330.8),
    "AU-SA": (9.9, 140.9, 526.4),
}
CI_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"


@pytest.fixture
def texas_lines(sprout_file) -> list[str]:
    """Header and the first 48 hourly rows of the real US-TEX-ERCO export (line i+1 = lines[i])."""
    text = sprout_file("grid/US-TEX-ERCO_2023_hourly.csv").read_text(encoding="utf-8")
    return text.splitlines()[:49]


def write_copy(tmp_path: Path, lines: list[str], name: str = "broken.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def set_field(line: str, column: int, value: str) -> str:
    """Replace one field of a row whose zone name is quoted (the Texas rows): split on the quotes."""
    head, quoted, tail = line.split('"')
    fields = tail.split(",")  # fields[0] is empty: the comma after the quoted name
    fields[column - 2] = value  # columns 0, 1 before the name; 2 is the name
    return '"'.join((head, quoted, ",".join(fields)))


def error_of(path: Path) -> str:
    with pytest.raises(GridTraceError) as info:
        load_electricity_maps_csv(path)
    return str(info.value)


# --- the real exports ----------------------------------------------------------------------------


@pytest.mark.parametrize("zone_id", sorted(EXPECTED_2023_DIRECT))
def test_real_export_loads_8760_gapless_hours_with_the_expected_range(sprout_file, zone_id):
    trace = load_electricity_maps_csv(sprout_file(f"grid/{zone_id}_2023_hourly.csv"))
    ci_min, ci_mean, ci_max = EXPECTED_2023_DIRECT[zone_id]
    assert trace.zone_id == zone_id
    assert trace.n_hours == 8760
    assert trace.start_utc == datetime(2023, 1, 1, tzinfo=UTC)
    assert trace.end_utc == datetime(2023, 12, 31, 23, tzinfo=UTC)
    assert trace.gaps == [] and trace.fill == ""
    assert trace.ci_g_per_kwh.min() == pytest.approx(ci_min, abs=0.1)
    assert trace.ci_g_per_kwh.mean() == pytest.approx(ci_mean, abs=0.1)
    assert trace.ci_g_per_kwh.max() == pytest.approx(ci_max, abs=0.1)


def test_lca_basis_reads_the_life_cycle_column_which_exceeds_direct(sprout_file):
    path = sprout_file("grid/US-TEX-ERCO_2023_hourly.csv")
    direct, lca = load_electricity_maps_csv(path), load_electricity_maps_csv(path, basis="lca")
    assert lca.basis == "lca"
    assert lca.ci_g_per_kwh[0] == pytest.approx(318.55)  # first row's LCA cell
    assert lca.ci_g_per_kwh.mean() > direct.ci_g_per_kwh.mean()


def test_summary_reports_span_percentiles_and_gaps(sprout_file):
    s = load_electricity_maps_csv(sprout_file("grid/AU-SA_2023_hourly.csv")).summary()
    assert s["n_hours"] == 8760 and s["n_gaps"] == 0
    assert s["start_utc"] == "2023-01-01T00:00:00+00:00"
    assert s["ci_min_g_per_kwh"] <= s["ci_p10_g_per_kwh"] <= s["ci_mean_g_per_kwh"]
    assert s["ci_mean_g_per_kwh"] <= s["ci_p90_g_per_kwh"] <= s["ci_max_g_per_kwh"]


# --- broken copies ----------------------------------------------------------------------------------


def test_missing_intensity_column_is_reported_on_line_1(tmp_path, texas_lines):
    texas_lines[0] = texas_lines[0].replace(CI_DIRECT, "Carbon Intensity")
    message = error_of(write_copy(tmp_path, texas_lines))
    assert "broken.csv" in message and "line 1" in message and CI_DIRECT in message


def test_unparsable_number_names_its_file_line_and_column(tmp_path, texas_lines):
    texas_lines[16] = set_field(texas_lines[16], 4, "12.3.4")  # file line 17
    message = error_of(write_copy(tmp_path, texas_lines))
    assert "broken.csv: line 17:" in message
    assert CI_DIRECT in message and "12.3.4" in message


def test_negative_intensity_is_rejected_with_its_line(tmp_path, texas_lines):
    texas_lines[30] = set_field(texas_lines[30], 4, "-5.0")  # file line 31
    message = error_of(write_copy(tmp_path, texas_lines))
    assert "line 31" in message and ">= 0" in message


def test_unsorted_time_is_rejected_at_the_first_row_that_goes_back(tmp_path, texas_lines):
    texas_lines[5], texas_lines[6] = texas_lines[6], texas_lines[5]  # file lines 6 and 7
    message = error_of(write_copy(tmp_path, texas_lines))
    assert "line 7" in message and "Datetime (UTC)" in message and "strictly increasing" in message


def test_empty_file_and_header_only_file_are_rejected(tmp_path, texas_lines):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert "empty.csv: line 1: empty file" in error_of(empty)
    assert "no data rows" in error_of(write_copy(tmp_path, texas_lines[:1], "header.csv"))


def test_removed_row_becomes_a_reported_gap_filled_by_interpolation(tmp_path, texas_lines):
    full = load_electricity_maps_csv(write_copy(tmp_path, texas_lines, "full.csv"))
    del texas_lines[11]  # the row of 2023-01-01 10:00 UTC
    trace = load_electricity_maps_csv(write_copy(tmp_path, texas_lines))
    assert trace.n_hours == 48
    assert trace.gaps == [(datetime(2023, 1, 1, 10, tzinfo=UTC), 1)]
    assert trace.fill == "linear interpolation"
    ci = trace.ci_g_per_kwh
    assert ci[10] == pytest.approx((ci[9] + ci[11]) / 2)
    assert np.array_equal(np.delete(ci, 10), np.delete(full.ci_g_per_kwh, 10))
    assert trace.summary()["n_missing_hours"] == 1


def test_window_keeps_only_the_gaps_inside_it(tmp_path, texas_lines):
    del texas_lines[11:14]  # hours 10, 11, 12
    trace = load_electricity_maps_csv(write_copy(tmp_path, texas_lines))
    assert trace.gaps == [(datetime(2023, 1, 1, 10, tzinfo=UTC), 3)]
    part = trace.window(11, 5)
    assert part.start_utc == datetime(2023, 1, 1, 11, tzinfo=UTC)
    assert part.gaps == [(datetime(2023, 1, 1, 11, tzinfo=UTC), 2)]
    assert np.array_equal(part.ci_g_per_kwh, trace.ci_g_per_kwh[11:16])
    assert trace.window(20, 5).gaps == [] and trace.window(20, 5).fill == ""
    with pytest.raises(ValueError, match="not inside"):
        trace.window(40, 10)


def test_bom_and_plain_co2_spelling_are_accepted(tmp_path, texas_lines):
    original = load_electricity_maps_csv(write_copy(tmp_path, texas_lines, "plain.csv"))
    texas_lines[0] = "\ufeff" + texas_lines[0].replace("₂", "2")
    trace = load_electricity_maps_csv(write_copy(tmp_path, texas_lines, "bom.csv"))
    assert trace.zone_id == "US-TEX-ERCO"
    assert np.array_equal(trace.ci_g_per_kwh, original.ci_g_per_kwh)


def test_rows_of_a_second_zone_are_rejected(tmp_path, texas_lines):
    texas_lines[3] = texas_lines[3].replace("US-TEX-ERCO", "US-CAL-CISO")
    message = error_of(write_copy(tmp_path, texas_lines))
    assert "line 4" in message and "Zone Id" in message


# --- lookup and normalisation ---------------------------------------------------------------------


def test_at_hours_floors_and_clips_hour_indices(tmp_path, texas_lines):
    trace = load_electricity_maps_csv(write_copy(tmp_path, texas_lines))
    ci = trace.ci_g_per_kwh
    got = trace.at_hours(np.array([[-3.0, 0.0], [1.7, 1e9]]))
    assert got.shape == (2, 2)
    assert np.array_equal(got, [[ci[0], ci[0]], [ci[1], ci[-1]]])


def test_trailing_norm_matches_hand_worked_windows():
    ci = np.array([10.0, 20.0, 15.0, 30.0, 5.0])
    # windows of 3 h: [10] [10,20] [10,20,15] [20,15,30] [15,30,5]
    assert np.allclose(trailing_minmax_norm(ci, window_h=3), [0.5, 1.0, 0.5, 1.0, 0.0])


def test_trailing_norm_uses_no_future_data(sprout_file):
    ci = load_electricity_maps_csv(sprout_file("grid/AU-SA_2023_hourly.csv")).ci_g_per_kwh.copy()
    before = trailing_minmax_norm(ci)
    ci[5000:] = np.random.default_rng(0).uniform(0.0, 2000.0, size=ci.size - 5000)
    after = trailing_minmax_norm(ci)
    assert np.array_equal(before[:5000], after[:5000])
    assert not np.array_equal(before[5000:], after[5000:])
    assert before.min() >= 0.0 and before.max() <= 1.0


def test_norms_give_half_on_a_flat_trace():
    flat = np.full(30, 200.0)
    assert np.all(trailing_minmax_norm(flat, window_h=5) == 0.5)
    assert np.all(annual_minmax_norm(flat) == 0.5)


def test_annual_norm_maps_min_to_0_and_max_to_1():
    assert np.allclose(annual_minmax_norm(np.array([100.0, 300.0, 200.0])), [0.0, 1.0, 0.5])


# --- embedded zones --------------------------------------------------------------------------------


@pytest.mark.parametrize("zone_id", sorted(EXPECTED_2023_DIRECT))
def test_derived_profile_loads_and_matches_the_csv_hourly_means(sprout_file, zone_id):
    profile = load_profile(zone_id.lower(), GridZoneProfile)
    trace = load_electricity_maps_csv(sprout_file(f"grid/{zone_id}_2023_hourly.csv"))
    assert profile.zone_id == zone_id and profile.basis == "direct" and profile.year == 2023
    assert np.allclose(profile.ci_by_utc_hour_g_per_kwh, trace.mean_by_utc_hour(), atol=0.006)
    assert profile.si("ci_annual_min") == pytest.approx(trace.ci_g_per_kwh.min(), abs=0.006)
    assert profile.si("ci_annual_mean") == pytest.approx(trace.ci_g_per_kwh.mean(), abs=0.006)
    assert profile.si("ci_annual_max") == pytest.approx(trace.ci_g_per_kwh.max(), abs=0.006)
    assert profile.ci_by_utc_hour.kind == "derived" and "Sprout" in profile.ci_by_utc_hour.source


def test_from_profile_tiles_the_24_hour_profile_from_the_start_hour():
    profile = load_profile("us-tex-erco", GridZoneProfile)
    by_hour = np.array(profile.ci_by_utc_hour_g_per_kwh)
    trace = GridTrace.from_profile(profile, n_days=3, start_utc=datetime(2024, 6, 1, 5, tzinfo=UTC))
    assert trace.n_hours == 72 and trace.zone_id == "US-TEX-ERCO"
    assert trace.ci_g_per_kwh[0] == by_hour[5] and trace.ci_g_per_kwh[24] == by_hour[5]
    assert trace.ci_g_per_kwh[19] == by_hour[0]  # 05:00 + 19 h = 00:00 next day
    assert np.allclose(trace.mean_by_utc_hour(), by_hour)


def test_load_grid_finds_an_embedded_zone_by_name_or_zone_id():
    by_id, by_name = load_grid("US-TEX-ERCO"), load_grid("us-tex-erco")
    assert by_id.n_hours == 365 * 24 and by_id.source == "profile us-tex-erco"
    assert np.array_equal(by_id.ci_g_per_kwh, by_name.ci_g_per_kwh)


def test_load_grid_rejects_an_unknown_zone_listing_the_known_ones():
    with pytest.raises(GridTraceError, match="us-tex-erco") as info:
        load_grid("DE")
    assert "'DE'" in str(info.value) and "au-sa" in str(info.value)


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_grid_load_prints_the_summary_and_writes_a_png(sprout_file, tmp_path):
    png = tmp_path / "au-sa.png"
    result = CliRunner().invoke(app, ["grid", "load", str(sprout_file("grid/AU-SA_2023_hourly.csv")), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "AU-SA" in result.output and "8760" in result.output and "526.4" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_grid_load_on_a_broken_file_exits_2_naming_the_line(tmp_path, texas_lines):
    texas_lines[16] = set_field(texas_lines[16], 4, "abc")
    result = CliRunner().invoke(app, ["grid", "load", str(write_copy(tmp_path, texas_lines))])
    assert result.exit_code == 2
    assert "error:" in result.output and "line 17" in result.output
    assert "Traceback" not in result.output


def test_cli_grid_zones_lists_the_embedded_zones():
    result = CliRunner().invoke(app, ["grid", "zones"])
    assert result.exit_code == 0, result.output
    for name in ("au-sa", "us-cal-ciso", "us-tex-erco"):
        assert name in result.output


# --- bounds: a crafted export never becomes a huge or infinite trace -------------------------------


def crafted_csv(tmp_path: Path, rows: list[tuple[str, str]], name: str = "crafted.csv") -> Path:
    """An Electricity Maps export of ``(time, intensity)`` rows for one zone."""
    lines = [f"Datetime (UTC),Zone Id,{CI_DIRECT}"] + [f"{t},US-TEX-ERCO,{ci}" for t, ci in rows]
    return write_copy(tmp_path, lines, name)


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_two_rows_spanning_years_1_to_9999_are_refused_naming_the_line_before_anything_is_allocated(tmp_path):
    import subprocess
    import sys

    from test_bundle import make_bundle

    path = crafted_csv(tmp_path, [("0001-01-01 00:00:00", "400"), ("9999-12-31 23:00:00", "500")])
    with pytest.raises(GridTraceError, match=r"crafted\.csv: line 2: column 'Datetime \(UTC\)': 0001-01-01 00:00\+00:00 "
                                             r"is outside 1970-01-01 to 2100-01-01"):
        load_electricity_maps_csv(path)
    late = crafted_csv(tmp_path, [("2023-01-01 00:00:00", "400"), ("2100-01-01 00:00:00", "500")], "late.csv")
    assert "late.csv: line 3:" in error_of(late)

    def cli(*args: str):
        return subprocess.run([sys.executable, "-m", "aolo", *args], capture_output=True, text=True, timeout=120)

    _one_line_exit_2(cli("grid", "load", str(path)), str(path), "line 2", "Datetime (UTC)")
    bundle = make_bundle(tmp_path)
    _one_line_exit_2(cli("serve", str(bundle), "--grid", str(path), "--port", "0", "--ledger", str(tmp_path / "l.db")),
                     str(path), "line 2", "Datetime (UTC)")
    assert not (tmp_path / "l.db").exists()  # refused before the ledger opened


def test_the_longest_trace_loads_and_one_hour_more_is_refused_naming_its_line(tmp_path):
    from aolo.runtime.limits import GRID_TRACE_HOURS_MAX

    start = datetime(2001, 1, 1, tzinfo=UTC)
    fmt = "%Y-%m-%d %H:%M:%S"

    def trace_to(last: datetime, name: str) -> Path:
        return crafted_csv(tmp_path, [(start.strftime(fmt), "300"), ("2005-06-01 12:00:00", "350"),
                                      (last.strftime(fmt), "400")], name)

    longest = load_electricity_maps_csv(trace_to(start + (GRID_TRACE_HOURS_MAX - 1) * HOUR, "ten_years.csv"))
    assert longest.n_hours == GRID_TRACE_HOURS_MAX and longest.fill == "linear interpolation"
    message = error_of(trace_to(start + GRID_TRACE_HOURS_MAX * HOUR, "longer.csv"))
    assert message.startswith(f"{tmp_path / 'longer.csv'}: line 4: column 'Datetime (UTC)': the trace would span "
                              f"{GRID_TRACE_HOURS_MAX + 1} hours from line 2, more than {GRID_TRACE_HOURS_MAX}")


@pytest.mark.parametrize("value", ["5000.001", "1e308"])
def test_an_intensity_above_the_input_bound_is_refused_naming_its_line(tmp_path, value):
    ok = load_electricity_maps_csv(crafted_csv(tmp_path, [("2023-01-01 00:00:00", "0"),
                                                          ("2023-01-01 01:00:00", "5000")], "bound.csv"))
    assert ok.ci_g_per_kwh.tolist() == [0.0, 5000.0]
    path = crafted_csv(tmp_path, [("2023-01-01 00:00:00", "300"), ("2023-01-01 01:00:00", ""),
                                  ("2023-01-01 02:00:00", value)])
    assert error_of(path) == (f"{path}: line 4: column {CI_DIRECT!r}: {float(value):g} is outside [0, 5000] gCO2eq/kWh")
