"""aolo replay: a day through the real runtime (service, backend, SQLite ledger) reports the same
carbon as aolo evaluate for the same policy and seed, actor energy included."""

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from aolo.cli import app
from aolo.hw_profiles import RadioProfile, load_profile
from aolo.runtime.bundle import ActionSpec, write_bundle
from aolo.runtime.energy import count_ops, op_counts_to_dict
from aolo.runtime.fixed_point import quantize_actor, save_fixed_point
from aolo.runtime.policy_io import OBS_DIM
from aolo.train.actor_export import onnx_model_from_spec
from aolo.train.evaluate import COMPONENTS
from aolo.train.replay import replay
from aolo.train.scenario import get_scenario
from test_nir_export import random_snn


@pytest.fixture(scope="module")
def snn_bundle(tmp_path_factory):
    spec = random_snn(seed=4, obs_dim=OBS_DIM, pop=4, hidden=(24,), act_dim=2, pop_out=5)
    tmp = tmp_path_factory.mktemp("art")
    onnx.save(onnx_model_from_spec(spec), tmp / "actor.onnx")
    save_fixed_point(quantize_actor(spec), tmp / "lava_fixed.npz")
    obs = np.random.default_rng(0).uniform(0, 1, (200, OBS_DIM)).astype(np.float32)
    return write_bundle(tmp_path_factory.mktemp("b") / "snn", spec,
                        {"onnx": tmp / "actor.onnx", "lava_fixed": tmp / "lava_fixed.npz"}, algo="sdrl",
                        action=ActionSpec.from_radio_profile(load_profile("macro", RadioProfile)),
                        op_counts=op_counts_to_dict(count_ops(spec, obs)))


# Lava decides one observation at a time (about 25 ms each here, its processes busy on both cores),
# so it replays one base station's day; ONNX replays two, the service's several-station path
@pytest.mark.parametrize("backend, n_bs", [("onnx", 2), ("lava", 1)])
def test_replay_totals_equal_evaluate_totals(snn_bundle, tmp_path, backend, n_bs):
    r = replay(snn_bundle, get_scenario("tiny"), seed=1001, ledger_path=tmp_path / "l.db", backend=backend, n_bs=n_bs)
    ev = r.evaluation.per_seed[0]
    assert r.ledger_totals["count"] == ev.n_requests > 250 * n_bs  # a day: about 420 requests per station
    for c in COMPONENTS + ("total_g",):
        assert r.ledger_totals["sum"][c] == pytest.approx(ev.carbon_sum_g[c], rel=1e-9), c
    # the ledger charges the backend's hardware for every decision
    assert r.ledger_totals["sum"]["actor_energy_j"] == pytest.approx(ev.n_requests * r.actor_energy_j, rel=1e-9)
    assert r.actor_hardware == ("loihi2" if backend == "lava" else "server-cpu")
    assert r.ledger_totals["sum"]["actor_g"] > 0 and r.fallbacks == 0
    # a synthetic day's inference energy is the server profile's model, not a measurement
    n = r.ledger_totals["count"]
    assert r.ledger_totals["kinds"] == {"inference": {"modelled": n}, "radio": {"modelled": n},
                                        "actor": {"estimated": n}}


def test_replay_refuses_to_overwrite_a_ledger(snn_bundle, tmp_path):
    (tmp_path / "l.db").write_text("")
    with pytest.raises(FileExistsError, match="exists already"):
        replay(snn_bundle, get_scenario("tiny"), seed=1, ledger_path=tmp_path / "l.db")


def test_replay_command_prints_the_ledger_report(snn_bundle, tmp_path):
    res = CliRunner().invoke(app, ["replay", str(snn_bundle), "--scenario", "tiny", "--ledger", str(tmp_path / "c.db")])
    assert res.exit_code == 0, res.output
    assert "ledger total" in res.output and "total_g" in res.output
    bad = CliRunner().invoke(app, ["replay", str(tmp_path / "nope"), "--ledger", str(tmp_path / "d.db")])
    assert bad.exit_code == 2 and "error:" in bad.output
