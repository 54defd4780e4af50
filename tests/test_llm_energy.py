"""LLM energy at the gateway: a GPU counter's energy over each request's window shared among the
requests in flight by their tokens (aolo.runtime.llm_energy), with a counter that stands in for
NVML: a constant draw over a clock the test moves."""

from __future__ import annotations

import pytest

from aolo.runtime.llm_energy import TokenShareMeter, open_llm_meter


class ConstantDrawGpu:
    """A GPU that draws ``power_w`` all the time; its counter is power x the test's clock."""

    name = "fake:gpu0"
    domain = "gpu"
    where = "a constant-draw GPU"

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w
        self.t_s = 0.0

    def clock(self) -> float:
        return self.t_s

    def read_j(self) -> float:
        return self.power_w * self.t_s


def test_a_lone_request_is_charged_its_whole_window():
    gpu = ConstantDrawGpu(100.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    gpu.t_s = 3.0
    meter.start("a")
    gpu.t_s = 5.5
    e = meter.finish("a", 40)
    assert e.energy_j == pytest.approx(250.0) and e.window_energy_j == pytest.approx(250.0)
    assert e.window_s == pytest.approx(2.5) and e.max_concurrent == 1 and e.kind == "measured"
    assert meter.in_flight == 0


def test_overlapping_plain_answers_share_by_tokens_at_the_finishing_rate():
    # A runs 0-10 s with 100 tokens, B 5-15 s with 50 tokens, 100 W throughout.
    gpu = ConstantDrawGpu(100.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    meter.start("A")
    gpu.t_s = 5.0
    meter.start("B")
    gpu.t_s = 10.0
    a = meter.finish("A", 100)
    # 0-5 s: A alone, 500 J. 5-10 s: A made 50 tokens (its 100 evenly over 10 s); B, still running
    # and unseen, is taken at A's rate (10 tokens/s): 50. A's half of 500 J.
    assert a.energy_j == pytest.approx(500.0 + 250.0) and a.max_concurrent == 2
    gpu.t_s = 15.0
    b = meter.finish("B", 50)
    # 5-10 s: B 25 tokens (50 over 10 s) against A's 50: a third of 500 J. 10-15 s: B alone, 500 J.
    assert b.energy_j == pytest.approx(500.0 / 3 + 500.0) and b.window_energy_j == pytest.approx(1000.0)


def test_streamed_answers_share_each_segment_by_their_chunks_and_conserve_the_energy():
    gpu = ConstantDrawGpu(200.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    meter.start("A")
    for t in (1.0, 2.0, 3.0):  # A alone: 3 chunks
        gpu.t_s = t
        meter.tokens("A")
    gpu.t_s = 4.0
    meter.start("B")
    for t in (5.0, 6.0):  # both stream: A 2 chunks, B 6 chunks
        gpu.t_s = t
        meter.tokens("A")
        meter.tokens("B", 3)
    gpu.t_s = 7.0
    a = meter.finish("A", 5)
    gpu.t_s = 8.0
    meter.tokens("B", 2)
    gpu.t_s = 9.0
    b = meter.finish("B", 8)
    # 0-4 s: A alone, 800 J. 4-7 s: 600 J split 2:6 by chunks. 7-9 s: B alone, 400 J.
    assert a.energy_j == pytest.approx(800.0 + 600.0 * 2 / 8)
    assert b.energy_j == pytest.approx(600.0 * 6 / 8 + 400.0)
    assert a.energy_j + b.energy_j == pytest.approx(gpu.read_j())  # every joule of the windows, once


def test_usage_counts_scale_a_streamed_profile():
    gpu = ConstantDrawGpu(100.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    meter.start("A")
    meter.start("B")
    gpu.t_s = 1.0
    meter.tokens("A")  # one chunk each, but A's usage says 30 tokens and B's 10
    meter.tokens("B")
    gpu.t_s = 2.0
    b = meter.finish("B", 10)
    a = meter.finish("A", 30)
    assert b.energy_j == pytest.approx(200.0 * 10 / 11)  # B: its 10 against A's 1 chunk seen so far
    assert a.energy_j == pytest.approx(200.0 * 30 / 40)  # A: its 30 against B's 10 (finished, known)


def test_a_cancelled_answer_leaves_its_share_to_the_others_and_is_never_billed():
    gpu = ConstantDrawGpu(100.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    meter.start("A")
    meter.start("failed")
    gpu.t_s = 2.0
    meter.cancel("failed")
    assert meter.finish("A", 7).energy_j == pytest.approx(200.0)
    with pytest.raises(KeyError):
        meter.finish("failed", 3)
    with pytest.raises(KeyError):
        meter.finish("A", 7)  # once only


def test_a_request_without_tokens_gets_nothing_beside_one_that_has_them():
    gpu = ConstantDrawGpu(100.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    meter.start("A")
    meter.start("B")
    gpu.t_s = 1.0
    a = meter.finish("A", 0)  # no tokens: B, unseen, runs at A's rate (0): an even split
    b = meter.finish("B", 5)
    assert a.energy_j == pytest.approx(50.0) and b.energy_j == pytest.approx(100.0)


def test_the_meter_forgets_what_no_request_in_flight_can_reach():
    gpu = ConstantDrawGpu(10.0)
    meter = TokenShareMeter([gpu], clock=gpu.clock)
    for i in range(50):
        meter.start(f"r{i}")
        gpu.t_s += 1.0
        if i:
            meter.finish(f"r{i - 1}", 5)
    assert len(meter._marks) <= 4 and len(meter._closed) <= 1  # bounded, not one mark per request served
    meter.finish("r49", 5)
    assert meter._marks == [] and meter._closed == []


def test_a_request_id_in_flight_twice_is_refused():
    meter = TokenShareMeter([ConstantDrawGpu(1.0)])
    meter.start("a")
    with pytest.raises(ValueError, match="already being measured"):
        meter.start("a")


def test_without_a_gpu_counter_the_gateway_models_llm_energy_and_says_why():
    meter, note = open_llm_meter("http://127.0.0.1:8000/v1", "model")
    assert meter is None and note.startswith("modelled:")
    meter, note = open_llm_meter("http://llm.example.org/v1", "auto")
    assert meter is None and "not on this machine's loopback" in note
    meter, note = open_llm_meter(None, "auto")
    assert meter is None and note == "modelled: no upstream"
    meter, note = open_llm_meter("http://localhost:8000/v1", "auto")
    if meter is not None:
        pytest.skip(f"this machine has a GPU counter: {note}")
    assert note.startswith("modelled: no GPU energy counter readable (") and "NVML" in note.upper()
    with pytest.raises(ValueError, match="measure: no GPU energy counter readable"):
        open_llm_meter("http://127.0.0.1:8000/v1", "measure")
