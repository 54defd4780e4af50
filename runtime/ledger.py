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

Besides the requests, the file holds the decisions still waiting for their outcome (table
``pending``, with an expiry), so an outcome for a decision made before a restart is accepted.
A commit that holds only pending decisions runs with ``synchronous=NORMAL`` (in WAL mode that
survives the process being killed but not the machine losing power: a decision lost that way is
decided again by its client); a commit that holds a served request or feedback runs with ``FULL``.
Every write runs in its own savepoint, so one bad write fails alone and the others in its commit
group go through. The file and its WAL are created readable by their owner only (0600).

Callers that must not block (the gateway's event loop) use :meth:`Ledger.submit`, which queues a
write and returns a :class:`LedgerWrite` to wait on (``wait()`` in a thread, or a completion
callback for an asyncio future).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

__all__ = [
    "CARBON_COLUMNS",
    "SCHEMA_VERSION",
    "TOTAL_COLUMNS",
    "DuplicateRequestError",
    "Ledger",
    "LedgerError",
    "LedgerRow",
    "LedgerWrite",
    "PendingRecord",
    "UnknownRowError",
    "format_utc",
]

SCHEMA_VERSION = 2  # 2: the pending table and the provenance columns (served_via ... bundle_signer)
TABLE = "requests"
PENDING_TABLE = "pending"
LAZY_FLUSH_S = 0.05  # longest a pending decision waits in the queue before its commit, s


class LedgerError(RuntimeError):
    """A ledger file that cannot be opened or written; the message names the file."""


class DuplicateRequestError(LedgerError):
    """A ``request_id`` that the ledger already holds."""


class UnknownRowError(LedgerError):
    """Feedback for a ``request_id`` that the ledger does not hold."""


def _write_id(w: "LedgerWrite") -> str:
    if w.kind == "row":
        return f"request_id {w.payload[0].request_id!r}"
    if w.kind == "quality":
        return f"request_id {w.payload[0]!r}"
    return ""


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
    :param quality: quality of the answer in [0, 1]: reported, fed back, or the class and level's
        expected quality (``quality_source`` says which; None on rows written before schema 2)
    :param quality_base: quality the L0 answer would have had (reported, or expected)
    :param fallback: the safe policy answered because the backend failed
    :param served_via: ``sidecar`` (decide + outcome from a RAN integration) or ``proxy`` (the
        gateway forwarded the request to the LLM itself)
    :param output_tokens_source: ``reported`` (outcome), ``usage`` (the upstream's usage object) or
        ``counted_chunks`` (a stream without usage: one token per content chunk)
    :param inference_kind: ``measured`` (energy reported by the client, or measured by the gateway
        on the upstream's GPUs: :mod:`aolo.runtime.llm_energy`) or ``modelled`` (the server
        profile's per-token figures)
    :param radio_kind: ``modelled``: the radio profile's power model over the airtime, which the
        RAN reported (``served_via`` sidecar) or the gateway modelled from the payload and the
        reported link at the channel's mean (proxy). Older sidecar rows say ``measured``, meaning
        the airtime was reported
    :param actor_kind: ``estimated`` (op counts x hardware profile) or ``unknown`` (no energy
        known: ``actor_energy_j`` is 0 because nothing was charged, not because nothing was spent;
        older rows say ``none``)
    :param quality_source: ``reported``, ``expected`` (the shipped judge tables) or ``feedback``
    :param upstream_latency_s: wall time of the upstream LLM call, s (proxy only; measured)
    :param bundle_signer: key id of the trusted key that signed the bundle (None: the server was
        given no trusted keys)
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
    served_via: str = "sidecar"
    output_tokens_source: str = "reported"
    inference_kind: str = "measured"
    radio_kind: str = "modelled"
    actor_kind: str = "estimated"
    quality_source: Optional[str] = None
    upstream_latency_s: Optional[float] = None
    bundle_signer: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, by column name (every field is a scalar: no deep copy as ``asdict`` makes)."""
        return {c: getattr(self, c) for c in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))


def _kind_counts(rows: list[tuple[str, str, str, int]]) -> dict[str, dict[str, int]]:
    """{part: {kind: rows}} from (inference_kind, radio_kind, actor_kind, count) groups."""
    out: dict[str, dict[str, int]] = {"inference": {}, "radio": {}, "actor": {}}
    for *kinds, n in rows:
        for part, kind in zip(out, kinds):
            out[part][kind or "unlabelled"] = out[part].get(kind or "unlabelled", 0) + int(n)
    return out
CARBON_COLUMNS = ("inference_g", "radio_g", "actor_g", "embodied_gpu_g", "embodied_bs_g", "total_g")
ENERGY_COLUMNS = ("inference_energy_j", "radio_dynamic_energy_j", "radio_static_energy_j", "actor_energy_j")
# summed and averaged by Ledger.totals
TOTAL_COLUMNS = CARBON_COLUMNS + ENERGY_COLUMNS + (
    "inference_latency_s", "airtime_s", "session_s", "prompt_tokens", "output_tokens", "tx_power_w", "ci_g_per_kwh")
_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT", "bool": "INTEGER", "Optional[float]": "REAL",
              "Optional[str]": "TEXT"}
_BOOL_COLUMNS = frozenset(f.name for f in fields(LedgerRow) if f.type == "bool")
# columns added by schema 2, with the value rows of schema 1 get when a file is upgraded
_V2_COLUMNS = {"served_via": "'sidecar'", "output_tokens_source": "'reported'", "inference_kind": "''",
               "radio_kind": "''", "actor_kind": "''", "quality_source": None, "upstream_latency_s": None,
               "bundle_signer": None}


def _column_sql(f: Any, default: Optional[str] = None) -> str:
    sql_type = _SQL_TYPES[f.type]
    nullable = f.type.startswith("Optional")
    key = " PRIMARY KEY" if f.name == "request_id" else ""
    dflt = f" DEFAULT {default}" if default is not None else ""
    return f"{f.name} {sql_type}{'' if nullable else ' NOT NULL'}{dflt}{key}"


SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  " + ",\n  ".join(_column_sql(f) for f in fields(LedgerRow)) + "\n)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_timestamp ON {TABLE} (timestamp_utc)",
    f"CREATE TABLE IF NOT EXISTS {PENDING_TABLE} (request_id TEXT PRIMARY KEY, expires_utc TEXT NOT NULL, "
    "decision TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {PENDING_TABLE}_expiry ON {PENDING_TABLE} (expires_utc)",
)


@dataclass(frozen=True)
class PendingRecord:
    """A decision waiting for its outcome, as the ledger keeps it.

    :param request_id: the decided request's id
    :param expires_utc: when the decision stops accepting its outcome, ledger UTC text
    :param decision: the service's JSON of the decision and its telemetry (opaque here)
    """

    request_id: str
    expires_utc: str
    decision: str


@dataclass(eq=False)
class LedgerWrite:
    """One queued write and what became of it.

    :param kind: ``row`` (a served request; its pending decision is removed with it), ``pending``
        (decisions), ``quality`` (feedback on a row) or ``expire`` (drop pending decisions past
        their expiry)
    :param durable: commit with ``synchronous=FULL`` (rows, feedback) rather than NORMAL
    """

    kind: str
    payload: Any
    durable: bool
    queued_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    error: Optional[LedgerError] = None
    _callbacks: list[Callable[["LedgerWrite"], None]] = field(default_factory=list)
    _cb_lock: threading.Lock = field(default_factory=threading.Lock)
    _finished: bool = False

    def wait(self) -> None:
        """Block until committed; raise its error if it failed."""
        self.done.wait()
        if self.error is not None:
            raise self.error

    def add_done_callback(self, fn: Callable[["LedgerWrite"], None]) -> None:
        """Call ``fn(self)`` once the write is committed or failed (at once if it already is).
        Callbacks run in the writer thread, in the order added, before ``done`` is set, so they must
        be quick (update a counter, ``loop.call_soon_threadsafe``)."""
        with self._cb_lock:
            if not self._finished:
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self) -> None:
        with self._cb_lock:
            self._finished = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a callback's bug must not stop the writer
                logging.getLogger("aolo.runtime.ledger").exception("ledger write callback failed")
        self.done.set()


class Ledger:
    """The SQLite ledger file.

    :param path: the database file, created (mode 0600) with its schema if absent; a schema-1 file
        is upgraded in place
    :param busy_timeout_s: how long to wait for another process's write lock, s
    :param max_group: most writes committed in one transaction
    :raises LedgerError: a file that is not an aolo ledger of a known schema version
    """

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0, max_group: int = 256) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._max_group = int(max_group)
        self._conn: Optional[sqlite3.Connection] = None
        self._read: Optional[sqlite3.Connection] = None
        try:
            if not self.path.exists():
                # created owner-only before SQLite opens it; SQLite gives the WAL and shm files the
                # database file's permissions
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            self._conn = self._connect()
            self._init_schema(self._conn)
            self._read = self._connect()
            self._lookup = self._connect()  # primary-key lookups only (find_recorded): never behind a long read
        except sqlite3.DatabaseError as e:
            self._close_connections()
            raise LedgerError(f"{self.path}: cannot open the ledger: {e}") from None
        except OSError as e:
            self._close_connections()
            raise LedgerError(f"{self.path}: cannot create the ledger: {e.strerror}") from None
        except LedgerError:
            self._close_connections()
            raise
        self._synchronous = "FULL"
        self._read_lock = threading.Lock()
        self._lookup_lock = threading.Lock()
        self._write_lock = threading.Lock()  # the write connection: writer thread, pragma(), close()
        self._queue: list[LedgerWrite] = []
        self._durable_queued = 0
        self._cv = threading.Condition()
        self._closing = False
        self.commits = 0  # transactions committed (writes / commits = mean group size)
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
        if version not in (0, 1, SCHEMA_VERSION):
            raise LedgerError(f"{self.path}: ledger schema version {version} is not {SCHEMA_VERSION} (or 1, upgraded)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 1:  # add schema 2's columns, with the values a schema-1 row stands for
                by_name = {f.name: f for f in fields(LedgerRow)}
                for name, default in _V2_COLUMNS.items():
                    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {_column_sql(by_name[name], default)}")
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
    def submit(self, kind: str, payload: Any) -> LedgerWrite:
        """Queue a write without waiting; see :class:`LedgerWrite` for the kinds and their payloads
        (``row``: a :class:`LedgerRow`; ``pending``: a sequence of :class:`PendingRecord`;
        ``quality``: (request_id, quality, quality_source); ``expire``: ledger UTC text).

        :raises LedgerError: the ledger is closed
        """
        if kind == "row":
            payload = (payload, [int(v) if isinstance(v, bool) else v for v in (getattr(payload, c) for c in COLUMNS)])
        elif kind not in ("pending", "quality", "expire"):
            raise ValueError(f"submit: unknown write kind {kind!r}")
        write = LedgerWrite(kind, payload, durable=kind in ("row", "quality"))
        with self._cv:
            if self._closing:
                raise LedgerError(f"{self.path}: the ledger is closed")
            self._queue.append(write)
            if write.durable:
                self._durable_queued += 1
            if write.durable or len(self._queue) >= self._max_group:
                self._cv.notify()  # lazy writes wait for the writer's next poll
        return write

    def record(self, row: LedgerRow) -> None:
        """Insert ``row`` (and drop its pending decision); when this returns, the transaction
        holding it is committed to disk.

        :raises DuplicateRequestError: ``row.request_id`` is already in the ledger
        :raises LedgerError: the write failed (disk full, file gone) or the ledger is closed
        """
        self.submit("row", row).wait()

    def add_pending(self, records: Sequence[PendingRecord]) -> None:
        """Keep decisions waiting for their outcome (all or none).

        :raises DuplicateRequestError: one of the ids is already in the ledger or pending
        """
        self.submit("pending", list(records)).wait()

    def set_quality(self, request_id: str, quality: float, source: str) -> None:
        """Feedback: set the quality of a recorded request, durably.

        :raises UnknownRowError: no row under ``request_id``
        """
        self.submit("quality", (request_id, quality, source)).wait()

    def _write_loop(self) -> None:
        """Commit what is queued: at once when a durable write (a row, feedback) waits or a group
        is full; pending decisions alone are committed every LAZY_FLUSH_S, so that a stream of
        decides costs the event loop no thread wake-up per decide (the writer polls the queue at
        that period; a lazy submit does not wake it)."""
        while True:
            with self._cv:
                while True:
                    if not self._queue and self._closing:
                        return
                    if self._queue and (self._closing or self._durable_queued or len(self._queue) >= self._max_group):
                        break
                    left = (self._queue[0].queued_at + LAZY_FLUSH_S - time.monotonic()) if self._queue else LAZY_FLUSH_S
                    if self._queue and left <= 0:
                        break
                    self._cv.wait(left)
                group, self._queue = self._queue[:self._max_group], self._queue[self._max_group:]
                self._durable_queued -= sum(w.durable for w in group)
            with self._write_lock:
                self._commit(group)

    _ROW_SQL = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def _apply(self, conn: sqlite3.Connection, w: LedgerWrite) -> None:
        """One write's statements (inside its savepoint)."""
        if w.kind == "row":
            row, values = w.payload
            try:
                conn.execute(self._ROW_SQL, values)
            except sqlite3.IntegrityError as e:
                if "UNIQUE" in str(e) or "PRIMARY KEY" in str(e):
                    raise DuplicateRequestError(f"request_id {row.request_id!r} is already in the ledger "
                                                f"{self.path}") from None
                raise
            conn.execute(f"DELETE FROM {PENDING_TABLE} WHERE request_id = ?", (row.request_id,))
        elif w.kind == "pending":
            ids = [p.request_id for p in w.payload]
            for i in range(0, len(ids), 500):  # SQLite's default limit is 999 variables per statement
                chunk = ids[i:i + 500]
                hit = conn.execute(f"SELECT request_id FROM {TABLE} WHERE request_id IN ({','.join('?' * len(chunk))})"
                                   " LIMIT 1", chunk).fetchone()
                if hit is not None:
                    raise DuplicateRequestError(f"request_id {hit[0]!r} is already in the ledger {self.path}")
            try:
                conn.executemany(f"INSERT INTO {PENDING_TABLE} (request_id, expires_utc, decision) VALUES (?, ?, ?)",
                                 [(p.request_id, p.expires_utc, p.decision) for p in w.payload])
            except sqlite3.IntegrityError:
                raise DuplicateRequestError(f"request_id: one of {ids[:3]}... is already waiting for its outcome "
                                            f"in {self.path}") from None
        elif w.kind == "quality":
            request_id, quality, source = w.payload
            cur = conn.execute(f"UPDATE {TABLE} SET quality = ?, quality_source = ? WHERE request_id = ?",
                               (quality, source, request_id))
            if cur.rowcount == 0:
                raise UnknownRowError(f"request_id {request_id!r} is not in the ledger {self.path}")
        elif w.kind == "expire":
            conn.execute(f"DELETE FROM {PENDING_TABLE} WHERE expires_utc < ?", (w.payload,))

    def _commit(self, group: list[LedgerWrite]) -> None:
        """Apply ``group`` in one transaction, each write in its own savepoint: a write that fails
        (a duplicate id, a value SQLite cannot store) is undone alone and the others commit."""
        conn = self._conn
        try:
            assert conn is not None
            sync = "FULL" if any(w.durable for w in group) else "NORMAL"
            if sync != self._synchronous:  # outside a transaction, as SQLite requires
                conn.execute(f"PRAGMA synchronous={sync}")
                self._synchronous = sync
            conn.execute("BEGIN IMMEDIATE")
            for w in group:
                conn.execute("SAVEPOINT w")
                try:
                    self._apply(conn, w)
                    conn.execute("RELEASE w")
                except Exception as e:  # this write only
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    w.error = e if isinstance(e, LedgerError) else LedgerError(
                        f"{self.path}: cannot write {w.kind} {_write_id(w)}: {type(e).__name__}: {e}")
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as e:  # sqlite3.Error on BEGIN/COMMIT (disk full, file gone): fail the group
            try:
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for w in group:
                if w.error is None:
                    w.error = LedgerError(f"{self.path}: cannot write {w.kind} {_write_id(w)}: {e}")
        finally:
            for w in group:
                w._finish()

    def find_recorded(self, request_ids: Sequence[str]) -> Optional[str]:
        """The first of ``request_ids`` already in the ledger, or None (primary-key lookups on a
        connection of their own: microseconds, and WAL readers never wait for the writer)."""
        with self._lookup_lock:
            if self._lookup is None:
                raise LedgerError(f"{self.path}: the ledger is closed")
            for i in range(0, len(request_ids), 500):
                chunk = list(request_ids[i:i + 500])
                hit = self._lookup.execute(f"SELECT request_id FROM {TABLE} WHERE request_id IN "
                                           f"({','.join('?' * len(chunk))}) LIMIT 1", chunk).fetchone()
                if hit is not None:
                    return str(hit[0])
        return None

    def load_pending(self, now_utc: datetime) -> list[PendingRecord]:
        """Pending decisions not yet expired at ``now_utc``, oldest expiry first."""
        with self._read_lock:
            rows = self._reader().execute(
                f"SELECT request_id, expires_utc, decision FROM {PENDING_TABLE} WHERE expires_utc >= ? "
                "ORDER BY expires_utc", (format_utc(now_utc),)).fetchall()
        return [PendingRecord(*r) for r in rows]

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
            "kinds": {part: {kind: n}}, "sum": {column: total}, "mean": {column: mean or None when count
            is 0}}``; columns are ``TOTAL_COLUMNS`` (g, J, s, tokens, W, gCO2e/kWh); ``kinds`` counts
            the rows whose inference, radio and actor energy is measured, modelled or estimated
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
                kinds = conn.execute(f"SELECT inference_kind, radio_kind, actor_kind, COUNT(*) FROM {TABLE}{cond} "
                                     "GROUP BY 1, 2, 3", args).fetchall()
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
            "kinds": _kind_counts(kinds),
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
        with self._write_lock, self._read_lock, self._lookup_lock:
            try:
                if self._conn is not None:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            finally:
                self._close_connections()

    def _close_connections(self) -> None:
        for attr in ("_lookup", "_read", "_conn"):
            conn = getattr(self, attr, None)
            if conn is not None:
                conn.close()
                setattr(self, attr, None)
