"""One observation contract: the training env, the evaluator and the base-station service build
the same vector for the same request, out-of-range inputs clipped the same way, and the docs, the
Gymnasium space and the bundle manifest come from the one table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aolo.hw_profiles import LLMServerProfile, RadioProfile, load_profile
from aolo.runtime.backends import make_backend
from aolo.runtime.bundle import ObservationSpec, PolicyBundle
from aolo.runtime.grid import HOUR
from aolo.runtime.ledger import Ledger
from aolo.runtime.policy_io import (OBS_FIELDS, OBS_HIGH, OBS_LOW, OBSERVATION, TASK_CLASSES, build_observation,
                                    observation_table_markdown, quality_slack)
from aolo.runtime.service import PolicyService, Telemetry
from aolo.train.env import LLMServiceEnv
from aolo.train.evaluate import run_seed
from aolo.train.policies import BasePolicy
from aolo.train.scenario import get_scenario
from aolo.train.simulator import RequestContext, ServiceModel

from test_bundle import edit_manifest, make_bundle, random_ann_spec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "model.md"


@pytest.fixture(scope="module")
def crowded_model() -> ServiceModel:
    """The tiny scenario with ~400 sessions per BS: sessions_scaled is ~20, far above its bound 10."""
    return ServiceModel(get_scenario("tiny", background_sessions=400.0))


class RecordingBase(BasePolicy):
    """BASE that keeps the contexts and observations the evaluator hands it (a test's policy)."""

    def reset(self, sim, seed: int) -> None:
        super().reset(sim, seed)
        self.seen: list[tuple[RequestContext, np.ndarray]] = []

    def decide(self, ctx: RequestContext, obs: np.ndarray):
        self.seen.append((ctx, obs.copy()))
        return super().decide(ctx, obs)


def _service(tmp_path, model: ServiceModel) -> PolicyService:
    bundle = PolicyBundle.load(make_bundle(tmp_path, random_ann_spec(seed=4)))
    return PolicyService(bundle, make_backend("reference", bundle), Ledger(tmp_path / "ledger.db"),
                         load_profile(model.scenario.server_profile, LLMServerProfile),
                         load_profile(model.scenario.radio_profile, RadioProfile), model.grid)


def _telemetry(model: ServiceModel, ctx: RequestContext, b: int) -> Telemetry:
    """What a base station would send for BS b's current request, intensity and slack included."""
    return Telemetry(
        request_id=f"bs{b}-{int(ctx.hour_index[b])}-{float(ctx.arrival_s[b])}",
        timestamp_utc=model.grid.start_utc + int(ctx.hour_index[b]) * HOUR,
        task_class=TASK_CLASSES[int(ctx.task_class[b])], prompt_tokens=int(ctx.prompt_tokens[b]),
        deadline_s=float(ctx.deadline_s[b]), gain_db=float(ctx.gain_db[b]),
        active_sessions=int(ctx.active_sessions[b]), ci_g_per_kwh=float(ctx.ci_g_per_kwh[b]),
        ci_norm=float(ctx.ci_norm[b]), quality_slack=float(ctx.quality_slack[b]))


def test_env_evaluator_and_service_give_the_same_vector_including_out_of_range_inputs(tmp_path, crowded_model):
    env = LLMServiceEnv(crowded_model.scenario, model=crowded_model)
    env_obs, _ = env.reset(seed=3)
    env_obs = [env_obs] + [env.step(np.array([0.0, 0.5], np.float32))[0] for _ in range(20)]
    recorder = RecordingBase()
    run_seed(recorder, crowded_model, seed=501, n_bs=2)
    service = _service(tmp_path, crowded_model)
    try:
        # the env: its observation is the service's for the request it is about to serve
        env2 = LLMServiceEnv(crowded_model.scenario, model=crowded_model)
        obs, _ = env2.reset(seed=3)
        for step in range(20):
            ctx = env2.sim.context
            got, _ = service.observe([_telemetry(crowded_model, ctx, 0)])
            np.testing.assert_array_equal(got[0], obs, err_msg=f"env step {step}")
            np.testing.assert_array_equal(obs, env_obs[step])
            obs = env2.step(np.array([0.0, 0.5], np.float32))[0]
        # the evaluator: what policies receive, for both BSs, over the day's first 50 requests
        for ctx, seen in recorder.seen[:50]:
            got, _ = service.observe([_telemetry(crowded_model, ctx, b) for b in range(2)])
            np.testing.assert_array_equal(got, seen)
    finally:
        service.close()
    sessions = OBS_FIELDS.index("sessions_scaled")
    raw = np.concatenate([ctx.active_sessions for ctx, _ in recorder.seen[:50]]) / 20.0
    assert raw.max() > OBS_HIGH[sessions]  # the inputs were out of range ...
    seen = np.concatenate([obs for _, obs in recorder.seen])
    assert seen[:, sessions].max() == OBS_HIGH[sessions]  # ... and everybody clipped them to the bound
    assert np.all(seen >= OBS_LOW) and np.all(seen <= OBS_HIGH)


def test_every_entry_is_clipped_to_its_bounds():
    n = 4
    big = dict(ci_norm=np.full(n, 3.0), ci_g_per_kwh=np.full(n, 1e6), hour_of_day_utc=np.arange(n) * 6.0,
               task_class=np.arange(n), prompt_tokens=np.full(n, 1e5), deadline_s=np.full(n, 1e4),
               gain_db=np.full(n, 400.0), active_sessions=np.full(n, 1e4), quality_slack=np.full(n, 5.0))
    np.testing.assert_array_equal(build_observation(**big)[:, [0, 1, 10, 11, 12, 13, 14]],
                                  np.tile(OBS_HIGH[[0, 1, 10, 11, 12, 13, 14]], (n, 1)))
    small = dict(big, ci_norm=np.full(n, -1.0), ci_g_per_kwh=np.full(n, -5.0), prompt_tokens=np.full(n, -1.0),
                 deadline_s=np.full(n, -1.0), gain_db=np.full(n, -500.0), active_sessions=np.full(n, -3.0),
                 quality_slack=np.full(n, -5.0))
    np.testing.assert_array_equal(build_observation(**small)[:, [0, 1, 10, 11, 12, 13, 14]],
                                  np.tile(OBS_LOW[[0, 1, 10, 11, 12, 13, 14]], (n, 1)))


def test_in_range_inputs_are_scaled_as_the_table_says():
    obs = build_observation(ci_norm=np.array([0.25]), ci_g_per_kwh=np.array([400.0]), hour_of_day_utc=np.array([6.0]),
                            task_class=np.array([2]), prompt_tokens=np.array([512.0]), deadline_s=np.array([15.0]),
                            gain_db=np.array([-100.0]), active_sessions=np.array([10.0]),
                            quality_slack=np.array([-0.05]))[0]
    expected = [0.25, 0.8, 1.0, 0.0, 0, 0, 1, 0, 0, 0, 2.0, 0.5, 1.0, 0.5, -0.05]
    np.testing.assert_allclose(obs, np.array(expected, np.float32), atol=1e-7)


def test_the_sliding_floor_and_slack_are_one_function():
    # floor = (1 - 0.1 * 0.5) * 0.8 = 0.76; slack = 0.7 - 0.76
    assert quality_slack(0.7, 0.8, 0.5, 0.1) == pytest.approx(-0.06)
    assert quality_slack(5.0, 0.0, 0.0, 0.1) == 1.0


def test_env_space_docs_and_manifest_come_from_the_one_table():
    env = LLMServiceEnv("tiny")
    np.testing.assert_array_equal(env.observation_space.low, OBS_LOW)
    np.testing.assert_array_equal(env.observation_space.high, OBS_HIGH)
    assert observation_table_markdown() in DOCS.read_text(), \
        "docs/model.md: the observation table differs from policy_io.observation_table_markdown()"
    spec = ObservationSpec.default()
    assert [(f.name, f.input, f.scale, f.low, f.high) for f in spec.fields] == \
        [(f.name, f.input, f.scale, f.low, f.high) for f in OBSERVATION]


def test_service_refuses_a_bundle_with_another_observation_contract(tmp_path):
    from aolo.runtime.service import ServiceError

    def rescale_prompt(manifest: dict) -> None:
        for f in manifest["observation"]["fields"]:
            if f["name"] == "prompt_tokens_scaled":
                f["scale"] = 512.0

    path = make_bundle(tmp_path, random_ann_spec(seed=4))
    edit_manifest(path, rescale_prompt)
    bundle = PolicyBundle.load(path)
    with pytest.raises(ServiceError, match="observation contract"):
        PolicyService(bundle, make_backend("reference", bundle), Ledger(tmp_path / "l.db"),
                      load_profile("llama2-13b-a100", LLMServerProfile), load_profile("macro", RadioProfile),
                      ServiceModel(get_scenario("tiny")).grid)
