"""The carbon ledger: WAL + synchronous=FULL, duplicates refused, totals, concurrent writers, and
every acknowledged outcome still there after the server is killed with SIGKILL."""

from __future__ import annotations

import http.client
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aolo.runtime.ledger import COLUMNS, DuplicateRequestError, Ledger, LedgerError, LedgerRow, PendingRecord, format_utc

from test_bundle import make_bundle, random_ann_spec
from test_gateway_sidecar import Client, outcome, telemetry

REPO = Path(__file__).resolve().parents[1]


def row(request_id: str, timestamp_utc: str = "2024-06-01T12:00:00.000000Z", **kw) -> LedgerRow:
    """A ledger row with simple numbers: carbon components 1, 2, 3, 4, 5 g (total 15 g)."""
    fields = dict(
        request_id=request_id, timestamp_utc=timestamp_utc, decided_utc=timestamp_utc, recorded_utc=timestamp_utc,
        task_class="math", prompt_tokens=64, output_tokens=200, level="L1", level_index=1, tx_power_w=10.0,
        airtime_s=0.02, harq_tries=1, outage=False, active_sessions=5, ci_g_per_kwh=400.0, ci_norm=0.5,
        inference_energy_j=1000.0, inference_latency_s=5.0, radio_dynamic_energy_j=1.0, radio_static_energy_j=100.0,
        actor_energy_j=0.001, session_s=5.02, inference_g=1.0, radio_g=2.0, actor_g=3.0, embodied_gpu_g=4.0,
        embodied_bs_g=5.0, total_g=15.0, quality=None, quality_base=None, fallback=False, backend="onnx",
        precision="float", bundle_sha256="0" * 64, server_profile="llama2-13b-a100", server_profile_version="1.0.0",
        radio_profile="macro", radio_profile_version="1.0.0", grid_zone="US-TEX-ERCO")
    fields.update(kw)
    return LedgerRow(**fields)


@pytest.fixture()
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


# ---------------------------------------------------------------------------------------------
# the ledger alone
# ---------------------------------------------------------------------------------------------


def test_ledger_runs_in_wal_mode_with_synchronous_full(ledger):
    assert ledger.pragma("journal_mode") == "wal"
    assert ledger.pragma("synchronous") == 2  # FULL


def test_a_row_round_trips_with_its_bools_and_nulls(ledger):
    r = row("a", outage=True, fallback=True, quality=0.0, quality_base=1.0)
    ledger.record(r)
    assert ledger.get("a") == r
    ledger.record(row("b"))
    assert ledger.get("b").quality is None and ledger.get("missing") is None


def test_duplicate_request_id_is_refused_naming_it(ledger):
    ledger.record(row("dup"))
    with pytest.raises(DuplicateRequestError, match=r"request_id 'dup' is already in the ledger"):
        ledger.record(replace(row("dup"), total_g=99.0))
    assert ledger.count() == 1 and ledger.get("dup").total_g == 15.0


def test_totals_count_sum_and_average_every_component_over_a_half_open_range(ledger):
    ledger.record(row("a", "2024-06-01T10:00:00.000000Z", level="L0", level_index=0))
    ledger.record(row("b", "2024-06-01T11:00:00.000000Z", total_g=30.0, inference_g=16.0, fallback=True))
    ledger.record(row("c", "2024-06-01T12:00:00.000000Z", outage=True))
    t = ledger.totals(datetime(2024, 6, 1, 10, tzinfo=timezone.utc), datetime(2024, 6, 1, 12, tzinfo=timezone.utc))
    assert (t["count"], t["fallbacks"], t["outages"], t["by_level"]) == (2, 1, 0, {"L0": 1, "L1": 1})
    assert t["sum"]["total_g"] == 45.0 and t["mean"]["total_g"] == 22.5
    assert t["sum"]["inference_g"] == 17.0 and t["sum"]["radio_g"] == 4.0 and t["sum"]["embodied_bs_g"] == 10.0
    assert t["sum"]["inference_energy_j"] == 2000.0 and t["mean"]["ci_g_per_kwh"] == 400.0
    everything = ledger.totals()
    assert (everything["count"], everything["outages"], everything["sum"]["total_g"]) == (3, 1, 60.0)
    empty = ledger.totals(datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert (empty["count"], empty["sum"]["total_g"], empty["mean"]["total_g"]) == (0, 0.0, None)


def test_timestamps_are_stored_as_fixed_width_utc_text():
    t = datetime.fromisoformat("2024-06-01T07:30:00-05:00")
    assert format_utc(t) == "2024-06-01T12:30:00.000000Z"
    with pytest.raises(ValueError, match="needs a UTC offset"):
        format_utc(datetime(2024, 6, 1))


def test_rows_survive_close_and_reopen(tmp_path):
    led = Ledger(tmp_path / "l.db")
    led.record(row("kept"))
    led.close()
    led.close()  # idempotent
    assert not (tmp_path / "l.db-wal").exists() or (tmp_path / "l.db-wal").stat().st_size == 0
    again = Ledger(tmp_path / "l.db")
    assert again.get("kept") == row("kept")
    again.close()


def test_record_after_close_is_refused(tmp_path):
    led = Ledger(tmp_path / "l.db")
    led.close()
    with pytest.raises(LedgerError, match="the ledger is closed"):
        led.record(row("late"))


def test_a_file_of_another_schema_version_is_refused_naming_it(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("PRAGMA user_version=7").connection.close()
    with pytest.raises(LedgerError, match=r"other\.db: ledger schema version 7 is not 2"):
        Ledger(path)


def test_ledger_files_are_readable_by_their_owner_only(tmp_path):
    led = Ledger(tmp_path / "l.db")
    led.record(row("a"))
    try:
        for name in ("l.db", "l.db-wal"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        led.close()


def test_a_schema_1_file_is_upgraded_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    v1_columns = [c for c in COLUMNS if c not in ("served_via", "output_tokens_source", "inference_kind",
                                                   "radio_kind", "actor_kind", "quality_source",
                                                   "upstream_latency_s", "bundle_signer")]
    conn.execute(f"CREATE TABLE requests ({', '.join(v1_columns)}, PRIMARY KEY (request_id))")
    old = row("old")
    conn.execute(f"INSERT INTO requests ({', '.join(v1_columns)}) VALUES ({', '.join('?' * len(v1_columns))})",
                 [int(v) if isinstance(v, bool) else v for v in (getattr(old, c) for c in v1_columns)])
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    led = Ledger(path)
    try:
        got = led.get("old")
        assert got.total_g == 15.0 and got.served_via == "sidecar" and got.quality_source is None
        led.record(row("new"))
        assert led.count() == 2 and led.pragma("user_version") == 2
    finally:
        led.close()


def test_one_bad_write_in_a_commit_group_fails_alone(ledger):
    """A value SQLite cannot store (an integer beyond 64 bits) fails its own row, not the rows
    committed with it."""
    writes = [ledger.submit("row", row(f"g{i}", output_tokens=2 ** 70 if i == 3 else 200)) for i in range(8)]
    for w in writes:
        w.done.wait()
    assert [w.error is None for w in writes] == [i != 3 for i in range(8)]
    assert "g3" in str(writes[3].error) and ledger.count() == 7


def test_pending_decisions_are_kept_until_their_row_or_their_expiry(ledger):
    now = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)
    ledger.add_pending([PendingRecord("p1", "2024-06-01T13:00:00.000000Z", "{}"),
                        PendingRecord("p2", "2024-06-01T11:00:00.000000Z", "{}")])
    assert [p.request_id for p in ledger.load_pending(now)] == ["p1"]  # p2 has expired
    ledger.record(row("p1"))
    assert ledger.load_pending(now) == []
    with pytest.raises(DuplicateRequestError, match="'p1' is already in the ledger"):
        ledger.add_pending([PendingRecord("p1", "2024-06-01T13:00:00.000000Z", "{}")])


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not sqlite " * 200)
    with pytest.raises(LedgerError, match=r"notes\.db: cannot open the ledger"):
        Ledger(path)


def test_concurrent_writers_all_commit_and_share_transactions(ledger):
    n_threads, n_each = 8, 50
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for i in range(n_each):
                ledger.record(row(f"w{t}-{i}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert ledger.count() == n_threads * n_each
    assert ledger.commits <= n_threads * n_each
    assert ledger.integrity_check() == "ok"


def test_duplicates_inside_one_commit_group_fail_only_themselves(ledger):
    results: list[str] = []

    def write(i: int) -> None:
        try:
            ledger.record(row("same", total_g=float(i)))
            results.append("ok")
        except DuplicateRequestError:
            results.append("dup")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["dup"] * 5 + ["ok"]
    assert ledger.count() == 1


# ---------------------------------------------------------------------------------------------
# the server as a separate process: SIGKILL and SIGTERM
# ---------------------------------------------------------------------------------------------


def _start_server(bundle: Path, db: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """``aolo serve`` in a subprocess on an ephemeral port; returns the process and its port."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "aolo", "serve", str(bundle), "--backend", "reference",
                             "--port", "0", "--ledger", str(db), *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=60):
        proc.kill()
        pytest.fail("aolo serve printed nothing within 60 s")
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"aolo serve did not start: {line!r} {proc.stderr.read()}")
    port = int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])
    return proc, port


def _load(port: int, stop: threading.Event, acked: list[str], lock: threading.Lock, t: int) -> None:
    """Decide + outcome in a loop; an outcome is acknowledged once its 200 response is read."""
    c = Client(port, timeout_s=5)
    i = 0
    while not stop.is_set():
        rid = f"k{t}-{i}"
        i += 1
        try:
            if c.post("/v1/decide", telemetry(rid))[0] != 200:
                continue
            status, body = c.post("/v1/outcome", outcome(rid))
        except (OSError, http.client.HTTPException, ValueError):
            return  # the server is gone
        if status == 200 and body["request_id"] == rid:
            with lock:
                acked.append(rid)


def _run_load(port: int, n_threads: int, until_acked: int) -> tuple[list[str], threading.Event, list[threading.Thread]]:
    acked: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    threads = [threading.Thread(target=_load, args=(port, stop, acked, lock, t), daemon=True) for t in range(n_threads)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 30
    while len(acked) < until_acked and time.monotonic() < deadline:
        time.sleep(0.01)
    return acked, stop, threads


def test_ledger_keeps_acknowledged_rows_after_kill(tmp_path):
    bundle = make_bundle(tmp_path, random_ann_spec(seed=1))
    db = tmp_path / "ledger.db"
    proc, port = _start_server(bundle, db)
    try:
        acked, stop, threads = _run_load(port, n_threads=6, until_acked=300)
        assert len(acked) >= 300, "the load did not get going"
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: clients are still sending
        proc.wait(10)
        stop.set()
        for th in threads:
            th.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    finally:
        conn.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged outcomes lost, e.g. {sorted(missing)[:3]}"
    assert len(stored) >= len(acked)  # rows committed but not yet acknowledged may be there too


def test_sigterm_drains_and_closes_the_ledger(tmp_path):
    bundle = make_bundle(tmp_path, random_ann_spec(seed=1))
    db = tmp_path / "ledger.db"
    proc, port = _start_server(bundle, db)
    try:
        acked, stop, threads = _run_load(port, n_threads=2, until_acked=50)
        stop.set()
        for th in threads:
            th.join(10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped; backend and ledger closed" in out
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0  # checkpointed at close
    led = Ledger(db)
    try:
        assert led.count() >= len(acked) and all(led.get(rid) for rid in acked)
    finally:
        led.close()
