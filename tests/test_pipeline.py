"""The one-command pipeline (aolo demo / reproduce) on the tiny scenario: every stage runs, the
report holds every section and plot, and its numbers match the commands run separately."""

import re

import pytest

from aolo.pipeline import DEMO, run_pipeline

pytestmark = pytest.mark.xdist_group("test_pipeline")  # one xdist worker: its module fixture runs the whole pipeline once


@pytest.fixture(scope="module")
def pipeline_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    cfg = DEMO.with_(out_dir=out, scenario="tiny", train_steps=1200, eval_every_steps=600, eval_n_bs=2,
                     replay_n_bs=1, n_lava_obs=40, title="test")
    return cfg, run_pipeline(cfg)


def test_report_has_every_section_and_plot(pipeline_report):
    cfg, path = pipeline_report
    text = path.read_text()
    for heading in ("One request", "Training", "Carbon per request by policy", "Export and parity",
                    "A day through the runtime", "Actor energy"):
        assert f"## {heading}" in text
    for png in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (path.parent / png).stat().st_size > 5000
    assert "FAIL" not in text


def test_report_base_row_matches_aolo_evaluate(pipeline_report):
    from aolo.train.evaluate import evaluate_policy
    from aolo.train.policies import BasePolicy
    from aolo.train.scenario import get_scenario
    from aolo.train.simulator import ServiceModel

    cfg, path = pipeline_report
    base = evaluate_policy(BasePolicy(), ServiceModel(get_scenario(cfg.scenario)), list(cfg.eval_seeds), n_bs=cfg.eval_n_bs)
    row = next(line for line in path.read_text().splitlines() if line.startswith("| base | - |"))
    assert f"{base.carbon_mean_g():.4f}" in row


def test_report_energy_matches_aolo_energy(pipeline_report):
    from aolo.runtime.energy_report import measure_bundle

    cfg, path = pipeline_report
    snn = measure_bundle(cfg.out_dir / "bundles" / "sdrl")
    text = path.read_text()
    loihi_row = next(line for line in text.splitlines() if line.startswith("| loihi1 | ") and "e-" in line)
    assert f"{snn.estimates['loihi1'].energy_j:.3e}" in loihi_row


def test_replay_ledgers_were_written(pipeline_report):
    cfg, _ = pipeline_report
    assert {p.name for p in (cfg.out_dir / "ledgers").glob("*.db")} == {
        "sdrl_onnx_float.db", "sdrl_lava_fixed.db", "sac_onnx_float.db"}
