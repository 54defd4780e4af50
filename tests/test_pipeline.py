"""The one-command pipeline (aolo demo / reproduce) on the tiny scenario: every stage runs, the
report holds every section and plot, and its numbers match the commands run separately."""

import re

import pytest

from aolo.pipeline import DEMO, run_pipeline

pytestmark = pytest.mark.xdist_group("test_pipeline")  # one xdist worker: its module fixture runs the whole pipeline once


@pytest.fixture(scope="session")
def pipeline_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    cfg = DEMO.with_(out_dir=out, scenario="tiny", train_steps=1200, eval_every_steps=600, eval_seeds=(1001,),
                     eval_n_bs=2, replay_n_bs=1, n_lava_obs=40, energy_n_obs=40, gateway_prompts=6, gateway_max_tokens=8,
                     title="test")
    return cfg, run_pipeline(cfg)


def test_report_has_every_section_and_plot(pipeline_report):
    cfg, path = pipeline_report
    text = path.read_text()
    for heading in ("One request", "Training", "Carbon per request by policy", "Export and parity",
                    "A day through the runtime", "Actor energy", "The gateway in front of a real LLM"):
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
    snn = measure_bundle(cfg.out_dir / "bundles" / "sdrl", n_obs=cfg.energy_n_obs)
    text = path.read_text()
    loihi_row = next(line for line in text.splitlines() if line.startswith("| loihi1 | ") and "e-" in line)
    assert f"{snn.estimates['loihi1'].energy_j:.3e}" in loihi_row


KIND_WORDS = ("measured", "modelled", "estimated")
ENERGY_OR_CARBON = re.compile(r"\((J|g)\b|carbon|energy|J/decision|g/req", re.IGNORECASE)


def test_every_energy_and_carbon_figure_in_the_report_says_measured_modelled_or_estimated(pipeline_report):
    _, path = pipeline_report
    blocks = path.read_text().split("\n\n")
    checked = 0
    for i, block in enumerate(blocks):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("|") or not ENERGY_OR_CARBON.search(lines[0]):
            continue
        checked += 1
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        if "kind" in header:  # a kind per row
            k = header.index("kind")
            for row in lines[2:]:
                kind = row.strip().strip("|").split("|")[k].strip()
                assert kind.startswith(KIND_WORDS + ("not charged",)), (lines[0], row)
        else:  # one label for the table: in its header, its title (the block before) or its caption (after)
            context = " ".join([lines[0], blocks[i - 1], blocks[i + 1] if i + 1 < len(blocks) else ""])
            assert any(w in context for w in KIND_WORDS), lines[0]
    assert checked >= 8  # one request, evaluation, three replays, two energy tables, the comparison, the gateway's


def test_replay_ledgers_were_written(pipeline_report):
    cfg, _ = pipeline_report
    assert {p.name for p in (cfg.out_dir / "ledgers").glob("*.db")} == {
        "sdrl_onnx_float.db", "sdrl_lava_fixed.db", "sac_onnx_float.db"}


def test_gateway_stage_served_real_answers_and_its_ledger_matches_the_clients(pipeline_report):
    cfg, path = pipeline_report
    text = path.read_text()
    section = text.split("## The gateway in front of a real LLM", 1)[1]
    returned, ledger = re.search(r"the gateway's ledger holds ([\d.]+) g \(the sum returned to clients: ([\d.]+) g\)",
                                 section).groups()
    assert float(returned) == float(ledger) > 0
    assert (cfg.out_dir / "gateway" / "gateway_policy.db").exists()
