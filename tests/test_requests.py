"""Request sources: the batch, the derived Sprout defaults, the synthetic model and trace replay."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from aolo.train.requests import (
    LEVELS,
    TASK_CLASSES,
    RequestBatch,
    RequestDataError,
    RequestModelTables,
    SyntheticRequests,
    TraceRequests,
    load_request_defaults,
    read_sprout_judgements,
    read_sprout_requests,
)

pytestmark = pytest.mark.xdist_group("test_requests")  # one xdist worker: its module fixtures load Sprout's trace once

REPO_ROOT = Path(__file__).resolve().parents[1]
TRIVIAQA = TASK_CLASSES.index("triviaqa")


@pytest.fixture(scope="module")
def defaults() -> dict:
    return load_request_defaults()


@pytest.fixture(scope="module")
def trace(request) -> TraceRequests:
    sprout_file = request.getfixturevalue("sprout_file")
    return TraceRequests.from_csv(sprout_file("requests.csv"), sprout_file("judgements.csv"))


def csv_rows(path: Path, dataset: str, level: str) -> list[dict[str, str]]:
    """The rows of one dataset and level, read with nothing but the csv module."""
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["dataset"] == dataset and r["level"] == level]


def small_batch(n: int = 4) -> RequestBatch:
    return RequestBatch(
        task_class=np.arange(n) % 6,
        prompt_tokens=np.full(n, 10),
        output_tokens=np.tile([100.0, 30.0, 20.0], (n, 1)),
        inference_energy_j=np.tile([600.0, 180.0, 120.0], (n, 1)),
        inference_latency_s=np.tile([2.4, 0.7, 0.5], (n, 1)),
        preferred_level=np.arange(n) % 3,
        deadline_s=np.full(n, 5.0),
    )


# ---------------------------------------------------------------------------------------------
# RequestBatch
# ---------------------------------------------------------------------------------------------


def test_batch_take_and_slicing_keep_every_column_aligned():
    b = small_batch(6)
    sub = b.take(np.array([5, 1]))
    assert len(sub) == 2
    assert sub.task_class.tolist() == [5, 1]
    assert sub.preferred_level.tolist() == [2, 1]
    assert sub.output_tokens.shape == (2, 3)
    assert len(b[1:4]) == 3
    assert len(b[2]) == 1 and b[2].task_class.tolist() == [2]
    assert len(b[b.task_class >= 4]) == 2


def test_batch_quality_is_one_only_at_the_preferred_level():
    b = small_batch(3)  # preferred 0, 1, 2
    assert b.quality(np.array([0, 0, 2])).tolist() == [1.0, 0.0, 1.0]
    assert b.quality(1).tolist() == [0.0, 1.0, 0.0]


def test_batch_with_a_wrong_shape_names_the_field():
    with pytest.raises(ValueError, match=r"RequestBatch\.inference_energy_j: expected shape \(2, 3\)"):
        RequestBatch(
            task_class=[0, 1], prompt_tokens=[1, 1], output_tokens=np.ones((2, 3)),
            inference_energy_j=np.ones(2), inference_latency_s=np.ones((2, 3)),
            preferred_level=[0, 0], deadline_s=[1.0, 1.0],
        )


def test_batch_with_an_out_of_range_level_names_the_field_and_row():
    with pytest.raises(ValueError, match=r"preferred_level: row 1"):
        RequestBatch(
            task_class=[0, 1], prompt_tokens=[1, 1], output_tokens=np.ones((2, 3)),
            inference_energy_j=np.ones((2, 3)), inference_latency_s=np.ones((2, 3)),
            preferred_level=[0, 3], deadline_s=[1.0, 1.0],
        )


def test_batches_concatenate_in_order():
    b = RequestBatch.concatenate([small_batch(2), small_batch(3)])
    assert len(b) == 5
    assert b.task_class.tolist() == [0, 1, 0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Derived defaults (sprout_defaults.json)
# ---------------------------------------------------------------------------------------------


def test_embedded_defaults_ship_as_package_data_with_their_source(defaults):
    source = " ".join(defaults["source"].values())
    assert "Sprout" in source and "EMNLP 2024" in source and "MIT" in source
    assert "Llama-2-13B-chat" in source and "A100" in source and "batch 1" in source
    assert "PAI" in defaults["workload"]["source"]
    assert defaults["prompt_tokens"]["kind"] == "estimate"
    assert "aolo estimate" in defaults["prompt_tokens"]["source"]
    tables = RequestModelTables.from_dict(defaults)
    assert tables.token_mu.shape == (6, 3) and tables.preferred_prob.shape == (6, 3)
    assert tables.diurnal_rate_shape.shape == (24,)
    np.testing.assert_allclose(tables.preferred_prob.sum(axis=1), 1.0, atol=1e-5)


def test_defaults_missing_a_field_are_rejected_naming_it(defaults):
    broken = dict(defaults)
    broken["deadline_s"] = {k: v for k, v in defaults["deadline_s"].items() if k != "mmlu"}
    with pytest.raises(RequestDataError, match=r"field 'deadline_s\.mmlu' is missing"):
        RequestModelTables.from_dict(broken)


@pytest.mark.parametrize("path, value, message", [
    (("output_tokens", "math", "L1", "log_sigma"), -0.5, r"field 'output_tokens\.math\.L1\.log_sigma': .*greater than or equal to 0"),
    (("preferred_level_prob", "mmlu"), [0.5, 0.4, 0.2], r"field 'preferred_level_prob\.mmlu': must sum to 1, sums to 1\.1"),
    (("deadline_s", "alpaca"), "12", r"field 'deadline_s\.alpaca': Input should be a valid number"),
    (("energy_per_output_token_j", "triviaqa", "L2"), True, r"field 'energy_per_output_token_j\.triviaqa\.L2'"),
    (("workload", "diurnal_rate_shape"), [1.0] * 23, r"field 'workload\.diurnal_rate_shape': .*at least 24"),
    (("class_frequency", "math"), 0.9, r"field 'class_frequency': must sum to 1"),
])
def test_defaults_with_a_malformed_field_are_rejected_naming_it(defaults, path, value, message):
    import copy

    broken = copy.deepcopy(defaults)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(RequestDataError, match=r"^defaults\.json: " + message):
        RequestModelTables.from_dict(broken, origin="defaults.json")


def test_l1_triviaqa_mean_tokens_and_energy_per_token_match_the_csv_within_1_percent(defaults, sprout_file):
    rows = csv_rows(sprout_file("requests.csv"), "triviaqa", "L1")
    tokens = [float(r["output_tokens"]) for r in rows]
    energy_j = [float(r["energy_wh"]) * 3600.0 for r in rows]
    latency_s = [float(r["latency_s"]) for r in rows]
    cell = defaults["output_tokens"]["triviaqa"]["L1"]
    assert cell["n_rows"] == len(rows) and cell["n_imputed"] == 0
    assert cell["mean"] == pytest.approx(np.mean(tokens), rel=0.01)
    assert defaults["energy_per_output_token_j"]["triviaqa"]["L1"] == pytest.approx(sum(energy_j) / sum(tokens), rel=0.01)
    assert defaults["latency_per_output_token_s"]["triviaqa"]["L1"] == pytest.approx(sum(latency_s) / sum(tokens), rel=0.01)
    assert cell["log_mu"] == pytest.approx(np.mean(np.log(tokens)), rel=0.01)
    assert cell["quantile_log_mu"] == pytest.approx(np.median(np.log(tokens)), rel=0.01)


def test_deadline_is_the_l0_latency_95th_percentile_rounded_up_to_a_tenth(defaults, sprout_file):
    path = sprout_file("requests.csv")
    for name in ("alpaca", "scienceqa"):
        latency_s = np.array([float(r["latency_s"]) for r in csv_rows(path, name, "L0")])
        deadline_s = defaults["deadline_s"][name]
        assert np.percentile(latency_s, 95) <= deadline_s < np.percentile(latency_s, 95) + 0.1 + 1e-9
        assert round(deadline_s * 10) == pytest.approx(deadline_s * 10, abs=1e-9)
        assert 0.95 <= np.mean(latency_s <= deadline_s) < 0.96


def test_preference_probabilities_match_the_judgements(defaults, sprout_file):
    with open(sprout_file("judgements.csv"), newline="") as f:
        prefs = [r["preferred_level"] for r in csv.DictReader(f) if r["dataset"] == "alpaca"]
    expected = [prefs.count(lv) / len(prefs) for lv in LEVELS]  # alpaca has no repeated prompts
    assert defaults["preferred_level_prob"]["alpaca"] == pytest.approx(expected, abs=1e-5)
    # the judge prefers the full answer for open-ended and maths sets, brief ones for factual sets
    for name in ("alpaca", "math"):
        assert np.argmax(defaults["preferred_level_prob"][name]) == 0
    for name in ("mmlu", "scienceqa", "triviaqa", "naturalqa"):
        assert np.argmax(defaults["preferred_level_prob"][name]) != 0
    assert sum(defaults["class_frequency"][c] for c in TASK_CLASSES) == pytest.approx(1.0, abs=1e-5)


def test_missing_l0_tokens_are_imputed_and_the_json_says_so(defaults):
    tokens = defaults["output_tokens"]
    assert "imput" in tokens["imputation"]
    for name in ("alpaca", "math", "mmlu", "naturalqa"):
        assert tokens[name]["L0"]["n_imputed"] == tokens[name]["L0"]["n_rows"] > 0
    for name in ("scienceqa", "triviaqa"):
        assert tokens[name]["L0"]["n_imputed"] == 0
    # where L0 tokens are measured, energy-based imputation recovers their mean within 2%
    for check in tokens["imputation_check_on_measured_L0"].values():
        assert check["mean_imputed"] == pytest.approx(check["mean_measured"], rel=0.02)


def test_derive_script_reproduces_the_shipped_json(defaults, shared_dir, sprout_file):
    sprout_file("requests.csv")
    spec = importlib.util.spec_from_file_location("derive_request_defaults", REPO_ROOT / "scripts" / "derive_request_defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.derive(shared_dir) == defaults


# ---------------------------------------------------------------------------------------------
# Synthetic source
# ---------------------------------------------------------------------------------------------


def test_synthetic_sample_has_the_documented_shapes_and_dtypes():
    classes = np.array([0, 1, 2, 3, 4, 5, 5])
    b = SyntheticRequests().sample(np.random.default_rng(0), classes)
    assert len(b) == 7
    assert b.task_class.dtype == np.int64 and b.task_class.tolist() == classes.tolist()
    assert b.prompt_tokens.dtype == np.int64 and b.prompt_tokens.shape == (7,)
    assert b.preferred_level.dtype == np.int64 and b.preferred_level.shape == (7,)
    for name in ("output_tokens", "inference_energy_j", "inference_latency_s"):
        assert getattr(b, name).dtype == np.float64 and getattr(b, name).shape == (7, 3)
    assert b.deadline_s.dtype == np.float64 and b.deadline_s.shape == (7,)
    assert not b.output_tokens_imputed.any()


def test_synthetic_sample_is_deterministic_under_a_seed():
    classes = np.random.default_rng(1).integers(0, 6, 1000)
    source = SyntheticRequests()
    a = source.sample(np.random.default_rng(7), classes)
    b = source.sample(np.random.default_rng(7), classes)
    c = source.sample(np.random.default_rng(8), classes)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
    np.testing.assert_array_equal(a.preferred_level, b.preferred_level)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    assert not np.array_equal(a.output_tokens, c.output_tokens)


def test_synthetic_mean_tokens_fall_from_l0_to_l1_to_l2_in_every_class():
    rng = np.random.default_rng(2)
    b = SyntheticRequests().sample(rng, np.repeat(np.arange(6), 20_000))
    for c in range(6):
        mean = b.output_tokens[b.task_class == c].mean(axis=0)
        assert mean[0] > mean[1] > mean[2], (TASK_CLASSES[c], mean)


def test_synthetic_means_track_the_data_within_10_percent(defaults):
    b = SyntheticRequests().sample(np.random.default_rng(3), np.repeat(np.arange(6), 40_000))
    for c, name in enumerate(TASK_CLASSES):
        mean = b.output_tokens[b.task_class == c].mean(axis=0)
        data = [defaults["output_tokens"][name][lv]["mean"] for lv in LEVELS]
        np.testing.assert_allclose(mean, data, rtol=0.10, err_msg=name)


def test_synthetic_always_l0_meets_the_deadline_about_95_percent_of_the_time():
    b = SyntheticRequests().sample(np.random.default_rng(4), np.repeat(np.arange(6), 40_000))
    for c, name in enumerate(TASK_CLASSES):
        m = b.task_class == c
        met = np.mean(b.inference_latency_s[m, 0] <= b.deadline_s[m])
        assert 0.93 <= met <= 0.97, (name, met)


def test_synthetic_energy_and_latency_are_per_token_figures_times_tokens(defaults):
    b = SyntheticRequests().sample(np.random.default_rng(5), np.full(50, TRIVIAQA))
    e_tok = [defaults["energy_per_output_token_j"]["triviaqa"][lv] for lv in LEVELS]
    t_tok = [defaults["latency_per_output_token_s"]["triviaqa"][lv] for lv in LEVELS]
    np.testing.assert_allclose(b.inference_energy_j, b.output_tokens * np.array(e_tok))
    np.testing.assert_allclose(b.inference_latency_s, b.output_tokens * np.array(t_tok))
    assert np.all(b.deadline_s == defaults["deadline_s"]["triviaqa"])


def test_a_request_verbose_at_l0_is_verbose_at_l1_and_l2_too():
    b = SyntheticRequests().sample(np.random.default_rng(6), np.full(5000, TASK_CLASSES.index("math")))
    for lv in (1, 2):
        order = np.lexsort((b.output_tokens[:, lv], b.output_tokens[:, 0]))
        assert np.all(np.diff(b.output_tokens[order, lv]) >= 0)
    assert np.all(b.output_tokens >= 1)


def test_lower_level_correlation_decorrelates_the_levels():
    classes = np.full(20_000, TASK_CLASSES.index("math"))
    b = SyntheticRequests(level_correlation=0.3).sample(np.random.default_rng(7), classes)
    r = np.corrcoef(np.log(b.output_tokens[:, 0]), np.log(b.output_tokens[:, 1]))[0, 1]
    assert 0.2 < r < 0.4


def test_synthetic_preferred_level_follows_the_class_probabilities(defaults):
    b = SyntheticRequests().sample(np.random.default_rng(8), np.full(60_000, TASK_CLASSES.index("scienceqa")))
    freq = np.bincount(b.preferred_level, minlength=3) / len(b)
    np.testing.assert_allclose(freq, defaults["preferred_level_prob"]["scienceqa"], atol=0.01)


def test_synthetic_prompt_lengths_follow_the_labelled_estimate(defaults):
    b = SyntheticRequests().sample(np.random.default_rng(9), np.repeat(np.arange(6), 20_000))
    for c, name in enumerate(TASK_CLASSES):
        mean = b.prompt_tokens[b.task_class == c].mean()
        assert mean == pytest.approx(defaults["prompt_tokens"][name]["mean"], rel=0.05)


def test_a_class_index_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="task_class"):
        SyntheticRequests().sample(np.random.default_rng(0), np.array([0, 6]))


# ---------------------------------------------------------------------------------------------
# Trace replay on the real data
# ---------------------------------------------------------------------------------------------


def test_trace_replay_returns_the_measured_outcome_of_a_known_prompt(trace):
    # triviaqa prompt 444 of the Sprout artifact (requests.csv), judged L0
    b = trace.prompt("triviaqa", "759d2ee8a1b32d39")
    assert len(b) == 1 and b.task_class[0] == TRIVIAQA
    np.testing.assert_array_equal(b.output_tokens[0], [27.0, 7.0, 7.0])
    np.testing.assert_allclose(b.inference_energy_j[0], np.array([0.046182, 0.011009, 0.011723]) * 3600.0)
    np.testing.assert_allclose(b.inference_latency_s[0], [0.6650, 0.1672, 0.1673])
    assert b.preferred_level[0] == 0
    assert not b.output_tokens_imputed.any()


def test_trace_imputes_missing_l0_tokens_from_energy_and_flags_them(trace, defaults):
    # alpaca prompt 483: L0 has energy 0.709538 Wh but no token count
    b = trace.prompt("alpaca", "d080d0d8fc7045a3")
    assert b.output_tokens_imputed[0].tolist() == [True, False, False]
    e_imp_j = defaults["output_tokens"]["imputation_energy_per_token_j"]["alpaca"]
    assert b.output_tokens[0, 0] == pytest.approx(round(0.709538 * 3600.0 / e_imp_j), abs=1)
    assert b.output_tokens[0, 1:].tolist() == [167.0, 123.0]
    assert b.preferred_level[0] == 1


def test_trace_keeps_every_judged_prompt_with_all_three_levels(trace):
    assert len(trace) == 11_998  # 12,012 judgements of 11,998 unique (dataset, sha1), all complete
    assert trace.class_count.tolist() == [2000, 2000, 1998, 2000, 2000, 2000]
    assert trace.n_incomplete == 0


def test_trace_sample_draws_only_the_requested_classes_deterministically(trace):
    classes = np.array([TRIVIAQA] * 500 + [0] * 500)
    a = trace.sample(np.random.default_rng(11), classes)
    b = trace.sample(np.random.default_rng(11), classes)
    assert a.task_class.tolist() == classes.tolist()
    np.testing.assert_array_equal(a.inference_energy_j, b.inference_energy_j)
    assert len(np.unique(a.inference_energy_j[:500, 0])) > 300  # with replacement, but spread out


def test_trace_always_l0_meets_the_class_deadline_about_95_percent_of_the_time(trace):
    b = trace.prompts
    met = np.mean(b.inference_latency_s[:, 0] <= b.deadline_s)
    assert 0.94 <= met <= 0.96


# ---------------------------------------------------------------------------------------------
# CSV readers on hand-made files (no shared data needed)
# ---------------------------------------------------------------------------------------------

REQUESTS_HEADER = "dataset,prompt_index,prompt_sha1,level,output_tokens,energy_wh,latency_s\n"
MINI_REQUESTS = REQUESTS_HEADER + (
    "triviaqa,0,aaaa000000000001,L0,100,0.16,2.4\n"
    "triviaqa,0,aaaa000000000001,L1,20,0.032,0.48\n"
    "triviaqa,0,aaaa000000000001,L2,10,0.016,0.24\n"
    "triviaqa,0,aaaa000000000001,7B,,0.05,0.7\n"
    "alpaca,0,bbbb000000000002,L0,,0.5,7.0\n"
    "alpaca,0,bbbb000000000002,L1,50,0.1,1.2\n"
    "alpaca,0,bbbb000000000002,L2,50,0.1,1.2\n"
    "alpaca,1,cccc000000000003,L0,,0.3,4.0\n"
    "alpaca,1,cccc000000000003,L1,30,0.05,0.7\n"
    "alpaca,5,bbbb000000000002,L0,,0.9,9.0\n"
)
MINI_JUDGEMENTS = (
    "dataset,prompt_sha1,preferred_level\n"
    "triviaqa,aaaa000000000001,L1\n"
    "alpaca,bbbb000000000002,L0\n"
    "alpaca,cccc000000000003,L2\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_trace_join_drops_incomplete_prompts_and_keeps_the_first_duplicate(tmp_path):
    trace = TraceRequests.from_csv(write(tmp_path, "r.csv", MINI_REQUESTS), write(tmp_path, "j.csv", MINI_JUDGEMENTS))
    assert len(trace) == 2 and trace.n_incomplete == 1 and trace.n_duplicate_rows == 1
    alpaca = trace.prompt("alpaca", "bbbb000000000002")
    # L0 imputed from the first L0 row: 0.5 Wh / (alpaca's 0.25 Wh per 130 tokens measured at L1+L2)
    assert alpaca.output_tokens[0].tolist() == [260.0, 50.0, 50.0]
    assert alpaca.inference_energy_j[0, 0] == pytest.approx(1800.0)
    assert alpaca.output_tokens_imputed[0].tolist() == [True, False, False]
    trivia = trace.prompt("triviaqa", "aaaa000000000001")
    assert trivia.preferred_level.tolist() == [1]
    with pytest.raises(KeyError):
        trace.prompt("alpaca", "cccc000000000003")
    with pytest.raises(ValueError, match="no prompts of class math"):
        trace.sample(np.random.default_rng(0), np.array([1]))


def test_missing_tokens_of_a_class_without_measured_l1_l2_tokens_name_their_line(tmp_path):
    text = REQUESTS_HEADER + "math,0,eeee000000000005,L0,,0.5,7.0\n"
    with pytest.raises(RequestDataError, match=r"line 2: column 'output_tokens': empty, and class math"):
        TraceRequests.from_csv(write(tmp_path, "r.csv", text), write(tmp_path, "j.csv", MINI_JUDGEMENTS))


def test_bad_energy_number_names_the_file_line_and_column(tmp_path):
    lines = MINI_REQUESTS.splitlines(keepends=True)
    lines[5] = lines[5].replace("0.5", "half")
    path = write(tmp_path, "requests.csv", "".join(lines))
    with pytest.raises(RequestDataError, match=r"requests\.csv: line 6: column 'energy_wh': 'half' is not a number"):
        read_sprout_requests(path)


def test_negative_latency_is_rejected_with_its_line(tmp_path):
    lines = MINI_REQUESTS.splitlines(keepends=True)
    lines[2] = lines[2].replace(",0.48", ",-0.48")
    with pytest.raises(RequestDataError, match=r"line 3: column 'latency_s'"):
        read_sprout_requests(write(tmp_path, "requests.csv", "".join(lines)))


def test_missing_column_is_reported_on_line_1(tmp_path):
    text = MINI_REQUESTS.replace("latency_s", "latency_ms", 1)
    with pytest.raises(RequestDataError, match=r"requests\.csv: line 1: column 'latency_s': missing"):
        read_sprout_requests(write(tmp_path, "requests.csv", text))


def test_unknown_level_and_dataset_are_rejected_with_their_line(tmp_path):
    lines = MINI_REQUESTS.splitlines(keepends=True)
    bad_level = lines[:3] + [lines[3].replace(",L2,", ",L3,")]
    with pytest.raises(RequestDataError, match=r"line 4: column 'level': 'L3'"):
        read_sprout_requests(write(tmp_path, "a.csv", "".join(bad_level)))
    bad_dataset = lines[:2] + [lines[2].replace("triviaqa", "gsm8k")]
    with pytest.raises(RequestDataError, match=r"a2\.csv: line 3: column 'dataset': 'gsm8k'"):
        read_sprout_requests(write(tmp_path, "a2.csv", "".join(bad_dataset)))


def test_short_row_is_rejected_with_its_line(tmp_path):
    text = MINI_REQUESTS + "mmlu,9,dddd\n"
    with pytest.raises(RequestDataError, match=r"line 12: row has 3 fields"):
        read_sprout_requests(write(tmp_path, "requests.csv", text))


def test_bad_judgement_level_names_the_file_and_line(tmp_path):
    text = MINI_JUDGEMENTS.replace("alpaca,cccc000000000003,L2", "alpaca,cccc000000000003,best")
    with pytest.raises(RequestDataError, match=r"judgements\.csv: line 4: column 'preferred_level': 'best'"):
        read_sprout_judgements(write(tmp_path, "judgements.csv", text))


def test_empty_file_and_missing_file_are_rejected_naming_them(tmp_path):
    with pytest.raises(RequestDataError, match=r"empty\.csv: line 1: empty file"):
        read_sprout_requests(write(tmp_path, "empty.csv", ""))
    with pytest.raises(RequestDataError, match=r"nothere\.csv: cannot read"):
        read_sprout_judgements(tmp_path / "nothere.csv")
