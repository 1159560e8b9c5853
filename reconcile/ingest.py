"""Files -> validated, masked rows stamped with their run; atomic and idempotent.

One file is one transaction: it loads whole or not at all, whatever kills the process. The
work is SQL in DuckDB, in three steps:

1. *read*: a temporary view over DuckDB's own reader (`read_csv`, `read_text` for JSON Lines,
   `read_parquet`), every column as text, each row numbered. Nothing is materialised here, so
   raw values (card numbers included) never land in a table.
2. *stage*: one pass computes typed values, masked text and the first problem of each row into
   a temporary table. Card numbers are masked here, before anything is stored.
3. *store*: good rows go to their table, bad rows to `quarantine` with line, column, reason and
   the masked raw row; `rows_read == rows_loaded + rows_quarantined` by construction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal

from reconcile import redact
from reconcile.db import Connection, QueryError, transaction
from reconcile.errors import InputFileError
from reconcile.settings import SourceConfig

Kind = Literal["processed", "expected", "totals"]
KINDS: tuple[str, ...] = ("processed", "expected", "totals")

# Canonical columns per kind: (required, optional). See PRODUCT.md "Canonical files".
KIND_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "processed": (
        ("txn_id", "amount", "status", "run_id"),
        ("currency", "processed_at", "business_date", "error_code", "error_message"),
    ),
    "expected": (("txn_id", "amount"), ("currency", "business_date", "run_id")),
    "totals": (("run_id", "expected_count"), ("expected_amount",)),
}
CANONICAL_COLUMNS = frozenset(
    name for required, optional in KIND_COLUMNS.values() for name in required + optional
)
# Canonical columns parsed into typed values; everything else is stored as (masked) text.
TYPED_COLUMNS = frozenset(
    {"amount", "processed_at", "business_date", "expected_count", "expected_amount"}
)

WITHHELD = "[line withheld: it may hold a card verification code or track data]"
# A quoted JSON key that must never be stored, to withhold unparsable JSON lines that have one.
NEVER_STORED_KEY_SQL = '"(' + "|".join(sorted(redact.NEVER_STORED_COLUMNS)) + ')"'
_PREFILTER = "'" + redact.PAN_PREFILTER_SQL.replace("'", "''") + "'"  # as a SQL literal
KEY_COLUMNS = frozenset({"txn_id", "run_id"})
MAX_LINE_BYTES = 16 * 1024 * 1024
_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or an Excel workbook (XLSX); save the sheet as CSV",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\xd0\xcf\x11\xe0": "a legacy Excel/Office file (XLS); save the sheet as CSV",
}


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

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Plan:
    """What the stage step needs to know about one file."""

    path: Path
    format: str
    columns: list[str]  # the file's columns, in order
    mapping: dict[str, str]  # canonical name -> file column
    header_lines: int = 0
    has_rejects: bool = False
    raw_sql: str = "recon_raw"  # the relation step 2 reads: a temporary view, or a reader

    @property
    def withhold_raw_lines(self) -> bool:
        """Unparsed lines cannot have single fields dropped: withhold them when the file has a
        column that must never be stored (CVV, track data)."""
        return any(redact.is_never_stored(name) for name in self.columns)


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _normalise(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def detect_format(path: Path, config: SourceConfig) -> str:
    """csv, jsonl or parquet: configured, else by magic bytes, else by extension."""
    if config.format != "auto":
        return config.format
    with path.open("rb") as handle:
        head = handle.read(8192)
    if head.startswith(b"PAR1"):
        return "parquet"
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if {".jsonl", ".ndjson", ".json"} & set(suffixes):
        return "jsonl"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


def _check_readable(path: Path, fmt: str, encoding: str = "utf-8") -> None:
    """Refuse files that are not there, empty, or clearly not a text log."""
    display = str(path)
    if not path.exists():
        raise InputFileError(display, "no such file", "check the path and try again")
    if not path.is_file():
        raise InputFileError(display, "not a regular file", "give the path of a log file")
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as exc:
        raise InputFileError(
            display, f"cannot be read ({exc.strerror})", "check its permissions"
        ) from None
    if not head:
        raise InputFileError(
            display,
            "the file is empty (0 bytes)",
            "check that the export finished, then re-send it",
        )
    if fmt == "parquet":
        return
    if not head.strip() and path.stat().st_size == len(head):
        raise InputFileError(
            display,
            "the file has no records (only blank lines)",
            "check that the export finished, then re-send it",
        )
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(
                display,
                f"this is not a text log: it looks like {what}",
                "give the CSV, JSON Lines or Parquet file the source produced",
            )
    if head.startswith(b"\x1f\x8b") or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # gzip is decompressed by DuckDB; UTF-16 (by its BOM) is read as such
    if encoding == "utf-16":
        return
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    if control > len(head) * 0.1:
        raise InputFileError(
            display,
            "this is not a text log: more than 10% of its first bytes are binary control codes",
            "give the CSV, JSON Lines or Parquet file the source produced",
        )


# --- step 1: read -------------------------------------------------------------------------


def _read_csv(conn: Connection, path: Path, config: SourceConfig) -> _Plan:
    with path.open("rb") as handle:
        utf16_bom = handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
    encoding = "utf-16" if utf16_bom else config.encoding
    options = [
        "all_varchar = true",
        "store_rejects = true",
        "rejects_table = 'recon_rejects'",
        "rejects_scan = 'recon_rejects_scan'",
        f"max_line_size = {MAX_LINE_BYTES}",
        f"encoding = {_literal(encoding)}",
    ]
    if config.delimiter:
        options.append(f"delim = {_literal(config.delimiter)}")
    # No row number here: a window over the reader would serialise it. The staged table keeps
    # file order, so its rowid numbers the records (see _line_numbers). No view either: every
    # bind of read_csv sniffs the file again, so it is bound twice only (here and when staged).
    reader = f"(SELECT * FROM read_csv({_literal(str(path))}, {', '.join(options)}))"
    columns = [row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    has_header = not all(name == f"column{i}" for i, name in enumerate(columns))
    return _Plan(
        path,
        "csv",
        columns,
        {},
        header_lines=1 if has_header else 0,
        has_rejects=True,
        raw_sql=reader,
    )


def _read_jsonl(conn: Connection, path: Path) -> _Plan:
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_lines AS "
        "SELECT __rec, __text, "
        "CASE WHEN json_valid(__text) THEN json_type(__text) = 'OBJECT' ELSE false END AS __ok FROM ("
        "  SELECT unnest(generate_series(1, len(lines))) AS __rec,"
        "         rtrim(ltrim(unnest(lines), chr(65279)), chr(13)) AS __text"
        f"  FROM (SELECT string_split(content, chr(10)) AS lines FROM read_text({_literal(str(path))}))"
        ") WHERE trim(__text) <> ''"
    )
    keys = [
        row[0]
        for row in conn.execute(
            "SELECT key FROM (SELECT unnest(json_keys(__text)) AS key, __rec FROM recon_lines "
            "WHERE __ok) GROUP BY key ORDER BY min(__rec), key"
        ).fetchall()
    ]
    if not keys:
        counted = conn.execute("SELECT count(*) FROM recon_lines").fetchone()
        problem = (
            "no line holds a JSON object; is this really a JSON Lines file?"
            if counted and counted[0]
            else "the file has no records (only blank lines)"
        )
        raise InputFileError(str(path), problem, "give the JSON Lines log the source produced")
    extracted = ", ".join(f"{_json_value(key)} AS {_ident(key)}" for key in keys)
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_raw AS SELECT __rec, "
        "CASE WHEN NOT __ok THEN __text END AS __broken"
        + (f", {extracted}" if extracted else "")
        + " FROM recon_lines"
    )
    return _Plan(path, "jsonl", keys, {})


def _json_value(key: str) -> str:
    """A JSON field as text; numbers go through DECIMAL, not a double, so amounts stay exact."""
    path = _literal("$." + json.dumps(key))
    exact = (
        f"rtrim(rtrim(json_transform(__text, {_literal(json.dumps({key: 'DECIMAL(38,10)'}))})."
        f"{_ident(key)}::VARCHAR, '0'), '.')"
    )
    return (
        f"CASE WHEN NOT __ok THEN NULL "
        f"WHEN json_type(__text, {path}) = 'DOUBLE' THEN coalesce({exact}, "
        f"json_extract_string(__text, {path})) "
        f"ELSE json_extract_string(__text, {path}) END"
    )


def _read_parquet(conn: Connection, path: Path) -> _Plan:
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_raw AS SELECT file_row_number + 1 AS __rec, "
        "COLUMNS(* EXCLUDE (file_row_number))::VARCHAR "
        f"FROM read_parquet({_literal(str(path))}, file_row_number = true)"
    )
    columns = [name for name in _view_columns(conn) if name != "__rec"]
    return _Plan(path, "parquet", columns, {})


def _view_columns(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute("DESCRIBE recon_raw").fetchall()]


def _explain_read_error(
    path: Path, fmt: str, exc: Exception, config: SourceConfig
) -> InputFileError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = redact.mask_pans(text) or text
    lowered = text.lower()
    display = str(path)
    if fmt == "parquet":
        return InputFileError(
            display,
            f"not a readable Parquet file ({text}); it may be truncated or corrupt",
            "copy or export the file again and re-run the ingest",
        )
    if "sniff" in lowered:
        return InputFileError(
            display,
            "the CSV layout (delimiter, quoting, line endings) could not be detected",
            "check that every line ends the same way (all LF or all CRLF) and that the first "
            "line is a header; set delimiter under [sources.NAME] in recon.toml if it is unusual",
        )
    if "utf-8" in lowered or "unicode" in lowered:
        return InputFileError(
            display,
            f"the file is not valid {config.encoding.upper()} text",
            'declare its encoding under [sources.NAME] in recon.toml, e.g. encoding = "latin-1"',
        )
    return InputFileError(
        display,
        f"cannot be parsed as {fmt.upper()} ({text})",
        "check that it is a complete CSV, JSON Lines or Parquet export",
    )


def _map_columns(
    plan: _Plan, kind: str, config: SourceConfig, run_id: str | None, source: str
) -> None:
    """Find each canonical column in the file (case-insensitive), or explain what is missing."""
    by_name = {_normalise(name): name for name in plan.columns}
    required, optional = KIND_COLUMNS[kind]
    missing = []
    for canonical in required + optional:
        wanted = config.columns.get(canonical, canonical)
        actual = by_name.get(_normalise(wanted))
        if actual is not None:
            plan.mapping[canonical] = actual
        elif canonical in required and not (canonical == "run_id" and run_id):
            missing.append(
                canonical if wanted == canonical else f"{canonical} (mapped to '{wanted}')"
            )
    if missing:
        found = ", ".join(plan.columns[:20]) or "none"
        header_note = (
            " (no header row was detected)"
            if plan.format == "csv" and plan.header_lines == 0
            else ""
        )
        hint = (
            f"add the column, or map it in recon.toml: [sources.{source}.columns] "
            f'{missing[0].split(" ")[0]} = "<your column name>"'
        )
        if "run_id" in missing:
            hint += "; or give the run with --run-id"
        raise InputFileError(
            str(plan.path),
            f"missing required column(s) for a {kind} file: {', '.join(missing)}; "
            f"columns found: {found}{header_note}",
            hint,
        )


# --- step 2: stage ---------------------------------------------------------------------------


def _amount_sql(expr: str) -> str:
    """Text -> DECIMAL: plain decimals first (fast path), then "1,234.50" and "(12.00)"."""
    return (
        f"coalesce(try_cast({expr} AS DECIMAL(18, 4)), CASE "
        f"WHEN regexp_full_match({expr}, '\\(([0-9.,]+)\\)') "
        f"THEN -try_cast(replace(trim({expr}, '()'), ',', '') AS DECIMAL(18, 4)) "
        f"WHEN regexp_full_match({expr}, '[+-]?[0-9]{{1,3}}(,[0-9]{{3}})+(\\.[0-9]+)?') "
        f"THEN try_cast(replace({expr}, ',', '') AS DECIMAL(18, 4)) END)"
    )


def _cutoff_shift(cutoff: time) -> int:
    """Seconds to add to local time so that the business day turns over at `cutoff`."""
    seconds = cutoff.hour * 3600 + cutoff.minute * 60 + cutoff.second
    return 0 if seconds == 0 else 86400 - seconds


_OUTPUTS = {
    "processed": [
        "run_id",
        "txn_id",
        "amount",
        "currency",
        "status",
        "outcome",
        "processed_at",
        "business_date",
        "error_code",
        "error_message",
        "card_hmac",
        "attributes",
    ],
    "expected": ["run_id", "txn_id", "amount", "currency", "business_date", "attributes"],
    "totals": ["run_id", "expected_count", "expected_amount"],
}


class _Stage:
    """Builds the one SELECT that types, masks and judges every row of `recon_raw`.

    Three nested layers: flags per raw row (`__pan`: may hold a card number), typed values
    (`__v_*`, named apart from the file's own columns), then the first problem of each row.
    """

    def __init__(self, plan: _Plan, config: SourceConfig, run_id: str | None) -> None:
        self.plan = plan
        self.config = config
        self.run_id = run_id
        self.mapped_to = {actual: canonical for canonical, actual in plan.mapping.items()}
        self.sensitive = {_normalise(name) for name in config.sensitive_columns}
        self.card_columns = {_normalise(name) for name in config.card_columns}
        self.kept = [name for name in plan.columns if not redact.is_never_stored(name)]
        self.values: dict[str, str] = {}
        self.derived: dict[str, str] = {}  # computed from `values`, one layer further out
        # (condition, column, reason as SQL): the first that holds is the row's problem.
        self.problems: list[tuple[str, str | None, str]] = []

    def is_card(self, name: str) -> bool:
        return redact.is_card_column(name) or _normalise(name) in self.card_columns

    def masked(self, name: str) -> str:
        column = _ident(name)
        if _normalise(name) in self.sensitive:
            return f"CASE WHEN {column} IS NOT NULL THEN {_literal(redact.WHOLE_MASK)} END"
        if self.is_card(name):
            return f"recon_mask_card({column})"
        return (
            f"CASE WHEN __pan AND regexp_matches({column}, {_PREFILTER}) "
            f"THEN recon_mask({column}) ELSE {column} END"
        )

    def raw(self, canonical: str) -> str:
        actual = self.plan.mapping.get(canonical)
        return f"nullif({_ident(actual)}, '')" if actual else "NULL::VARCHAR"

    def text(self, canonical: str) -> str:
        actual = self.plan.mapping.get(canonical)
        if actual is None:
            return "NULL::VARCHAR"
        if canonical in KEY_COLUMNS and self.masked(actual).startswith("CASE WHEN __pan"):
            # A key that holds a card number is masked but must stay distinct from other keys.
            column = _ident(actual)
            return (
                f"nullif(CASE WHEN __pan AND regexp_matches({column}, {_PREFILTER}) "
                f"THEN recon_mask_key({column}) ELSE {column} END, '')"
            )
        return f"nullif({self.masked(actual)}, '')"

    def _trimmed(self) -> str:
        """` REPLACE (...)` trimming the canonical columns; cheap where there is nothing to trim."""
        columns = [_ident(actual) for actual in self.plan.mapping.values()]
        if not columns:
            return ""
        return (
            " REPLACE ("
            + ", ".join(
                f"CASE WHEN starts_with({c}, ' ') OR ends_with({c}, ' ') THEN trim({c}) ELSE {c} END"
                f" AS {c}"
                for c in columns
            )
            + ")"
        )

    def problem(self, condition: str, column: str | None, reason: str) -> None:
        self.problems.append((condition, column, _literal(reason)))

    def common(self, kind: str) -> None:
        if self.plan.format == "jsonl":
            self.problem("__broken IS NOT NULL", None, "not a valid JSON object")
        self.problem("__nul", None, "contains a NUL byte (binary data inside a text field)")
        given = _literal(self.run_id) if self.run_id else "NULL::VARCHAR"
        self.values["run_id"] = f"coalesce({self.text('run_id')}, {given})"
        if kind in ("processed", "totals"):
            self.problem("__v_run_id IS NULL", "run_id", "empty run_id; fill it or give --run-id")

    def transactions(self) -> None:
        """Columns shared by processed logs and expected manifests."""
        extras = [name for name in self.kept if name not in self.mapped_to]
        self.values |= {
            "txn_id": self.text("txn_id"),
            "amount": _amount_sql(self.raw("amount")),
            "amount_given": f"{self.raw('amount')} IS NOT NULL",
            "amount_too_precise": f"coalesce(length({self.raw('amount')}) - "
            f"strpos({self.raw('amount')}, '.') > 4 AND strpos({self.raw('amount')}, '.') > 0 "
            f"AND regexp_matches({self.raw('amount')}, '\\.[0-9]{{4}}0*[1-9]'), false)",
            "currency": f"upper({self.text('currency')})",
            "business_date": f"try_cast({self.raw('business_date')} AS DATE)",
            "business_date_given": f"{self.raw('business_date')} IS NOT NULL",
            "attributes": (
                "json_object(" + ", ".join(f"{_literal(n)}, {self.masked(n)}" for n in extras) + ")"
                if extras
                else "NULL::JSON"
            ),
        }
        self.problem("__v_txn_id IS NULL", "txn_id", "empty txn_id")
        self.problem("NOT __v_amount_given", "amount", "empty amount")
        self.problem(
            "__v_amount IS NULL",
            "amount",
            "amount is not a number (write digits with a '.' decimal point)",
        )
        self.problem(
            "__v_amount_too_precise",
            "amount",
            "amount has more than 4 decimal places; amounts are stored exactly, never rounded",
        )
        self.problem(
            "__v_currency IS NOT NULL AND NOT regexp_full_match(__v_currency, '[A-Z]{3}')",
            "currency",
            "currency is not a 3-letter ISO 4217 code",
        )
        self.problem(
            "__v_business_date_given AND __v_business_date IS NULL",
            "business_date",
            "business_date is not a valid date (YYYY-MM-DD)",
        )

    def processed(self, key: bytes | None) -> None:
        config = self.config
        success = ", ".join(_literal(v.strip().upper()) for v in config.success_values)
        failure = ", ".join(_literal(v.strip().upper()) for v in config.failure_values)
        known = ", ".join(v.strip().upper() for v in config.success_values + config.failure_values)
        zone = _literal(config.timezone)
        ts = self.raw("processed_at")
        # Ends in Z or +hh[:mm]: cheap character tests before the regular expression.
        offset = (
            f"(right({ts}, 1) IN ('Z', 'z') OR (contains(right({ts}, 6), '+') "
            f"OR contains(right({ts}, 6), '-')) "
            f"AND regexp_matches({ts}, '[0-9]:[0-9]{{2}}(:[0-9]{{2}}([.,][0-9]+)?)?[+-][0-9]{{2}}(:?[0-9]{{2}})?$'))"
        )
        status = f"upper({self.text('status')})"
        card = next((name for name in self.kept if self.is_card(name)), None)
        self.values |= {
            "status": self.text("status"),
            "status_key": status,
            # An explicit offset is honoured; a naive time is in the source's zone.
            # try_cast to TIMESTAMP drops an offset, so it is used only where there is none.
            "processed_offset": f"CASE WHEN {offset} THEN try_cast({ts} AS TIMESTAMPTZ) END",
            "processed_local": f"CASE WHEN NOT {offset} THEN try_cast({ts} AS TIMESTAMP) END",
            "processed_at_given": f"{ts} IS NOT NULL",
            "error_code": self.text("error_code"),
            "error_message": self.text("error_message"),
            "card_hmac": f"recon_pan_hmac({_ident(card)})" if card and key else "NULL::VARCHAR",
        }
        self.derived |= {
            # list_contains, not IN: DuckDB plans a long IN list as a join.
            "outcome": f"CASE WHEN list_contains([{success}], __v_status_key) THEN 'success' "
            f"WHEN list_contains([{failure}], __v_status_key) THEN 'failure' END",
            "processed_at": f"coalesce(__v_processed_offset, timezone({zone}, __v_processed_local))",
        }
        self.problem("__v_status IS NULL", "status", "empty status")
        self.problems.append(
            (
                "__v_outcome IS NULL",
                "status",
                "'unknown status ''' || left(__v_status, 40) || '''; known values: "
                + known.replace("'", "''")
                + " (add it to success_values or failure_values in recon.toml)'",
            )
        )
        self.problem(
            "__v_processed_at_given AND __v_processed_at IS NULL",
            "processed_at",
            "processed_at is not a valid ISO 8601 timestamp (impossible date or time?)",
        )

    def totals(self) -> None:
        self.values |= {
            "expected_count": f"try_cast({self.raw('expected_count')} AS BIGINT)",
            "expected_amount": _amount_sql(self.raw("expected_amount")),
            "expected_amount_given": f"{self.raw('expected_amount')} IS NOT NULL",
        }
        self.problem(
            "__v_expected_count IS NULL OR __v_expected_count < 0",
            "expected_count",
            "expected_count is not a whole number >= 0",
        )
        self.problem(
            "__v_expected_amount_given AND __v_expected_amount IS NULL",
            "expected_amount",
            "expected_amount is not a number",
        )

    def sql(self, kind: str, key: bytes | None) -> str:
        self.common(kind)
        if kind in ("processed", "expected"):
            self.transactions()
        if kind == "processed":
            self.processed(key)
        if kind == "totals":
            self.totals()
        final = {name: f"__v_{name}" for name in _OUTPUTS[kind]}
        if kind == "processed":
            # The business day: from the file, else processed_at in the source's zone, turning
            # over at its cut-off time.
            local = (
                f"coalesce(__v_processed_local, "
                f"timezone({_literal(self.config.timezone)}, __v_processed_offset))"
            )
            final["business_date"] = (
                f"coalesce(__v_business_date, "
                f"CAST({local} + INTERVAL {_cutoff_shift(self.config.cutoff)} SECOND AS DATE))"
            )
        text_columns = [n for n in self.kept if self.mapped_to.get(n) not in TYPED_COLUMNS]
        concat = (
            "concat_ws('x', " + ", ".join(_ident(n) for n in text_columns) + ")"
            if text_columns
            else "''"
        )
        newlines = (
            "CASE WHEN contains(__cat, chr(10)) "
            "THEN length(__cat) - length(replace(__cat, chr(10), '')) ELSE 0 END"
            if self.plan.format == "csv"
            else "0"
        )
        flagged = (
            f"SELECT * EXCLUDE (__cat), "
            f"regexp_matches(__cat, {_PREFILTER}) AS __pan, "
            f"contains(__cat, chr(0)) AS __nul, {newlines} AS __nl "
            f"FROM (SELECT *{self._trimmed()}, {concat} AS __cat FROM {self.plan.raw_sql})"
        )
        # The raw row is built only for quarantined rows. Whole-masked and card columns are
        # masked in it as well; the rest of it goes through recon_mask.
        raw_values = ", ".join(
            f"{_literal(n)}, "
            + (self.masked(n) if _normalise(n) in self.sensitive or self.is_card(n) else _ident(n))
            for n in self.kept
        )
        raw_row = f"json_object({raw_values})::VARCHAR" if self.kept else "'{}'"
        if self.plan.format == "jsonl":
            broken = (
                f"CASE WHEN regexp_matches(regexp_replace(lower(__broken), '[^a-z0-9\"]', '', 'g'), "
                f"{_literal(NEVER_STORED_KEY_SQL)}) THEN {_literal(WITHHELD)} ELSE __broken END"
            )
            raw_row = f"coalesce({broken}, {raw_row})"
        typed = (
            "SELECT *, "
            + ", ".join(f"{expr} AS __v_{name}" for name, expr in self.values.items())
            + f" FROM ({flagged})"
        )
        if self.derived:
            typed = (
                "SELECT *, "
                + ", ".join(f"{expr} AS __v_{name}" for name, expr in self.derived.items())
                + f" FROM ({typed})"
            )
        problem = (
            "CASE "
            + " ".join(
                f"WHEN {cond} THEN {{'column': {_literal(col) if col else 'NULL::VARCHAR'}, "
                f"'reason': {reason}}}"
                for cond, col, reason in self.problems
            )
            + " END"
        )
        record = "NULL::BIGINT" if self.plan.format == "csv" else "__rec"
        return (
            f"SELECT {record} AS __rec, __nl, "
            + ", ".join(f"{expr} AS {name}" for name, expr in final.items())
            + ", __problem.column AS __problem_column, __problem.reason AS __problem_reason, "
            f"CASE WHEN __problem IS NOT NULL THEN recon_mask({raw_row}) END AS __raw "
            f"FROM (SELECT *, {problem} AS __problem FROM ({typed}))"
        )


# --- step 3: store ----------------------------------------------------------------------------


def _line_numbers(conn: Connection, plan: _Plan) -> bool:
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


def _store(
    conn: Connection,
    plan: _Plan,
    kind: str,
    source: str,
    file_id: int,
    now: datetime,
    user: str,
    rejects: bool,
) -> tuple[int, int, int, list[str]]:
    """Move staged rows to their tables; return (read, loaded, quarantined, run_ids)."""
    # No ORDER BY: the staged table keeps file order already, and sorting 1M rows costs seconds.
    good = "FROM recon_lined WHERE __problem_reason IS NULL"
    if kind == "processed":
        conn.execute(
            "INSERT INTO transactions SELECT ?, run_id, txn_id, amount, currency, status, outcome, "
            f"processed_at, business_date, error_code, error_message, card_hmac, attributes, ?, __line {good}",
            [source, file_id],
        )
    elif kind == "expected":
        conn.execute(
            "INSERT INTO expected_transactions SELECT ?, run_id, txn_id, amount, currency, "
            f"business_date, attributes, ?, __line {good}",
            [source, file_id],
        )
    else:
        conn.execute(
            f"INSERT INTO control_totals SELECT ?, run_id, expected_count, expected_amount, ?, __line, ?, ? {good}",
            [source, file_id, now, user],
        )
    quarantine_params = [file_id, source, kind, str(plan.path), now]
    conn.execute(
        "INSERT INTO quarantine SELECT ?, ?, ?, ?, run_id, __line, __problem_column, __problem_reason, "
        "__raw, ? FROM recon_lined WHERE __problem_reason IS NOT NULL ORDER BY __rec",
        quarantine_params,
    )
    rejected = 0
    raw_line = _literal(WITHHELD) if plan.withhold_raw_lines else "recon_mask(csv_line)"
    if rejects:
        reasons = " ".join(
            f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in _REJECT_REASONS.items()
        )
        conn.execute(
            "INSERT INTO quarantine SELECT ?, ?, ?, ?, NULL, __line, column_name, "
            f"CASE error_type::VARCHAR {reasons} ELSE 'unreadable line: ' || error_type::VARCHAR END, "
            f"json_object('line', {raw_line})::VARCHAR, ? FROM recon_rejects_lined ORDER BY line",
            quarantine_params,
        )
        count = conn.execute("SELECT count(*) FROM recon_reject_lines").fetchone()
        rejected = int(count[0]) if count else 0
    row = conn.execute(
        "SELECT count(*) FILTER (__problem_reason IS NULL), "
        "count(*) FILTER (__problem_reason IS NOT NULL), "
        "coalesce(list(DISTINCT run_id ORDER BY run_id) FILTER (run_id IS NOT NULL), []) "
        "FROM recon_staged"
    ).fetchone()
    assert row is not None
    loaded, quarantined = int(row[0]), int(row[1]) + rejected
    return loaded + quarantined, loaded, quarantined, list(row[2])


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


def _register_functions(conn: Connection, key: bytes | None) -> None:
    """The Python side of masking, callable from SQL (only on rows the prefilter flags)."""
    functions = {
        "recon_mask": redact.mask_pans,
        "recon_mask_card": redact.mask_card_value,
        "recon_mask_key": lambda value: redact.mask_key(value, key),
        "recon_pan_hmac": lambda value: redact.pan_fingerprint(value, key),
    }
    for name, function in functions.items():
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


def _read(conn: Connection, path: Path, fmt: str, config: SourceConfig) -> _Plan:
    if fmt == "csv":
        return _read_csv(conn, path, config)
    if fmt == "jsonl":
        return _read_jsonl(conn, path)
    return _read_parquet(conn, path)


def _prior(conn: Connection, path: Path, source: str, digest: str) -> FileResult | None:
    row = conn.execute(
        "SELECT file_id, kind, format, run_ids, rows_read, rows_loaded, rows_quarantined "
        "FROM ingested_files WHERE source = ? AND sha256 = ?",
        [source, digest],
    ).fetchone()
    if row is None:
        return None
    file_id, kind, fmt, run_ids, read, loaded, quarantined = row
    return FileResult(
        str(path),
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
    )


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
) -> FileResult:
    """Load one file in one transaction, or report that these bytes were already loaded."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    fmt = detect_format(path, config) if path.is_file() else "csv"
    _check_readable(path, fmt, config.encoding)
    _register_functions(conn, pan_key)
    warnings: list[str] = []
    # Hash the file while DuckDB sniffs it (both release the GIL); the digest then decides
    # whether these bytes were already loaded, before any real work.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(sha256_file, path)
        try:
            with transaction(conn):
                try:
                    plan = _read(conn, path, fmt, config)
                    digest = hashing.result()
                    prior = _prior(conn, path, source, digest)
                    if prior:
                        raise _AlreadyIngested(prior)
                    _map_columns(plan, kind, config, run_id, source)
                    conn.execute(
                        "CREATE OR REPLACE TEMP TABLE recon_staged AS "
                        + _Stage(plan, config, run_id).sql(kind, pan_key)
                    )
                except QueryError as exc:
                    raise _explain_read_error(path, fmt, exc, config) from None
                rejects = _line_numbers(conn, plan)
                file_row = conn.execute("SELECT nextval('file_id_seq')").fetchone()
                assert file_row is not None
                file_id = int(file_row[0])
                rows_read, loaded, quarantined, run_ids = _store(
                    conn, plan, kind, source, file_id, now, user, rejects
                )
                conn.execute(
                    "INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        file_id,
                        source,
                        kind,
                        str(path),
                        digest,
                        path.stat().st_size,
                        fmt,
                        rows_read,
                        loaded,
                        quarantined,
                        run_ids,
                        now,
                        user,
                    ],
                )
                if kind == "processed":
                    _refresh_runs(conn, source, run_ids)
        except _AlreadyIngested as skipped:
            return skipped.result
        finally:
            hashing.cancel()
            _drop_temporaries(conn)
    if kind == "processed" and not pan_key and _has_card_column(plan, config):
        warnings.append(
            "card numbers were masked, but RECON_PAN_KEY is not set, so the same card cannot "
            "be matched across runs; set RECON_PAN_KEY to a long random secret kept outside "
            "the database, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if rows_read == 0:
        warnings.append("the file has a header but no rows")
    return FileResult(
        str(path),
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
    )


def _has_card_column(plan: _Plan, config: SourceConfig) -> bool:
    extra = {_normalise(name) for name in config.card_columns}
    return any(redact.is_card_column(name) or _normalise(name) in extra for name in plan.columns)
