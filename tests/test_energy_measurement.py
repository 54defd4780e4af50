"""Measured energy: counters read through Zeus's own RAPL class from a powercap tree built in a
temp folder, the idle baseline subtracted per decision, the spread over repeats; and the reasons
given where no counter can be read (never a zero)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zeus", reason="Zeus is the measure extra (make install installs it)")

from aolo.runtime.energy_counters import CounterSearch, find_counters, rapl_counters  # noqa: E402
from aolo.runtime.energy_measure import idle_baseline, measure_batch, net_energy_j  # noqa: E402


class FakeRaplMachine:
    """A powercap tree (``intel-rapl:0`` with a DRAM subzone) whose counters advance with a fake
    clock: idle power always, plus a given energy per decide call. Zeus's ``RAPLCPU`` reads its
    files as it reads /sys/class/powercap."""

    def __init__(self, root: Path, idle_package_w: float, idle_dram_w: float) -> None:
        self.dir = root / "intel-rapl"
        self.pkg = self.dir / "intel-rapl:0"
        self.dram = self.pkg / "intel-rapl:0:0"
        for zone, name in ((self.pkg, "package-0"), (self.dram, "dram")):
            zone.mkdir(parents=True)
            (zone / "name").write_text(name + "\n")
            (zone / "max_energy_range_uj").write_text("262143328850\n")
        self.t_s = 0.0
        self.e_uj = {self.pkg: 1_000_000.0, self.dram: 500_000.0}
        self.idle_w = {self.pkg: idle_package_w, self.dram: idle_dram_w}
        self._write()

    def _write(self) -> None:
        for zone, e in self.e_uj.items():
            (zone / "energy_uj").write_text(f"{int(round(e))}\n")

    def clock(self) -> float:
        return self.t_s

    def advance(self, seconds: float, extra_package_j: float = 0.0, extra_dram_j: float = 0.0) -> None:
        self.t_s += seconds
        self.e_uj[self.pkg] += 1e6 * (self.idle_w[self.pkg] * seconds + extra_package_j)
        self.e_uj[self.dram] += 1e6 * (self.idle_w[self.dram] * seconds + extra_dram_j)
        self._write()


def test_net_energy_subtracts_idle_power_times_the_window():
    assert net_energy_j(12.0, 2.0, 5.0) == pytest.approx(2.0)
    assert net_energy_j(9.0, 2.0, 5.0) == pytest.approx(-1.0)  # below idle: reported, not clamped


def test_zeus_rapl_counters_read_a_powercap_tree_in_a_temp_folder(tmp_path):
    m = FakeRaplMachine(tmp_path, idle_package_w=20.0, idle_dram_w=3.0)
    found = rapl_counters(str(m.dir))
    assert [c.name for c in found.counters] == ["rapl:package-0", "rapl:dram-0"] and not found.reasons
    before = {c.name: c.read_j() for c in found.counters}
    m.advance(2.0)
    after = {c.name: c.read_j() for c in found.counters}
    assert after["rapl:package-0"] - before["rapl:package-0"] == pytest.approx(40.0)
    assert after["rapl:dram-0"] - before["rapl:dram-0"] == pytest.approx(6.0)
    base = idle_baseline(found.counters, 1.5, clock=m.clock, sleep=m.advance)
    assert base.power_w == pytest.approx({"rapl:package-0": 20.0, "rapl:dram-0": 3.0})
    assert base.total_w == pytest.approx(23.0) and base.seconds == pytest.approx(1.5)


def test_measured_energy_per_decision_is_the_energy_above_idle_with_its_spread(tmp_path):
    m = FakeRaplMachine(tmp_path, idle_package_w=20.0, idle_dram_w=3.0)
    counters = rapl_counters(str(m.dir)).counters
    call_s, package_j_per_decision, dram_j_per_decision = 1e-3, 2e-4, 5e-5
    calls = []

    def decide(obs: np.ndarray) -> np.ndarray:  # the machine spends a fixed energy per decision
        calls.append(len(obs))
        m.advance(call_s, package_j_per_decision * len(obs), dram_j_per_decision * len(obs))
        return np.zeros((len(obs), 2), np.float32)

    obs = np.random.default_rng(0).uniform(0, 1, (10, 15)).astype(np.float32)
    for batch in (1, 4):
        calls.clear()
        r = measure_batch(decide, obs, batch, counters, repeats=4, window_s=0.05, idle_s=0.5, clock=m.clock,
                          sleep=m.advance)
        assert r.batch == batch and r.calls == 50 and set(calls) == {batch}
        assert r.idle.power_w == pytest.approx({"rapl:package-0": 20.0, "rapl:dram-0": 3.0})
        assert r.net_j_per_decision() == pytest.approx([(package_j_per_decision + dram_j_per_decision)] * 4, rel=1e-6)
        assert r.by_counter_j() == pytest.approx({"rapl:package-0": package_j_per_decision,
                                                  "rapl:dram-0": dram_j_per_decision}, rel=1e-6)
        assert r.std_j == pytest.approx(0.0, abs=1e-9) and r.latency_s_per_decision == pytest.approx(call_s / batch)


def test_the_spread_over_repeats_is_the_sample_std_of_the_repeats(tmp_path):
    m = FakeRaplMachine(tmp_path, idle_package_w=10.0, idle_dram_w=0.0)
    counters = [c for c in rapl_counters(str(m.dir)).counters if c.name == "rapl:package-0"]
    after_idle = []  # calls since the idle window: 10 per measured window

    def idle(seconds: float) -> None:
        after_idle.append(0)
        m.advance(seconds)

    def decide(obs: np.ndarray) -> None:  # warm-up at 1e-4 J, then windows at 1, 2, 3, 4 x 1e-4 J per decision
        if after_idle:
            after_idle[0] += 1
        m.advance(1e-3, 1e-4 * (1 + (after_idle[0] - 1) // 10) if after_idle else 1e-4)

    r = measure_batch(decide, np.zeros((1, 3), np.float32), 1, counters, repeats=4, window_s=0.01, idle_s=0.1,
                      clock=m.clock, sleep=idle)
    assert r.calls == 10
    assert r.net_j_per_decision() == pytest.approx([1e-4, 2e-4, 3e-4, 4e-4], rel=1e-6)
    assert r.mean_j == pytest.approx(2.5e-4, rel=1e-6) and r.std_j == pytest.approx(np.std([1, 2, 3, 4], ddof=1) * 1e-4, rel=1e-6)
    assert (r.min_j, r.max_j) == pytest.approx((1e-4, 4e-4), rel=1e-6)


def test_a_folder_without_rapl_zones_gives_a_reason_and_no_counter(tmp_path):
    (tmp_path / "intel-rapl").mkdir()
    found = rapl_counters(str(tmp_path / "intel-rapl"))
    assert found.counters == [] and "no intel-rapl:N zone" in found.reasons[0]
    with pytest.raises(ValueError, match="no energy counter"):
        measure_batch(lambda o: o, np.zeros((1, 2), np.float32), 1, found.counters)


def test_this_machine_says_why_each_counter_is_missing():
    found = find_counters()
    if found.counters:
        pytest.skip(f"this machine has energy counters: {found.note()}")
    assert found.reasons and found.note().startswith("No energy counter readable here (")
    assert any(r.startswith("RAPL:") for r in found.reasons) and any(r.lower().startswith(("nvml", "amdsmi"))
                                                                       for r in found.reasons)
    if not Path("/sys/class/powercap").exists():
        assert "RAPL: no /sys/class/powercap in this container" in found.reasons


def test_counter_search_note_names_counters_and_reasons():
    assert CounterSearch(reasons=["RAPL: x"]).note() == "No energy counter readable here (RAPL: x)."
