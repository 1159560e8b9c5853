"""Files -> validated, masked rows stamped with their run; atomic and idempotent.

One file is one transaction: it loads whole or not at all, whatever kills the process. The
work is SQL in DuckDB, in three steps:

1. *read* (`readers.py`): DuckDB's own reader over the file, every column as text.
2. *stage* (`staging.py`): one pass computes typed values, masked text and the first problem
   of each row into a temporary table. Card numbers are masked here, before anything is stored.
3. *store* (here): good rows go to their table, bad rows to `quarantine` with line, column, reason and
   the masked raw row; `rows_read == rows_loaded + rows_quarantined` by construction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from reconcile import __version__, audit, redact, versions
from reconcile.canonical import CANONICAL_COLUMNS
from reconcile.errors import ReconError
from reconcile.ingest.kinds import NAMES as KINDS
from reconcile.ingest.kinds import Kind, kind_of
from reconcile.ingest.readers import (
    MAX_LINE_BYTES,
    NEEDS_PYTHON,
    Plan,
    check_readable,
    detect_format,
    explain_read_error,
    map_columns,
    read,
    stand_in,
)
from reconcile.ingest.staging import WITHHELD, Stage, business_day, record_masked
from reconcile.ingest.supersede import supersede
from reconcile.settings import SourceConfig
from reconcile.store.db import Connection, QueryError, session_time_zone, sql_literal, transaction

__all__ = [
    "CANONICAL_COLUMNS",
    "KINDS",
    "FileResult",
    "Interrupted",
    "OnRuns",
    "ingest_file",
    "scan_file",
]


class Interrupted(ReconError):
    """The user interrupted (Ctrl-C, SIGINT) while a file was loading: its transaction rolled
    back, so nothing of it was loaded. Not a problem of the file: the exit code is 130."""

    exit_code = 130

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"interrupted: nothing of {path} was loaded")


@contextlib.contextmanager
def _noticing_interrupts() -> Iterator[Callable[[], bool]]:
    """Yields whether a SIGINT arrived meanwhile. DuckDB turns a Ctrl-C during a query into its
    own errors (an interrupted query, then "TransactionContext Error" on the next statement),
    which would read as a broken file; the flag tells them apart. Python's handler still runs
    (KeyboardInterrupt), so DuckDB stops the query at once. Only in the main thread, and only
    where SIGINT has Python's default handler (a server's threads and ignored signals are left
    alone)."""
    arrived = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield arrived.is_set
        return

    def handler(signum: int, frame: object) -> None:
        arrived.set()
        signal.default_int_handler(signum, frame)  # type: ignore[arg-type]

    signal.signal(signal.SIGINT, handler)
    try:
        yield arrived.is_set
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class OnRuns(Protocol):
    """Called inside a run log's transaction with the runs it loaded: the watchdog's
    `runs_arrived` (its monitors hear the runs and check their content). Ingest knows nothing
    of monitors; the entry point that wants them signalled passes this."""

    def __call__(
        self,
        conn: Connection,
        source: str,
        run_ids: list[str],
        *,
        now: datetime,
        origin: str,
        what: str,
    ) -> object: ...


@dataclass
class FileResult:
    """What happened to one file; the JSON shape of `recon ingest --json`."""

    path: str
    sha256: str
    source: str
    kind: str
    format: str
    run_ids: list[str]
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    already_ingested: bool
    file_id: int
    warnings: list[str] = field(default_factory=list)
    # With --replace: what earlier loads this file took the place of (see `supersede.py`).
    replaced: dict[str, Any] | None = None
    # When these bytes were loaded (now, or by the earlier load that makes them already ingested).
    ingested_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FileScan:
    """One pass over a file's bytes: its SHA-256, and what the bytes rule out for the rows.

    In a plain (uncompressed, UTF-8 or latin-1) CSV, a field can hold a NUL only if the file has
    a NUL byte, and a line break only inside quotes; most files have neither, and then the
    per-row checks for them are skipped.
    """

    sha256: str
    plain: bool  # bytes are the text: not compressed, not UTF-16
    has_nul: bool
    has_quotes: bool


def scan_file(path: Path) -> FileScan:
    digest = hashlib.sha256()
    has_nul = has_quotes = False
    with path.open("rb") as handle:
        head = handle.read(4)
        plain = not head.startswith((b"\x1f\x8b", b"\xff\xfe", b"\xfe\xff"))
        chunk = head
        while chunk:
            digest.update(chunk)
            has_nul = has_nul or b"\x00" in chunk
            has_quotes = has_quotes or b'"' in chunk or b"'" in chunk
            chunk = handle.read(1 << 20)
    return FileScan(digest.hexdigest(), plain, has_nul, has_quotes)


def _line_numbers(conn: Connection, plan: Plan) -> bool:
    """Views `recon_lined` and `recon_rejects_lined`: staged rows and rejects with `__line`.

    JSON Lines and Parquet rows already know their line. DuckDB's CSV reader numbers records,
    not lines, and leaves rejected records out of its result, so good row k sits at
    header + k + (rejected records before it) + (quoted line breaks in the rows before it).
    Returns whether there are rejects.
    """
    header = plan.header_lines if plan.format == "csv" else 0
    rejects = plan.format == "csv" and _rejects_exist(conn)
    # CSV records are numbered by their place in the staged table, which keeps file order.
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_numbered AS "
        # (rowids of rows written inside a transaction start at a large offset: count from it)
        "SELECT * REPLACE (coalesce(__rec, rowid - (SELECT min(rowid) FROM recon_staged) + 1) "
        "AS __rec) FROM recon_staged"
    )
    if rejects:
        # DuckDB records one reject per error; a line with three extra fields has three.
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE recon_reject_lines AS SELECT * FROM recon_rejects "
            "QUALIFY row_number() OVER (PARTITION BY line ORDER BY byte_position) = 1"
        )
    reject_events = (
        f"SELECT line - (row_number() OVER (ORDER BY line) - 1) - {header} AS at_rec, "
        "1 AS records, 0 AS breaks FROM recon_reject_lines UNION ALL "
        if rejects
        else ""
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE recon_shifts AS SELECT at_rec, "
        "sum(sum(records + breaks)) OVER (ORDER BY at_rec) AS lines_before, "
        "sum(sum(breaks)) OVER (ORDER BY at_rec) AS breaks_before FROM ("
        f"{reject_events}SELECT __rec + 1 AS at_rec, 0 AS records, __nl AS breaks "
        "FROM recon_numbered WHERE __nl > 0) GROUP BY at_rec"
    )
    shifted = conn.execute("SELECT count(*) FROM recon_shifts").fetchone()
    if shifted and shifted[0]:
        conn.execute(
            "CREATE OR REPLACE TEMP VIEW recon_lined AS "
            f"SELECT r.*, {header} + r.__rec + coalesce(s.lines_before, 0) AS __line "
            "FROM recon_numbered r ASOF LEFT JOIN recon_shifts s ON r.__rec >= s.at_rec"
        )
    else:
        conn.execute(
            f"CREATE OR REPLACE TEMP VIEW recon_lined AS SELECT *, {header} + __rec AS __line "
            "FROM recon_numbered"
        )
    if rejects:
        conn.execute(
            "CREATE OR REPLACE TEMP VIEW recon_rejects_lined AS "
            "SELECT r.*, r.line + coalesce(s.breaks_before, 0) AS __line "
            f"FROM recon_reject_lines r ASOF LEFT JOIN recon_shifts s ON r.line - {header} >= s.at_rec"
        )
    return rejects


def _rejects_exist(conn: Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'recon_rejects' AND temporary"
    ).fetchone()
    return bool(row and row[0])


_REJECT_REASONS = {
    "INVALID ENCODING": "not valid UTF-8 text; if the whole file uses another encoding, "
    'declare it in recon.toml: [sources.NAME] encoding = "latin-1"',
    "TOO MANY COLUMNS": "more fields than the header has columns (an unquoted delimiter?)",
    "MISSING COLUMNS": "fewer fields than the header has columns",
    "UNQUOTED VALUE": "a quote inside an unquoted field; quote the field and double inner quotes",
    "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MB",
}


@dataclass(frozen=True)
class Stored:
    read: int
    loaded: int
    quarantined: int
    run_ids: list[str]
    undated: int  # loaded rows dated by the day of ingesting (no business_date, no processed_at)


def _store(
    conn: Connection,
    plan: Plan,
    shown: str,
    kind: Kind,
    source: str,
    file_id: int,
    now: datetime,
    user: str,
    rejects: bool,
) -> Stored:
    """Move staged rows to their tables; say how many rows went where."""
    # No ORDER BY: the staged table keeps file order already, and sorting 1M rows costs seconds.
    insert = kind.insert_sql("FROM recon_lined WHERE __problem_reason IS NULL")
    given = {"source": source, "file_id": file_id, "now": now, "user": user}
    conn.execute(insert, {k: v for k, v in given.items() if f"${k}" in insert})
    quarantine_params = [file_id, source, kind.name, shown, now]
    # Its txn_id as staged (masked like a loaded row's), so a record it leaves missing can say why.
    txn_id = "txn_id" if "txn_id" in kind.outputs else "NULL"
    conn.execute(
        "INSERT INTO quarantine SELECT ?, ?, ?, ?, run_id, __line, __problem_column, __problem_reason, "
        f"__raw, ?, {txn_id} FROM recon_lined WHERE __problem_reason IS NOT NULL ORDER BY __rec",
        quarantine_params,
    )
    rejected = 0
    raw_line = sql_literal(WITHHELD) if plan.withhold_raw_lines else "recon_mask(csv_line)"
    if rejects:
        reasons = " ".join(
            f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in _REJECT_REASONS.items()
        )
        conn.execute(
            "INSERT INTO quarantine SELECT ?, ?, ?, ?, NULL, __line, recon_mask(column_name), "
            f"CASE error_type::VARCHAR {reasons} ELSE 'unreadable line: ' || error_type::VARCHAR END, "
            f"json_object('line', {raw_line})::VARCHAR, ?, NULL FROM recon_rejects_lined ORDER BY line",
            quarantine_params,
        )
        count = conn.execute("SELECT count(*) FROM recon_reject_lines").fetchone()
        rejected = int(count[0]) if count else 0
    undated = "__undated AND __problem_reason IS NULL" if kind.run_log else "false"
    row = conn.execute(
        "SELECT count(*) FILTER (__problem_reason IS NULL), "
        "count(*) FILTER (__problem_reason IS NOT NULL), "
        "coalesce(list(DISTINCT run_id ORDER BY run_id) FILTER (run_id IS NOT NULL), []), "
        f"count(*) FILTER ({undated}) FROM recon_staged"
    ).fetchone()
    assert row is not None
    loaded, quarantined = int(row[0]), int(row[1]) + rejected
    return Stored(loaded + quarantined, loaded, quarantined, list(row[2]), int(row[3]))


def _refresh_runs(conn: Connection, source: str, run_ids: list[str]) -> None:
    """Recompute the `runs` summary of the runs this file touched."""
    if not run_ids:
        return
    conn.execute(
        """
        INSERT OR REPLACE INTO runs
        WITH wanted AS (SELECT unnest(?::VARCHAR[]) AS run_id),
        tx AS (
            SELECT run_id, count(*) AS loaded,
                   count(*) FILTER (outcome = 'success') AS succeeded,
                   count(*) FILTER (outcome = 'failure') AS failed,
                   min(processed_at) AS first_at, max(processed_at) AS last_at,
                   list(DISTINCT file_id) AS file_ids
            FROM transactions WHERE source = ? AND run_id IN (SELECT run_id FROM wanted)
            GROUP BY run_id),
        q AS (
            SELECT run_id, count(*) AS quarantined, list(DISTINCT file_id) AS file_ids
            FROM quarantine WHERE source = ? AND kind = 'processed'
              AND run_id IN (SELECT run_id FROM wanted)
            GROUP BY run_id),
        joined AS (
            SELECT w.run_id,
                   list_sort(list_distinct(list_concat(coalesce(tx.file_ids, []),
                                                       coalesce(q.file_ids, [])))) AS file_ids,
                   coalesce(tx.loaded, 0) AS loaded, coalesce(tx.succeeded, 0) AS succeeded,
                   coalesce(tx.failed, 0) AS failed, coalesce(q.quarantined, 0) AS quarantined,
                   tx.first_at, tx.last_at
            FROM wanted w LEFT JOIN tx USING (run_id) LEFT JOIN q USING (run_id))
        SELECT ?, j.run_id, j.file_ids, j.loaded, j.succeeded, j.failed, j.quarantined,
               j.first_at, j.last_at,
               (SELECT min(ingested_at) FROM ingested_files WHERE list_contains(j.file_ids, file_id)),
               (SELECT max(ingested_at) FROM ingested_files WHERE list_contains(j.file_ids, file_id)),
               (SELECT arg_max(ingested_by, ingested_at) FROM ingested_files
                 WHERE list_contains(j.file_ids, file_id))
        FROM joined j WHERE len(j.file_ids) > 0
        """,
        [run_ids, source, source, source],
    )


_MASKERS = ("recon_mask", "recon_mask_card", "recon_mask_key", "recon_mask_id", "recon_pan_hmac")


class _NeedsPython(Exception):
    """A value needs a Python masker: load the file again with them registered."""


def _needs_python(exc: BaseException | None) -> bool:
    """Whether `exc` comes from a stand-in, perhaps hidden by a later statement's error."""
    while exc is not None:
        if isinstance(exc, _NeedsPython) or NEEDS_PYTHON in str(exc):
            return True
        exc = exc.__context__
    return False


def _python_first(path: Path) -> bool:
    """Register the Python maskers at once: numpy (which registering imports, 70-130 ms) is
    loaded, or the file is over 4 MB (a pass wasted on a late value needing one costs more)."""
    return "numpy" in sys.modules or (path.is_file() and path.stat().st_size > 4 << 20)


def _register_stand_ins(conn: Connection) -> None:
    """SQL stand-ins for the Python maskers (`readers.stand_in`), which the SQL prefilters call
    only on values that might hold a card number."""
    for name in _MASKERS:
        stand_in(conn, name)


def _register_functions(conn: Connection, key: bytes | None) -> None:
    """The Python side of masking, callable from SQL (only on rows the prefilter flags)."""
    functions = {
        "recon_mask": lambda value: redact.mask_pans(value),
        "recon_mask_card": redact.mask_card_value,
        "recon_mask_key": lambda value: redact.mask_key(value, key),
        "recon_mask_id": redact.mask_id,  # an id column (`order_id`): judged as an id
        "recon_pan_hmac": lambda value: redact.pan_fingerprint(value, key),
    }
    for name, function in functions.items():
        with contextlib.suppress(QueryError):  # a stand-in (a Python function is no macro)
            conn.execute(f"DROP MACRO IF EXISTS {name}")
        with contextlib.suppress(QueryError):
            conn.remove_function(name)
        conn.create_function(name, function, ["VARCHAR"], "VARCHAR", side_effects=False)


def _drop_temporaries(conn: Connection) -> None:
    for statement in (
        "DROP VIEW IF EXISTS recon_lined",
        "DROP VIEW IF EXISTS recon_numbered",
        "DROP VIEW IF EXISTS recon_rejects_lined",
        "DROP VIEW IF EXISTS recon_raw",
        "DROP VIEW IF EXISTS recon_lines",
        "DROP TABLE IF EXISTS recon_staged",
        "DROP TABLE IF EXISTS recon_shifts",
        "DROP TABLE IF EXISTS recon_reject_lines",
        "DROP TABLE IF EXISTS recon_rejects",
        "DROP TABLE IF EXISTS recon_rejects_scan",
    ):
        conn.execute(statement)


class _AlreadyIngested(Exception):
    """Raised inside the transaction to roll it back when the bytes were loaded before."""

    def __init__(self, result: FileResult) -> None:
        self.result = result


def _prior(conn: Connection, shown: str, source: str, kind: str, digest: str) -> FileResult | None:
    """The earlier load of these bytes as this source and kind (one record per the three)."""
    row = conn.execute(
        "SELECT f.file_id, f.kind, f.format, f.run_ids, f.rows_read, f.rows_loaded, "
        "f.rows_quarantined, r.path, f.ingested_at, f.path FROM ingested_files f "
        "LEFT JOIN ingested_files r ON r.file_id = f.replaced_by "
        "WHERE f.source = ? AND f.kind = ? AND f.sha256 = ?",
        [source, kind, digest],
    ).fetchone()
    if row is None:
        return None
    file_id, kind, fmt, run_ids, read, loaded, quarantined, replaced_by, at, path = row
    notes = [f"its rows were replaced later by {replaced_by}"] if replaced_by else []
    if path != shown:
        notes.append(f"loaded then as {path}")
    return FileResult(
        shown,
        digest,
        source,
        kind,
        fmt,
        list(run_ids),
        read,
        loaded,
        quarantined,
        True,
        file_id,
        notes,
        ingested_at=at,
    )


def _other_kinds(conn: Connection, source: str, kind: str, digest: str) -> list[str]:
    """Earlier loads of the same bytes for the source as another kind: likely a wrong --kind."""
    rows = conn.execute(
        "SELECT kind, file_id FROM ingested_files WHERE source = ? AND sha256 = ? AND kind <> ? "
        "ORDER BY file_id",
        [source, digest, kind],
    ).fetchall()
    return [
        f"the same bytes were loaded before as {k} (file {i}); if that was a mistake, remove "
        f"that load with `recon forget {i}`"
        for k, i in rows
    ]


def ingest_file(
    conn: Connection,
    path: Path,
    *,
    source: str,
    config: SourceConfig,
    kind: str = "processed",
    run_id: str | None = None,
    now: datetime,
    user: str,
    pan_key: bytes | None = None,
    on_runs: OnRuns | None = None,
    report_date: date | None = None,
    replace: bool = False,
    keep: Sequence[int] = (),
    name: str | None = None,
) -> FileResult:
    """Load one file in one transaction, or report that these bytes were already loaded.
    `name` is what the file is called in the store and the audit trail (default: `path` as
    given). The runs of a run log are passed to `on_runs` in the same transaction (the
    watchdog's monitors hear them there); without it, no one is told (the HTTP API signals
    at `.../complete` instead). A Ctrl-C while it loads rolls it back and raises `Interrupted`,
    whatever DuckDB made of it."""
    shown = redact.mask_pans(str(path) if name is None else name) or ""
    with _noticing_interrupts() as interrupted:
        try:
            load = functools.partial(
                _ingest_file,
                conn,
                path,
                source=source,
                config=config,
                kind=kind,
                run_id=run_id,
                now=now,
                user=user,
                pan_key=pan_key,
                on_runs=on_runs,
                report_date=report_date,
                replace=replace,
                keep=keep,
                name=name,
            )
            python = _python_first(path)
            try:
                return load(python=python)
            except Exception as exc:
                if python or not _needs_python(exc):
                    raise
            return load(python=True)  # rolled back: again, with the Python maskers
        except (Exception, KeyboardInterrupt) as exc:
            if isinstance(exc, KeyboardInterrupt) or interrupted():
                raise Interrupted(shown) from None
            raise


def _ingest_file(
    conn: Connection,
    path: Path,
    *,
    source: str,
    config: SourceConfig,
    kind: str,
    run_id: str | None,
    now: datetime,
    user: str,
    pan_key: bytes | None,
    on_runs: OnRuns | None,
    report_date: date | None,
    replace: bool,
    keep: Sequence[int],
    name: str | None,
    python: bool,
) -> FileResult:
    described = kind_of(kind)
    # Identifiers enter here whoever calls (CLI, API, mail watcher): the file's name as stored
    # and shown, the source and the given run id carry no card number. The path itself is kept
    # only to read the file.
    shown = redact.mask_pans(str(path) if name is None else name) or ""
    shown_name = display_name(shown)
    source = redact.mask_pans(source) or source
    run_id = redact.mask_pans(run_id)
    undated_day = report_date
    if described.run_log and undated_day is None:
        undated_day = business_day(now, config)
    fmt = detect_format(path, config) if path.is_file() else "csv"
    check_readable(path, fmt, config.encoding)
    if python:
        _register_functions(conn, pan_key)
    else:
        _register_stand_ins(conn)
    warnings: list[str] = []
    # Scan the file (hash it) while DuckDB sniffs it (both release the GIL); the digest then
    # decides whether these bytes were already loaded, before any real work.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(scan_file, path)
        try:
            with transaction(conn):
                try:
                    plan = read(conn, path, fmt, config, python=python)
                    scan = hashing.result()
                    digest = scan.sha256
                    prior = _prior(conn, shown, source, kind, digest)
                    if prior and not replace:
                        raise _AlreadyIngested(prior)
                    warnings.extend(_other_kinds(conn, source, kind, digest))
                    map_columns(plan, kind, config, run_id, source)
                    if not python and _has_card_column(plan, config):
                        raise _NeedsPython  # every card value goes to Python
                    if fmt == "csv" and scan.plain and config.encoding in ("utf-8", "latin-1"):
                        plan.may_hold_nul, plan.may_span_lines = scan.has_nul, scan.has_quotes
                    with session_time_zone(conn, config.timezone):
                        conn.execute(
                            "CREATE OR REPLACE TEMP TABLE recon_staged AS "
                            + Stage(plan, config, run_id, undated_day).sql(kind, pan_key)
                        )
                except QueryError as exc:
                    if _needs_python(exc):
                        raise
                    raise explain_read_error(path, fmt, exc, config) from None
                rejects = _line_numbers(conn, plan)
                file_row = conn.execute("SELECT nextval('file_id_seq')").fetchone()
                assert file_row is not None
                file_id = int(file_row[0])
                replaced = (
                    supersede(
                        conn,
                        source=source,
                        kind=kind,
                        file_id=file_id,
                        same_bytes=prior.file_id if prior else None,
                        keep=keep,
                    )
                    if replace
                    else None
                )
                stored = _store(conn, plan, shown, described, source, file_id, now, user, rejects)
                record_masked(conn, source, kind, file_id)  # issue 13: masked values per column
                rows_read, loaded, quarantined = stored.read, stored.loaded, stored.quarantined
                run_ids, undated = stored.run_ids, stored.undated
                conn.execute(
                    "INSERT INTO ingested_files VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    [
                        file_id,
                        source,
                        kind,
                        shown,
                        digest,
                        path.stat().st_size,
                        fmt,
                        rows_read,
                        loaded,
                        quarantined,
                        run_ids,
                        now,
                        user,
                        versions.current(conn),
                        __version__,
                    ],
                )
                audit.record(
                    conn,
                    "ingest",
                    f"{source}:{shown_name}",
                    now=now,
                    details={
                        "path": shown,
                        "sha256": digest,
                        "kind": kind,
                        "format": fmt,
                        "rows_read": rows_read,
                        "rows_loaded": loaded,
                        "rows_quarantined": quarantined,
                        "runs": run_ids[:50],
                        "replaced": asdict(replaced) if replaced else None,
                    },
                )
                if described.run_log:
                    if replaced:
                        # Runs left with no rows lose their summary; the rest are recomputed.
                        conn.execute(
                            "DELETE FROM runs WHERE source = ? AND list_contains(?, run_id)",
                            [source, replaced.runs],
                        )
                    _refresh_runs(
                        conn, source, sorted(set(run_ids) | set(replaced.runs if replaced else []))
                    )
                    if on_runs is not None:
                        on_runs(conn, source, run_ids, now=now, origin="file", what=shown_name)
        except _AlreadyIngested as skipped:
            return skipped.result
        finally:
            hashing.cancel()
            _drop_temporaries(conn)
    if described.run_log and not pan_key and _has_card_column(plan, config):
        warnings.append(
            "card numbers were masked, but RECON_PAN_KEY is not set, so the same card cannot "
            "be matched across runs; set RECON_PAN_KEY to a long random secret kept outside "
            "the database, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if rows_read == 0:
        warnings.append("the file has a header but no rows")
    if undated and report_date is None:
        warnings.append(
            f"{undated} row(s) carry neither business_date nor processed_at: they are dated "
            f"{undated_day}, the business day when they were ingested ({config.timezone}, "
            f"cut-off {config.cutoff:%H:%M}); to give the file's day yourself, ingest it again "
            "with --replace --date YYYY-MM-DD"
        )
    return FileResult(
        shown,
        digest,
        source,
        kind,
        fmt,
        run_ids,
        rows_read,
        loaded,
        quarantined,
        False,
        file_id,
        warnings,
        asdict(replaced) if replaced is not None else None,
        now,
    )


def _has_card_column(plan: Plan, config: SourceConfig) -> bool:
    return any(redact.is_card_column(name, config.card_columns) for name in plan.columns)


def display_name(shown: str) -> str:
    """The file's name without its folder (the object of its audit events): the name the
    CLI's user, the mail's sender or the API gave it, wherever it was staged."""
    return PurePosixPath(shown).name or shown
