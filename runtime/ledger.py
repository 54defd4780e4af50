"""The carbon ledger: one SQLite row per served request, committed before it is acknowledged.

Each row holds the request's decision (level, power, backend, fallback), what happened (tokens,
airtime, HARQ tries, outage), the grid intensity it was served at, every energy (J) and carbon
(gCO2e) component of :func:`aolo.runtime.carbon.request_carbon`, and what produced it (bundle
SHA-256, backend, profile names and versions). Timestamps are stored as UTC ISO-8601 text with
microseconds and a ``Z`` (``2024-06-01T12:00:00.000000Z``), one fixed width, so text order is
time order and range queries use the index.

Concurrency and durability: ``record`` may be called from any number of threads. One writer
thread owns the write connection and commits in groups: every row queued while the previous
commit was on disk goes into the next transaction, and each caller returns only once the
transaction holding its row is committed (and, with ``synchronous=FULL``, fsynced). SQLite runs
one writer at a time whatever we do, and the fsync dominates a one-row commit, so grouping is
what keeps concurrent outcomes from queueing behind each other's fsync. Reads use a second
connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "CARBON_COLUMNS",
    "SCHEMA_VERSION",
    "TOTAL_COLUMNS",
    "DuplicateRequestError",
    "Ledger",
    "LedgerError",
    "LedgerRow",
    "format_utc",
]

SCHEMA_VERSION = 1
TABLE = "requests"


class LedgerError(RuntimeError):
    """A ledger file that cannot be opened or written; the message names the file."""


class DuplicateRequestError(LedgerError):
    """A ``request_id`` that the ledger already holds."""


def format_utc(t: datetime) -> str:
    """``t`` (timezone-aware) as the ledger's UTC text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    :raises ValueError: a naive datetime
    """
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"timestamp {t.isoformat()} needs a UTC offset")
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LedgerRow:
    """One served request. Energies in J, carbon in gCO2e, times in s, power in W.

    :param request_id: the client's id, unique in the ledger
    :param timestamp_utc: when the request was served (the telemetry's timestamp), ledger UTC text
    :param decided_utc: when the policy decided, ledger UTC text
    :param recorded_utc: when the outcome was recorded, ledger UTC text
    :param ci_norm: trailing-normalised intensity the policy saw, [0, 1]
    :param quality: quality of the answer in [0, 1] if the client reported it
    :param quality_base: quality the L0 answer would have had, if reported
    :param fallback: the safe policy answered because the backend failed
    """

    request_id: str
    timestamp_utc: str
    decided_utc: str
    recorded_utc: str
    task_class: str
    prompt_tokens: int
    output_tokens: int
    level: str
    level_index: int
    tx_power_w: float
    airtime_s: float
    harq_tries: int
    outage: bool
    active_sessions: int
    ci_g_per_kwh: float
    ci_norm: float
    inference_energy_j: float
    inference_latency_s: float
    radio_dynamic_energy_j: float
    radio_static_energy_j: float
    actor_energy_j: float
    session_s: float
    inference_g: float
    radio_g: float
    actor_g: float
    embodied_gpu_g: float
    embodied_bs_g: float
    total_g: float
    quality: Optional[float]
    quality_base: Optional[float]
    fallback: bool
    backend: str
    precision: str
    bundle_sha256: str
    server_profile: str
    server_profile_version: str
    radio_profile: str
    radio_profile_version: str
    grid_zone: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, by column name."""
        return asdict(self)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
CARBON_COLUMNS = ("inference_g", "radio_g", "actor_g", "embodied_gpu_g", "embodied_bs_g", "total_g")
ENERGY_COLUMNS = ("inference_energy_j", "radio_dynamic_energy_j", "radio_static_energy_j", "actor_energy_j")
# summed and averaged by Ledger.totals
TOTAL_COLUMNS = CARBON_COLUMNS + ENERGY_COLUMNS + (
    "inference_latency_s", "airtime_s", "session_s", "prompt_tokens", "output_tokens", "tx_power_w", "ci_g_per_kwh")
_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER", Optional[float]: "REAL",
              "int": "INTEGER", "float": "REAL", "str": "TEXT", "bool": "INTEGER", "Optional[float]": "REAL"}
_BOOL_COLUMNS = frozenset(f.name for f in fields(LedgerRow) if f.type in (bool, "bool"))


def _column_sql(f: Any) -> str:
    sql_type = _SQL_TYPES[f.type]
    nullable = f.type in (Optional[float], "Optional[float]")
    key = " PRIMARY KEY" if f.name == "request_id" else ""
    return f"{f.name} {sql_type}{'' if nullable else ' NOT NULL'}{key}"


SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  " + ",\n  ".join(_column_sql(f) for f in fields(LedgerRow)) + "\n)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_timestamp ON {TABLE} (timestamp_utc)",
)


@dataclass(eq=False)
class _Write:
    """One queued row and what became of it."""

    row: LedgerRow
    values: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: Optional[LedgerError] = None


class Ledger:
    """The SQLite ledger file.

    :param path: the database file, created with its schema if absent
    :param busy_timeout_s: how long to wait for another process's write lock, s
    :param max_group: most rows committed in one transaction
    :raises LedgerError: a file that is not an aolo ledger of this schema version
    """

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0, max_group: int = 256) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._max_group = int(max_group)
        self._conn: Optional[sqlite3.Connection] = None
        self._read: Optional[sqlite3.Connection] = None
        try:
            self._conn = self._connect()
            self._init_schema(self._conn)
            self._read = self._connect()
        except sqlite3.DatabaseError as e:
            self._close_connections()
            raise LedgerError(f"{self.path}: cannot open the ledger: {e}") from None
        except LedgerError:
            self._close_connections()
            raise
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()  # the write connection: writer thread, pragma(), close()
        self._queue: list[_Write] = []
        self._cv = threading.Condition()
        self._closing = False
        self.commits = 0  # transactions committed (rows / commits = mean group size)
        self._writer = threading.Thread(target=self._write_loop, name=f"aolo-ledger-writer:{self.path.name}",
                                        daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, check_same_thread=False,
                               isolation_level=None)  # autocommit: transactions are explicit
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise LedgerError(f"{self.path}: SQLite refused WAL journal mode (got {mode!r})")
        # WAL keeps readers (GET /v1/carbon) off the writer's back. synchronous=FULL fsyncs the WAL
        # at every commit: with NORMAL, WAL commits are synced only at checkpoints, so a power cut
        # or an OS crash could lose outcomes we had already acknowledged. (A killed process alone
        # loses nothing under NORMAL either; FULL is for the machine going down.)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise LedgerError(f"{self.path}: ledger schema version {version} is not {SCHEMA_VERSION}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in SCHEMA:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")}
        missing = [c for c in COLUMNS if c not in have]
        if missing:
            raise LedgerError(f"{self.path}: table {TABLE!r} lacks columns {', '.join(missing)}")

    # --- writing ----------------------------------------------------------------------------
    def record(self, row: LedgerRow) -> None:
        """Insert ``row``; when this returns, the transaction holding it is committed to disk.

        :raises DuplicateRequestError: ``row.request_id`` is already in the ledger
        :raises LedgerError: the write failed (disk full, file gone) or the ledger is closed
        """
        values = [int(v) if isinstance(v, bool) else v for v in (getattr(row, c) for c in COLUMNS)]
        write = _Write(row, values)
        with self._cv:
            if self._closing:
                raise LedgerError(f"{self.path}: the ledger is closed")
            self._queue.append(write)
            self._cv.notify()
        write.done.wait()
        if write.error is not None:
            raise write.error

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:  # closing and drained
                    return
                group, self._queue = self._queue[:self._max_group], self._queue[self._max_group:]
            with self._write_lock:
                self._commit(group)

    def _commit(self, group: list[_Write]) -> None:
        """Insert ``group`` in one transaction; a duplicate fails only its own row."""
        sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        conn = self._conn
        try:
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            for w in group:
                try:
                    conn.execute(sql, w.values)  # a failed statement is undone alone; the transaction goes on
                except sqlite3.IntegrityError as e:
                    if "UNIQUE" in str(e) or "PRIMARY KEY" in str(e):
                        w.error = DuplicateRequestError(f"request_id {w.row.request_id!r} is already in the "
                                                        f"ledger {self.path}")
                    else:
                        w.error = LedgerError(f"{self.path}: cannot record request_id {w.row.request_id!r}: {e}")
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as e:  # sqlite3.Error, or a bug: fail the group, keep the writer alive
            try:
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for w in group:
                if w.error is None:
                    w.error = LedgerError(f"{self.path}: cannot record request_id {w.row.request_id!r}: {e}")
        finally:
            for w in group:
                w.done.set()

    # --- reading ----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._read is None:
            raise LedgerError(f"{self.path}: the ledger is closed")
        return self._read

    def get(self, request_id: str) -> Optional[LedgerRow]:
        """The row of ``request_id``, or None."""
        with self._read_lock:
            cur = self._reader().execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE request_id = ?",
                                         (request_id,))
            r = cur.fetchone()
        if r is None:
            return None
        return LedgerRow(**{c: (bool(v) if c in _BOOL_COLUMNS else v) for c, v in zip(COLUMNS, r)})

    def count(self) -> int:
        """Rows in the ledger."""
        with self._read_lock:
            return int(self._reader().execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def totals(self, from_utc: Optional[datetime] = None, to_utc: Optional[datetime] = None) -> dict[str, Any]:
        """Count, sums and means of every component over requests served in ``[from_utc, to_utc)``.

        :param from_utc: first instant included (timezone-aware); None = from the start
        :param to_utc: first instant excluded (timezone-aware); None = to the end
        :return: ``{"from_utc", "to_utc", "count", "fallbacks", "outages", "by_level": {level: n},
            "sum": {column: total}, "mean": {column: mean or None when count is 0}}``; columns are
            ``TOTAL_COLUMNS`` (g, J, s, tokens, W, gCO2e/kWh)
        """
        where, args = [], []
        if from_utc is not None:
            where.append("timestamp_utc >= ?")
            args.append(format_utc(from_utc))
        if to_utc is not None:
            where.append("timestamp_utc < ?")
            args.append(format_utc(to_utc))
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        aggs = ", ".join(f"TOTAL({c}), AVG({c})" for c in TOTAL_COLUMNS)
        with self._read_lock:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for both queries
            try:
                r = conn.execute(f"SELECT COUNT(*), TOTAL(fallback), TOTAL(outage), {aggs} FROM {TABLE}{cond}",
                                 args).fetchone()
                levels = conn.execute(f"SELECT level, COUNT(*) FROM {TABLE}{cond} GROUP BY level ORDER BY level",
                                      args).fetchall()
            finally:
                conn.execute("COMMIT")
        values = r[3:]
        return {
            "from_utc": None if from_utc is None else format_utc(from_utc),
            "to_utc": None if to_utc is None else format_utc(to_utc),
            "count": int(r[0]),
            "fallbacks": int(r[1]),
            "outages": int(r[2]),
            "by_level": {lvl: int(n) for lvl, n in levels},
            "sum": {c: float(values[2 * i]) for i, c in enumerate(TOTAL_COLUMNS)},
            "mean": {c: (None if values[2 * i + 1] is None else float(values[2 * i + 1]))
                     for i, c in enumerate(TOTAL_COLUMNS)},
        }

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` or the first problem found."""
        with self._read_lock:
            return str(self._reader().execute("PRAGMA integrity_check").fetchone()[0])

    def pragma(self, name: str) -> Any:
        """The value of ``PRAGMA name`` on the write connection (journal_mode, synchronous, ...)."""
        if not name.isidentifier():
            raise ValueError(f"pragma: {name!r} is not a pragma name")
        with self._write_lock:
            if self._conn is None:
                raise LedgerError(f"{self.path}: the ledger is closed")
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        """Commit what is queued, stop the writer, checkpoint the WAL into the main file, close; idempotent."""
        with self._cv:
            if self._closing and self._conn is None:
                return
            self._closing = True
            self._cv.notify_all()
        self._writer.join()
        with self._write_lock, self._read_lock:
            try:
                if self._conn is not None:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            finally:
                self._close_connections()

    def _close_connections(self) -> None:
        for attr in ("_read", "_conn"):
            conn = getattr(self, attr, None)
            if conn is not None:
                conn.close()
                setattr(self, attr, None)
