"""The decide/record cycle: observations as in training, fallback on backend failure, ledger rows
priced by the one carbon model."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from aolo.hw_profiles import LLMServerProfile, RadioProfile, load_profile
from aolo.runtime.backends import make_backend
from aolo.runtime.bundle import PolicyBundle
from aolo.runtime.carbon import CarbonParams, request_carbon
from aolo.runtime.grid import HOUR, load_grid, trailing_minmax_norm
from aolo.runtime.ledger import Ledger
from aolo.runtime.policy_io import TASK_CLASSES, action_to_decision, build_observation
from aolo.runtime.service import (Outcome, PolicyService, SafePolicy, ServiceError, Telemetry,
                                  UnknownRequestError)

from test_bundle import make_bundle, random_ann_spec

SERVER = load_profile("llama2-13b-a100", LLMServerProfile)
RADIO = load_profile("macro", RadioProfile)
GRID = load_grid("US-TEX-ERCO")


class RaisingBackend:
    """A backend (the protocol, not a stand-in for a shipped one) whose hardware has failed."""

    name, precision, thread_safe, energy_per_decision_j = "broken", "float", True, 1e-6

    def decide(self, obs: np.ndarray) -> np.ndarray:
        raise RuntimeError("accelerator lost")

    def close(self) -> None:
        pass


@pytest.fixture()
def bundle(tmp_path) -> PolicyBundle:
    return PolicyBundle.load(make_bundle(tmp_path, random_ann_spec(seed=4)))


@pytest.fixture()
def service(tmp_path, bundle):
    svc = PolicyService(bundle, make_backend("reference", bundle), Ledger(tmp_path / "ledger.db"), SERVER, RADIO, GRID)
    yield svc
    svc.close()


def telemetry(request_id: str = "r1", hour: int = 18, **kw) -> Telemetry:
    t = GRID.start_utc + hour * HOUR + timedelta(minutes=17)
    fields = dict(request_id=request_id, timestamp_utc=t, task_class="math", prompt_tokens=64, deadline_s=12.0,
                  gain_db=-105.0, active_sessions=6)
    fields.update(kw)
    return Telemetry(**fields)


def outcome(request_id: str = "r1", **kw) -> Outcome:
    fields = dict(request_id=request_id, output_tokens=180, airtime_s=0.02, harq_tries=1, outage=False)
    fields.update(kw)
    return Outcome(**fields)


# ---------------------------------------------------------------------------------------------
# observations
# ---------------------------------------------------------------------------------------------


def test_observation_is_built_as_in_training_from_the_grid_at_the_request_hour(service):
    hours = [0, 18, 200, 5000]
    batch = [telemetry(f"r{h}", hour=h, task_class=TASK_CLASSES[h % 6], active_sessions=h % 9) for h in hours]
    obs, used = service.observe(batch)
    norm = trailing_minmax_norm(GRID.ci_g_per_kwh)
    expected = build_observation(
        ci_norm=norm[hours], ci_g_per_kwh=GRID.ci_g_per_kwh[hours],
        hour_of_day_utc=(np.array(hours) + GRID.start_utc.hour) % 24, task_class=[h % 6 for h in hours],
        prompt_tokens=[64] * 4, deadline_s=[12.0] * 4, gain_db=[-105.0] * 4,
        active_sessions=[h % 9 for h in hours],
        quality_slack=[0.1 * norm[h] for h in hours])  # empty window: slack = 1 - (1 - xi * ci_norm) * 1
    np.testing.assert_allclose(obs, expected, rtol=0, atol=1e-6)
    assert [u[0] for u in used] == list(GRID.ci_g_per_kwh[hours])


def test_ci_norm_of_every_trace_hour_equals_trailing_minmax_norm(service):
    norm = trailing_minmax_norm(GRID.ci_g_per_kwh)
    hours = np.arange(0, GRID.n_hours, 97)
    got = [service.observe([telemetry(hour=int(h))])[1][0][1] for h in hours]
    np.testing.assert_allclose(got, norm[hours], rtol=0, atol=1e-12)


def test_given_intensity_and_slack_are_used_as_they_are(service):
    obs, used = service.observe([telemetry(ci_g_per_kwh=250.0, ci_norm=0.3, quality_slack=-0.2)])
    assert used == [(250.0, 0.3)]
    assert obs[0, 0] == pytest.approx(0.3) and obs[0, 1] == pytest.approx(0.5) and obs[0, -1] == pytest.approx(-0.2)


def test_given_intensity_alone_is_normalised_against_the_trailing_week(service):
    h = 500
    window = GRID.ci_g_per_kwh[h - 167:h + 1]
    lo, hi = window.min(), window.max()
    ci = (lo + hi) / 2
    assert service.observe([telemetry(hour=h, ci_g_per_kwh=ci)])[1][0][1] == pytest.approx(0.5)
    above = service.observe([telemetry(hour=h, ci_g_per_kwh=hi + 100.0)])[1][0][1]
    assert above == 1.0  # a value above the week's max is the new max


def test_timestamp_after_the_trace_wraps_by_whole_days(service):
    late = telemetry(timestamp_utc=GRID.start_utc + (GRID.n_hours + 18) * HOUR)
    assert service.observe([late])[1] == service.observe([telemetry(hour=18)])[1]


def test_quality_slack_follows_the_recorded_quality_window(service):
    for i in range(4):
        service.decide(telemetry(f"q{i}"))
        service.record(outcome(f"q{i}", quality=float(i % 2), quality_base=1.0))  # rolling quality 0.5, base 1
    obs, used = service.observe([telemetry("next", hour=18)])
    ci_norm = used[0][1]
    assert obs[0, -1] == pytest.approx(0.5 - (1 - 0.1 * ci_norm) * 1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------------------------


def test_decision_maps_the_actor_action_to_level_and_power(service, bundle):
    tel = telemetry()
    d = service.decide(tel)
    action = bundle.spec.forward(service.observe([tel])[0])
    level, power = action_to_decision(action, RADIO.si("p_min"), RADIO.si("p_max"))
    assert (d.level_index, d.level) == (int(level[0]), f"L{int(level[0])}")
    assert d.tx_power_w == pytest.approx(float(power[0]))
    assert (d.backend, d.precision, d.fallback, d.actor_energy_j, d.max_new_tokens) == ("reference", "float", False,
                                                                                        0.0, None)


def test_batch_decide_answers_in_order_with_one_decision_each(service):
    batch = [telemetry(f"b{i}", gain_db=-80.0 - 5 * i) for i in range(20)]
    decisions = service.decide(batch)
    assert [d.request_id for d in decisions] == [f"b{i}" for i in range(20)]
    assert all(RADIO.si("p_min") <= d.tx_power_w <= RADIO.si("p_max") for d in decisions)
    assert service.pending_count == 20


def test_backend_failure_falls_back_to_l0_at_p_max_and_is_counted(tmp_path, bundle, caplog):
    svc = PolicyService(bundle, RaisingBackend(), Ledger(tmp_path / "l.db"), SERVER, RADIO, GRID)
    decisions = svc.decide([telemetry("a"), telemetry("b")])
    assert [(d.level, d.tx_power_w, d.fallback, d.actor_energy_j) for d in decisions] == [("L0", 20.0, True, 0.0)] * 2
    assert svc.fallback_count == 1
    assert "accelerator lost" in caplog.text and "safe policy answers" in caplog.text
    row = svc.record(outcome("a"))
    assert row.fallback is True and row.backend == "broken"
    svc.close()


def test_configured_safe_policy_answers_instead_of_the_default(tmp_path, bundle):
    svc = PolicyService(bundle, RaisingBackend(), Ledger(tmp_path / "l.db"), SERVER, RADIO, GRID,
                        safe_policy=SafePolicy(level_index=1, tx_power_w=5.0))
    d = svc.decide(telemetry())
    assert (d.level, d.tx_power_w, d.fallback) == ("L1", 5.0, True)
    svc.close()


def test_safe_policy_outside_the_radio_range_is_refused(tmp_path, bundle):
    with pytest.raises(ServiceError, match=r"safe policy: 50.0 W is outside \[0.2, 20.0\] W"):
        PolicyService(bundle, RaisingBackend(), Ledger(tmp_path / "l.db"), SERVER, RADIO, GRID,
                      safe_policy=SafePolicy(tx_power_w=50.0))


def test_a_request_id_waiting_for_its_outcome_cannot_be_decided_again(service):
    service.decide(telemetry("dup"))
    with pytest.raises(ServiceError, match="already decided") as e:
        service.decide(telemetry("dup"))
    assert e.value.field == "request_id"
    with pytest.raises(ServiceError, match="repeated within the batch"):
        service.decide([telemetry("x"), telemetry("x")])


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------


def test_record_fills_inference_energy_and_latency_from_the_server_profile(service):
    service.decide(telemetry(prompt_tokens=64))
    row = service.record(outcome(output_tokens=180))
    # llama2-13b-a100: e_tok 1.6387 mWh, e_pre 0.0145 mWh, t_tok 23.77 ms, t_pre 0.21 ms; 1 mWh = 3.6 J
    assert row.inference_energy_j == pytest.approx((0.0145 * 64 + 1.6387 * 180) * 3.6)
    assert row.inference_latency_s == pytest.approx(0.21e-3 * 64 + 23.77e-3 * 180)


def test_record_prices_the_request_with_the_carbon_model_and_commits_it(service):
    d = service.decide(telemetry(hour=18, active_sessions=6))
    row = service.record(outcome(inference_energy_j=900.0, inference_latency_s=4.0, airtime_s=0.03))
    ci = float(GRID.ci_g_per_kwh[18])
    b = request_carbon(CarbonParams.from_profiles(SERVER, RADIO), ci, 900.0, 4.0, d.tx_power_w, 0.03, 6, 0.0)
    for comp in ("inference_g", "radio_g", "actor_g", "embodied_gpu_g", "embodied_bs_g", "total_g",
                 "radio_dynamic_energy_j", "radio_static_energy_j", "session_s"):
        assert getattr(row, comp) == pytest.approx(float(getattr(b, comp))), comp
    # hand check of two terms: PUE 1.58 x 900 J at ci; EARTH P_0 130 W x 4.03 s / 6 sessions
    assert row.inference_g == pytest.approx(ci * 1.58 * 900.0 / 3.6e6)
    assert row.radio_static_energy_j == pytest.approx(130.0 * 4.03 / 6)
    assert (row.ci_g_per_kwh, row.level, row.tx_power_w) == (ci, d.level, d.tx_power_w)
    assert service.ledger.get("r1") == row
    assert (row.bundle_sha256, row.radio_profile, row.server_profile, row.grid_zone) == (
        service.bundle.sha256, "macro", "llama2-13b-a100", "US-TEX-ERCO")


def test_reported_power_replaces_the_decided_one(service):
    service.decide(telemetry())
    assert service.record(outcome(tx_power_w=3.5)).tx_power_w == 3.5


def test_outcome_for_an_undecided_request_is_refused(service):
    with pytest.raises(UnknownRequestError, match="request_id 'ghost': no decision is waiting"):
        service.record(outcome("ghost"))


def test_an_outcome_is_recorded_once(service):
    service.decide(telemetry())
    service.record(outcome())
    with pytest.raises(UnknownRequestError):
        service.record(outcome())
    assert service.ledger.count() == 1


def test_quality_without_its_base_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="field 'quality_base': quality and quality_base come together"):
        outcome(quality=1.0)


def test_telemetry_without_a_utc_offset_is_refused():
    with pytest.raises(ValueError, match="timestamp_utc"):
        telemetry(timestamp_utc=datetime(2024, 6, 1, 12))


def test_expired_pending_decisions_are_dropped_oldest_first(tmp_path, bundle):
    svc = PolicyService(bundle, make_backend("reference", bundle), Ledger(tmp_path / "l.db"), SERVER, RADIO, GRID,
                        max_pending=3)
    svc.decide([telemetry(f"p{i}") for i in range(5)])
    assert (svc.pending_count, svc.dropped_pending_count) == (3, 2)
    with pytest.raises(UnknownRequestError):
        svc.record(outcome("p0"))
    svc.record(outcome("p4"))
    svc.close()


def test_serving_modules_import_and_decide_without_torch(tmp_path):
    block = ("import sys, importlib.abc\n"
             "class Block(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'torch' or name.startswith('torch.'):\n"
             "            raise ImportError('torch is blocked in this test')\n"
             "sys.meta_path.insert(0, Block())\n")
    path = make_bundle(tmp_path, random_ann_spec(), with_onnx=True)
    code = block + (
        "import numpy as np\n"
        "import aolo.runtime.server, aolo.runtime.service, aolo.runtime.ledger, aolo.runtime.bundle\n"
        "from aolo.runtime.backends import make_backend\n"
        "from aolo.runtime.bundle import PolicyBundle\n"
        f"b = PolicyBundle.load({str(path)!r})\n"
        "print(make_backend('onnx', b).decide(np.zeros((1, 15), np.float32)).shape, 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1, 2) False"


def test_utc_timestamps_in_other_offsets_are_the_same_instant(service):
    t = GRID.start_utc + 18 * HOUR
    a = service.observe([telemetry(timestamp_utc=t)])
    b = service.observe([telemetry(timestamp_utc=t.astimezone(timezone(timedelta(hours=-6))))])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.slow
def test_lava_backend_serves_concurrent_decides_one_at_a_time(tmp_path):
    pytest.importorskip("aolo.runtime.backends.lava")
    from concurrent.futures import ThreadPoolExecutor

    from test_bundle import random_snn_spec

    bundle = PolicyBundle.load(make_bundle(tmp_path, random_snn_spec(seed=6)))
    svc = PolicyService(bundle, make_backend("lava", bundle), Ledger(tmp_path / "l.db"), SERVER, RADIO, GRID)
    ref = make_backend("reference", bundle)
    try:
        with ThreadPoolExecutor(4) as pool:
            decisions = list(pool.map(lambda i: svc.decide(telemetry(f"l{i}", gain_db=-70.0 - 3 * i)), range(12)))
        assert not any(d.fallback for d in decisions)
        for i, d in enumerate(decisions):
            obs, _ = svc.observe([telemetry(f"l{i}", gain_db=-70.0 - 3 * i)])
            level, power = action_to_decision(ref.decide(obs), RADIO.si("p_min"), RADIO.si("p_max"))
            assert (d.level_index, d.tx_power_w) == (int(level[0]), pytest.approx(float(power[0]), abs=1e-4))
    finally:
        svc.close()
