"""Workload: diurnal and PAI-trace arrival rates, daily class mixes, arrival and class sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aolo.train.requests import RequestModelTables, load_request_defaults
from aolo.train.workload import (
    DiurnalWorkload,
    PaiTraceWorkload,
    WorkloadDataError,
    read_pai_hourly_jobs,
    sample_arrival_stream,
    sample_arrivals,
    sample_classes,
)


def write(tmp_path: Path, text: str, name: str = "pai.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jobs_csv(jobs: list[int]) -> str:
    return "hour_index,jobs\n" + "".join(f"{h},{j}\n" for h, j in enumerate(jobs))


# ---------------------------------------------------------------------------------------------
# Embedded diurnal workload
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_hour_of_day", [0, 7, 23])
def test_diurnal_rate_averages_to_the_base_rate_over_a_day(start_hour_of_day):
    w = DiurnalWorkload(base_rate_per_s=0.8, start_hour_of_day=start_hour_of_day)
    rate = w.rate_per_s(np.arange(24))
    assert rate.shape == (24,)
    assert rate.mean() == pytest.approx(0.8, rel=1e-9)
    assert rate.min() < 0.8 < rate.max()


def test_diurnal_rate_follows_the_hour_of_day():
    shape = RequestModelTables.embedded().diurnal_rate_shape
    w = DiurnalWorkload(base_rate_per_s=2.0, start_hour_of_day=20)
    assert w.rate_per_s(0) == pytest.approx(2.0 * shape[20] / shape.mean())
    assert w.rate_per_s(5) == pytest.approx(2.0 * shape[1] / shape.mean())  # 20 + 5 = 01:00 next day
    assert w.rate_per_s(29) == pytest.approx(w.rate_per_s(5))


def test_embedded_diurnal_shape_is_the_mean_pai_hour_of_day_profile(sprout_file):
    jobs = read_pai_hourly_jobs(sprout_file("pai_hourly_jobs.csv"))
    by_hour = jobs[: len(jobs) // 24 * 24].reshape(-1, 24).mean(axis=0)
    shape = load_request_defaults()["workload"]["diurnal_rate_shape"]
    np.testing.assert_allclose(shape, by_hour / by_hour.mean(), rtol=1e-5)


def test_class_mix_rows_sum_to_one_and_have_six_classes():
    w = DiurnalWorkload(base_rate_per_s=1.0, seed=1)
    mix = w.class_mix(np.arange(72))
    assert mix.shape == (72, 6)
    np.testing.assert_allclose(mix.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(mix >= 0)
    assert w.class_mix(3).shape == (6,)


def test_class_mix_holds_within_a_local_day_and_changes_at_midnight():
    w = DiurnalWorkload(base_rate_per_s=1.0, start_hour_of_day=20, seed=2)
    mix = w.class_mix(np.arange(30))
    np.testing.assert_array_equal(mix[0], mix[3])  # 20:00 .. 23:00, day 0
    assert not np.allclose(mix[3], mix[4])  # midnight
    np.testing.assert_array_equal(mix[4], mix[27])  # 00:00 .. 23:00, day 1
    assert not np.allclose(mix[27], mix[28])


def test_class_mix_is_reproducible_from_the_seed_in_any_query_order():
    a = DiurnalWorkload(base_rate_per_s=1.0, seed=5).class_mix(np.array([100, 0, 50]))
    b = DiurnalWorkload(base_rate_per_s=1.0, seed=5).class_mix(np.array([50, 100, 0]))
    np.testing.assert_array_equal(a[[1, 2, 0]], b[[2, 0, 1]])
    c = DiurnalWorkload(base_rate_per_s=1.0, seed=6).class_mix(np.array([0]))
    assert not np.allclose(a[1], c[0])


def test_daily_mixes_average_to_the_judged_class_frequencies():
    base = RequestModelTables.embedded().class_frequency
    w = DiurnalWorkload(base_rate_per_s=1.0, mix_concentration=50.0, seed=3)
    mixes = w.class_mix(np.arange(0, 24 * 2000, 24))
    np.testing.assert_allclose(mixes.mean(axis=0), base, atol=0.005)
    expected_std = np.sqrt(base * (1 - base) / 51.0)
    np.testing.assert_allclose(mixes.std(axis=0), expected_std, rtol=0.1)


def test_no_concentration_keeps_the_mix_fixed():
    base = np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    w = DiurnalWorkload(base_rate_per_s=1.0, mix_concentration=None, base_mix=base)
    np.testing.assert_allclose(w.class_mix(np.arange(100)), np.tile(base, (100, 1)))


def test_diurnal_workload_rejects_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="start_hour_of_day"):
        DiurnalWorkload(base_rate_per_s=1.0, start_hour_of_day=24)
    with pytest.raises(ValueError, match="base_mix"):
        DiurnalWorkload(base_rate_per_s=1.0, base_mix=np.full(6, 0.2))
    with pytest.raises(ValueError, match="hour"):
        DiurnalWorkload(base_rate_per_s=1.0).rate_per_s(-1)


# ---------------------------------------------------------------------------------------------
# PAI trace workload
# ---------------------------------------------------------------------------------------------


def test_pai_trace_loads_1224_hours_and_its_rate_has_mean_base(sprout_file):
    w = PaiTraceWorkload.from_csv(sprout_file("pai_hourly_jobs.csv"), base_rate_per_s=0.5)
    assert w.n_hours == 1224
    rate = w.rate_per_s(np.arange(w.n_hours))
    assert rate.mean() == pytest.approx(0.5, rel=1e-9)
    assert rate.max() / rate.min() > 5  # the trace is bursty


def test_pai_rate_follows_the_hourly_job_counts_and_wraps_around(tmp_path):
    w = PaiTraceWorkload.from_csv(write(tmp_path, jobs_csv([10, 30, 20, 40])), base_rate_per_s=1.0, start_hour=2)
    np.testing.assert_allclose(w.rate_per_s(np.arange(6)), [0.8, 1.6, 0.4, 1.2, 0.8, 1.6])
    assert w.start_hour_of_day == 2


def test_pai_class_mix_changes_every_24_trace_hours(tmp_path):
    w = PaiTraceWorkload.from_csv(write(tmp_path, jobs_csv([100] * 72)), base_rate_per_s=1.0, start_hour=10, seed=4)
    mix = w.class_mix(np.arange(40))
    np.testing.assert_allclose(mix.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(mix[0], mix[13])  # trace hours 10..23
    assert not np.allclose(mix[13], mix[14])  # trace hour 24
    np.testing.assert_array_equal(mix[14], mix[37])


def test_pai_mix_concentration_scales_with_the_days_job_volume(tmp_path):
    jobs = [100] * 24 + [300] * 24 + [200] * 24
    w = PaiTraceWorkload.from_csv(write(tmp_path, jobs_csv(jobs)), base_rate_per_s=1.0, mix_concentration=60.0)
    np.testing.assert_allclose(w.day_concentration, [30.0, 90.0, 60.0])


def test_pai_busy_days_have_mixes_closer_to_the_base_mix():
    jobs = np.array([10.0] * 24 + [1000.0] * 24)
    quiet, busy = [], []
    for seed in range(300):
        w = PaiTraceWorkload(jobs_per_hour=jobs, base_rate_per_s=1.0, mix_concentration=100.0, seed=seed)
        quiet.append(w.class_mix(0))
        busy.append(w.class_mix(24))
    assert np.std(busy, axis=0).mean() < 0.5 * np.std(quiet, axis=0).mean()


def test_pai_mix_is_reproducible_from_the_scenario_seed(sprout_file):
    path = sprout_file("pai_hourly_jobs.csv")
    a = PaiTraceWorkload.from_csv(path, 1.0, start_hour=100, seed=9).class_mix(np.arange(0, 200, 7))
    b = PaiTraceWorkload.from_csv(path, 1.0, start_hour=100, seed=9).class_mix(np.arange(0, 200, 7))
    c = PaiTraceWorkload.from_csv(path, 1.0, start_hour=100, seed=10).class_mix(np.arange(0, 200, 7))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_pai_loader_names_the_line_of_a_gap(tmp_path):
    text = "hour_index,jobs\n0,5\n1,6\n3,7\n"
    with pytest.raises(WorkloadDataError, match=r"pai\.csv: line 4: column 'hour_index': expected 2"):
        read_pai_hourly_jobs(write(tmp_path, text))


def test_pai_loader_names_the_line_of_a_bad_count(tmp_path):
    text = "hour_index,jobs\n0,5\n1,many\n"
    with pytest.raises(WorkloadDataError, match=r"line 3: column 'jobs': 'many' is not a number"):
        read_pai_hourly_jobs(write(tmp_path, text))
    with pytest.raises(WorkloadDataError, match=r"line 2: column 'jobs'"):
        read_pai_hourly_jobs(write(tmp_path, "hour_index,jobs\n0,-1\n", "neg.csv"))


def test_pai_loader_reports_a_missing_column_on_line_1(tmp_path):
    with pytest.raises(WorkloadDataError, match=r"line 1: column 'jobs': missing"):
        read_pai_hourly_jobs(write(tmp_path, "hour_index,count\n0,5\n"))


def test_pai_start_hour_outside_the_trace_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="start_hour"):
        PaiTraceWorkload.from_csv(write(tmp_path, jobs_csv([1, 2, 3])), 1.0, start_hour=3)


# ---------------------------------------------------------------------------------------------
# Sampling helpers
# ---------------------------------------------------------------------------------------------


def test_arrivals_are_sorted_inside_the_horizon_and_count_the_rate_integral():
    rng = np.random.default_rng(0)
    t = sample_arrivals(rng, 10.0, 3 * 3600.0)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 3 * 3600.0
    assert len(t) == pytest.approx(108_000, rel=0.01)


def test_arrivals_follow_a_piecewise_constant_hourly_rate():
    rng = np.random.default_rng(1)
    t = sample_arrivals(rng, np.array([2.0, 0.0, 6.0]), 3 * 3600.0)
    counts = np.bincount((t // 3600).astype(int), minlength=3)
    assert counts[1] == 0
    assert counts[0] == pytest.approx(7200, rel=0.05)
    assert counts[2] == pytest.approx(21600, rel=0.03)


def test_a_partial_last_hour_gets_its_share_of_arrivals():
    rng = np.random.default_rng(2)
    t = sample_arrivals(rng, np.array([1.0, 10.0]), 3600.0 + 900.0)
    assert t.max() < 4500.0
    assert np.sum(t >= 3600.0) == pytest.approx(9000, rel=0.05)


def test_arrivals_are_deterministic_under_a_seed():
    a = sample_arrivals(np.random.default_rng(3), 0.5, 7200.0)
    b = sample_arrivals(np.random.default_rng(3), 0.5, 7200.0)
    np.testing.assert_array_equal(a, b)


def test_a_rate_too_short_for_the_horizon_is_rejected():
    with pytest.raises(ValueError, match="rate_per_s: needs 3 hourly values"):
        sample_arrivals(np.random.default_rng(0), np.ones(2), 2.5 * 3600.0)


def test_classes_follow_a_fixed_mix():
    mix = np.array([0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    c = sample_classes(np.random.default_rng(4), mix, 100_000)
    assert c.dtype == np.int64 and c.shape == (100_000,)
    np.testing.assert_allclose(np.bincount(c, minlength=6) / c.size, mix, atol=0.005)


def test_classes_follow_a_per_request_mix():
    mix = np.zeros((1000, 6))
    mix[np.arange(1000), np.arange(1000) % 6] = 1.0
    c = sample_classes(np.random.default_rng(5), mix)
    assert c.tolist() == (np.arange(1000) % 6).tolist()


def test_a_mix_that_does_not_sum_to_one_is_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        sample_classes(np.random.default_rng(0), np.full(6, 0.1), 10)


@dataclass
class HourlyOneHotWorkload:
    """A workload whose hour h has rate 1/s and only class h mod 6 (for testing)."""

    start_hour_of_day: int = 0

    def rate_per_s(self, hour):
        return np.ones_like(np.asarray(hour), dtype=np.float64)

    def class_mix(self, hour):
        return np.eye(6)[np.asarray(hour) % 6]


def test_arrival_stream_draws_each_arrivals_class_from_its_hours_mix():
    arrival_s, task_class = sample_arrival_stream(np.random.default_rng(6), HourlyOneHotWorkload(), 8 * 3600.0)
    assert len(arrival_s) == len(task_class) == pytest.approx(8 * 3600, rel=0.03)
    np.testing.assert_array_equal(task_class, (arrival_s // 3600).astype(int) % 6)


def test_arrival_stream_under_the_default_workload_has_the_mean_daily_volume():
    w = DiurnalWorkload(base_rate_per_s=0.2, start_hour_of_day=6, seed=7)
    counts = [len(sample_arrival_stream(np.random.default_rng(s), w, 86_400.0)[0]) for s in range(20)]
    assert np.mean(counts) == pytest.approx(0.2 * 86_400, rel=0.01)
