"""Step 1 of an ingest: find out what a file is and expose it to SQL, every column as text.

Nothing is materialised here, so raw values (card numbers included) never land in a table:
CSV is read by DuckDB's sniffer and reader (rejected lines kept aside with their line numbers),
JSON Lines through `read_text` (so a broken line is a row, not a failure), Parquet with its row
numbers.

Size limits, whatever the format: a field longer than MAX_FIELD_BYTES (1 MB) is not kept, its
row is quarantined naming the field; a line longer than MAX_LINE_BYTES (16 MB) is quarantined
whole, unread. A gzip file that would expand past GZIP_MAX_RATIO times its size (and past
GZIP_FREE_BYTES) is refused before anything reads it; the check streams, holding 1 MB at a time.
"""

from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from reconcile import redact
from reconcile.errors import InputFileError
from reconcile.ingest.kinds import kind_of
from reconcile.redact import normalise_name as normalise_name
from reconcile.settings import SourceConfig
from reconcile.store.db import Connection, QueryError, sql_ident, sql_literal

MAX_LINE_BYTES = 16 * 1024 * 1024  # a longer line is quarantined unread
SNIFF_MAX_LINE_BYTES = 256 * 1024 * 1024  # past it, a long line in the sample refuses the file
MAX_FIELD_BYTES = 1024 * 1024  # a longer field's row is quarantined, the value not kept
GZIP_MAX_RATIO = 200  # a gzip file may expand to this many times its size ...
GZIP_FREE_BYTES = 16 * 1024 * 1024  # ... or to this much, whichever is more
_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or an Excel workbook (XLSX); save the sheet as CSV",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\xd0\xcf\x11\xe0": "a legacy Excel/Office file (XLS); save the sheet as CSV",
}


@dataclass
class Plan:
    """What the stage step needs to know about one file."""

    path: Path
    format: str
    columns: list[str]  # the file's columns, in order
    mapping: dict[str, str]  # canonical name -> file column
    header_lines: int = 0
    has_rejects: bool = False
    raw_sql: str = "recon_raw"  # the relation step 2 reads: a temporary view, or a reader
    # What the file's bytes allow (`scan_file`); when unsure, True: the row-level check runs.
    may_hold_nul: bool = True  # a field may contain a NUL character
    may_span_lines: bool = True  # a (quoted) field may contain a line break
    rules: redact.FieldRules = field(default_factory=redact.FieldRules)  # the source's names
    nested_masker: str = "recon_mask_nested"  # the SQL name of this file's `redact.mask_nested`
    # Checked before any other (staging.py): (condition, column, reason), each as SQL.
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def withhold_raw_lines(self) -> bool:
        """Unparsed lines cannot have single fields dropped or masked: withhold them when the
        file has a column that must never be stored (CVV, PIN, track data), a card-number column
        (its value may fail Luhn, so the line masker would keep it) or a sensitive one."""
        return any(self.rules.kind(name) for name in self.columns)


def masked_names(names: list[str]) -> list[str]:
    """A file's column names (JSON keys) as they enter the store: a name that holds a card
    number is masked like any text, and still unique (`_2`, `_3`... when two names mask alike).
    They become the keys of `attributes`, the column of a quarantined row, the names in
    messages: no card number goes through them."""
    taken = set(names)
    result = []
    for name in names:
        masked = redact.mask_pans(name) or name
        if masked != name:
            candidate, number = masked, 1
            while candidate in taken:
                number += 1
                candidate = f"{masked}_{number}"
            masked = candidate
            taken.add(masked)
        result.append(masked)
    return result


def _renamed(names: list[str], shown: list[str]) -> str:
    return ", ".join(
        sql_ident(name) if name == new else f"{sql_ident(name)} AS {sql_ident(new)}"
        for name, new in zip(names, shown, strict=True)
    )


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


def check_readable(path: Path, fmt: str, encoding: str = "utf-8") -> None:
    """Refuse files that are not there, empty, or clearly not a text log."""
    display = redact.mask_pans(str(path)) or ""
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
    if head.startswith(b"\x1f\x8b"):
        check_gzip(path)
        return  # gzip is decompressed by DuckDB
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 (by its BOM) is read as such
    if encoding == "utf-16":
        return
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    if control > len(head) * 0.1:
        raise InputFileError(
            display,
            "this is not a text log: more than 10% of its first bytes are binary control codes",
            "give the CSV, JSON Lines or Parquet file the source produced",
        )


def check_gzip(path: Path) -> None:
    """Refuse a gzip file that expands past max(GZIP_MAX_RATIO x its size, GZIP_FREE_BYTES)
    (a "zip bomb"), counting the expansion as it streams by, 1 MB at a time, never holding it."""
    size = path.stat().st_size
    limit = max(GZIP_MAX_RATIO * size, GZIP_FREE_BYTES)
    chunk = 1024 * 1024
    expanded = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with path.open("rb") as handle:
            pending = handle.read(chunk)
            while pending:
                expanded += len(inflater.decompress(pending, chunk))
                pending = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:  # the next gzip member
                    pending = inflater.unused_data + pending
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if expanded > limit:
                    raise InputFileError(
                        redact.mask_pans(str(path)) or "",
                        f"the gzip file expands to more than {limit:,} bytes ({size:,} bytes "
                        f"compressed, more than {GZIP_MAX_RATIO} times): refused as a "
                        "decompression bomb",
                        "check where the file came from; a genuine log this compressible can be "
                        "loaded uncompressed",
                    )
                if not pending:
                    pending = handle.read(chunk)
    except zlib.error:
        raise InputFileError(
            redact.mask_pans(str(path)) or "",
            "not a valid gzip file (it starts like one but cannot be decompressed)",
            "copy or export the file again and re-run the ingest",
        ) from None


def bound_fields(plan: Plan, packed: list[str]) -> None:
    """Quarantine rows with a field longer than MAX_FIELD_BYTES, naming the field: the value
    is replaced (by its line breaks only, so that CSV line numbers after it stay right) and so
    reaches no table, the quarantine's raw row included.

    The columns in `packed` (the extra columns that are masked alike, see `Stage`) leave this
    step as one list, `__xs`, in their order: each check is then compiled once for all of them,
    and the statement grows with the file's width only by their names. The others stay columns.
    """
    if not plan.columns:
        plan.raw_sql = f"(SELECT *, []::VARCHAR[] AS __xs FROM {plan.raw_sql})"
        return
    over = f"strlen(__e) > {MAX_FIELD_BYTES}"
    breaks = "repeat(chr(10), length(__e) - length(replace(__e, chr(10), '')))"
    bounded = f"CASE WHEN {over} THEN {breaks} ELSE __e END"
    chosen = set(packed)
    position = {name: i for i, name in enumerate(plan.columns)}
    replaced, checks = [], []
    first_packed = min((position[name] for name in packed), default=len(plan.columns))
    for name in plan.columns:
        if name in chosen:
            continue
        c = sql_ident(name)
        shown = sql_literal(redact.mask_pans(name) or name)
        replaced.append(f"{bounded.replace('__e', c)} AS {c}")
        # A packed column before this one that is over the limit is the row's problem first.
        earlier = (
            f" AND NOT coalesce(__xpos < {position[name]}, false)"
            if first_packed < position[name]
            else ""
        )
        checks.append(
            f"WHEN {over.replace('__e', c)}{earlier} "
            f"THEN {{'column': {shown}, 'bytes': strlen({c})}}"
        )
    inner = f"(SELECT * FROM {plan.raw_sql})"
    if packed:
        names = "[" + ", ".join(sql_literal(redact.mask_pans(n) or n) for n in packed) + "]"
        positions = "[" + ", ".join(str(position[n]) for n in packed) + "]"
        inner = (
            f"(SELECT *, {positions}[__xat] AS __xpos FROM (SELECT *, "
            # No field is over the limit where all of them together are not (most rows): the
            # per-field test is skipped there.
            f"CASE WHEN strlen(array_to_string(__xraw, '')) > {MAX_FIELD_BYTES} THEN list_position("
            f"list_transform(__xraw, lambda __e: coalesce({over}, false)), true) END AS __xat "
            f"FROM (SELECT * EXCLUDE ({', '.join(sql_ident(n) for n in packed)}), "
            f"[{', '.join(sql_ident(n) for n in packed)}] AS __xraw FROM {plan.raw_sql})))"
        )
        checks.append(
            f"WHEN __xat IS NOT NULL THEN {{'column': {names}[__xat], "
            "'bytes': strlen(__xraw[__xat])}"
        )
        # Most rows have no field over the limit: their list is kept as read.
        xs = f"CASE WHEN __xat IS NULL THEN __xraw ELSE list_transform(__xraw, lambda __e: {bounded}) END"
        drop = " EXCLUDE (__xraw, __xat, __xpos)"
    else:
        xs, drop = "[]::VARCHAR[]", ""
    plan.raw_sql = (
        f"(SELECT *{drop}"
        + (f" REPLACE ({', '.join(replaced)})" if replaced else "")
        + f", {xs} AS __xs, CASE {' '.join(checks)} END AS __oversize FROM {inner})"
    )
    plan.problems.append(
        (
            "__oversize IS NOT NULL",
            "__oversize.column",
            "'field ' || __oversize.column || ' holds ' || __oversize.bytes || ' bytes, over the "
            f"limit of {MAX_FIELD_BYTES} bytes (1 MB) per field; the value is not stored: "
            "shorten it at the source'",
        )
    )


def _read_csv(conn: Connection, path: Path, config: SourceConfig) -> Plan:
    with path.open("rb") as handle:
        utf16_bom = handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
    encoding = "utf-16" if utf16_bom else config.encoding
    options = [
        "all_varchar = true",
        "store_rejects = true",
        "rejects_table = 'recon_rejects'",
        "rejects_scan = 'recon_rejects_scan'",
        f"max_line_size = {MAX_LINE_BYTES}",
        # Without it DuckDB sizes its read buffer from max_line_size (16 x 16 MB), so a file
        # under that size is one buffer read, typed and masked on one thread.
        f"buffer_size = {2 * MAX_LINE_BYTES}",
        f"encoding = {sql_literal(encoding)}",
    ]
    if config.delimiter:
        options.append(f"delim = {sql_literal(config.delimiter)}")
    # No row number here: a window over the reader would serialise it. The staged table keeps
    # file order, so its rowid numbers the records (see _line_numbers). The file is sniffed
    # once, here: every bind of an auto-detecting read_csv sniffs it again (a second or more
    # for a file of hundreds of columns), so the stage reads it with what the sniffer found.
    sniffed, columns = _sniff_csv(conn, path, options)
    options = [o for o in options if not o.startswith(("delim ", "all_varchar "))] + sniffed
    reader = f"(SELECT * FROM read_csv({sql_literal(str(path))}, {', '.join(options)}))"
    shown = masked_names(columns)
    if shown != columns:
        reader = (
            f"(SELECT {_renamed(columns, shown)} FROM read_csv({sql_literal(str(path))}, "
            f"{', '.join(options)}))"
        )
    has_header = not all(name == f"column{i}" for i, name in enumerate(columns))
    return Plan(
        path,
        "csv",
        shown,
        {},
        header_lines=1 if has_header else 0,
        has_rejects=True,
        raw_sql=reader,
    )


def _sniff_csv(conn: Connection, path: Path, options: list[str]) -> tuple[list[str], list[str]]:
    """The options of `read_csv` that read `path` as DuckDB's sniffer sees it (dialect, header,
    every column as text), without sniffing again, and the file's column names.

    A line over MAX_LINE_BYTES among the rows the sniffer samples would stop it, and with it
    the whole file: it samples again allowing longer lines (up to SNIFF_MAX_LINE_BYTES), and the
    reader then quarantines that line as it does past the sample."""
    sniff = (
        "SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, HasHeader, "
        f"Columns FROM sniff_csv({sql_literal(str(path))}, {{}})"
    )
    # On a cursor of its own: a failed sniff must not abort the file's transaction.
    with conn.cursor() as sniffer:
        try:
            row = sniffer.execute(sniff.format(", ".join(options))).fetchone()
        except QueryError as exc:
            if "Maximum line size" not in str(exc):
                raise
            longest = min(path.stat().st_size + 1, SNIFF_MAX_LINE_BYTES)
            wider = [o for o in options if not o.startswith(("max_line_size", "buffer_size"))]
            wider += [f"max_line_size = {longest}", f"buffer_size = {2 * longest}"]
            row = sniffer.execute(sniff.format(", ".join(wider))).fetchone()
    assert row is not None
    delim, quote, escape, new_line, comment, skip, header, described = row

    def text(value: str) -> str:
        return sql_literal("" if value == "(empty)" else value)

    names = [str(column["name"]) for column in described]
    columns = ", ".join(f"{sql_literal(name)}: 'VARCHAR'" for name in names)
    return [
        "auto_detect = false",
        f"delim = {text(delim)}",
        f"quote = {text(quote)}",
        f"escape = {text(escape)}",
        f"new_line = {sql_literal(new_line)}",
        f"comment = {text(comment)}",
        f"skip = {int(skip)}",
        f"header = {'true' if header else 'false'}",
        f"columns = {{{columns}}}",
    ], names


def _read_jsonl(conn: Connection, path: Path) -> Plan:
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_lines AS "
        "SELECT __rec, __text, "
        f"CASE WHEN strlen(__text) > {MAX_LINE_BYTES} THEN false "
        "WHEN json_valid(__text) THEN json_type(__text) = 'OBJECT' ELSE false END AS __ok FROM ("
        "  SELECT unnest(generate_series(1, len(lines))) AS __rec,"
        "         rtrim(ltrim(unnest(lines), chr(65279)), chr(13)) AS __text"
        f"  FROM (SELECT string_split(content, chr(10)) AS lines FROM read_text({sql_literal(str(path))}))"
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
        raise InputFileError(
            redact.mask_pans(str(path)) or "",
            problem,
            "give the JSON Lines log the source produced",
        )
    shown = masked_names(keys)
    extracted = ", ".join(
        f"{_json_value(key)} AS {sql_ident(name)}" for key, name in zip(keys, shown, strict=True)
    )
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_raw AS SELECT __rec, "
        f"strlen(__text) > {MAX_LINE_BYTES} AS __long_line, "  # not parsed, not kept
        f"CASE WHEN NOT __ok AND strlen(__text) <= {MAX_LINE_BYTES} THEN __text END AS __broken"
        + (f", {extracted}" if extracted else "")
        + " FROM recon_lines"
    )
    plan = Plan(path, "jsonl", shown, {})
    plan.problems.append(
        (
            "__long_line",
            "NULL::VARCHAR",
            sql_literal(
                f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MB; it was not read: "
                "split the record at the source"
            ),
        )
    )
    return plan


def _json_value(key: str) -> str:
    """A JSON field as text; numbers go through DECIMAL, not a double, so amounts stay exact."""
    path = sql_literal("$." + json.dumps(key))
    exact = (
        f"rtrim(rtrim(json_transform(__text, {sql_literal(json.dumps({key: 'DECIMAL(38,10)'}))})."
        f"{sql_ident(key)}::VARCHAR, '0'), '.')"
    )
    return (
        f"CASE WHEN NOT __ok THEN NULL "
        f"WHEN json_type(__text, {path}) = 'DOUBLE' THEN coalesce({exact}, "
        f"json_extract_string(__text, {path})) "
        f"ELSE json_extract_string(__text, {path}) END"
    )


_NESTED_TYPES = ("STRUCT(", "MAP(", "UNION(")


def _read_parquet(conn: Connection, path: Path) -> Plan:
    reader = f"read_parquet({sql_literal(str(path))}, file_row_number = true)"
    # Nested columns (structs, maps, lists) become JSON text, as JSON Lines objects do, so the
    # stage step can find keys that must not be stored inside them.
    types = conn.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    types = [t for t in types if t[0] != "file_row_number"]
    shown = masked_names([str(t[0]) for t in types])
    selected = ", ".join(
        f"to_json({sql_ident(name)})::VARCHAR AS {sql_ident(new)}"
        if str(kind).startswith(_NESTED_TYPES) or str(kind).endswith("]")
        else f"{sql_ident(name)}::VARCHAR AS {sql_ident(new)}"
        for (name, kind, *_), new in zip(types, shown, strict=True)
    )
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW recon_raw AS SELECT file_row_number + 1 AS __rec"
        + (f", {selected}" if selected else "")
        + f" FROM {reader}"
    )
    columns = [name for name in _view_columns(conn) if name != "__rec"]
    return Plan(path, "parquet", columns, {})


def _view_columns(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute("DESCRIBE recon_raw").fetchall()]


def explain_read_error(
    path: Path, fmt: str, exc: Exception, config: SourceConfig
) -> InputFileError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = redact.mask_pans(text) or text
    lowered = text.lower()
    display = redact.mask_pans(str(path)) or ""
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


def map_columns(
    plan: Plan, kind: str, config: SourceConfig, run_id: str | None, source: str
) -> None:
    """Find each canonical column in the file (case-insensitive), or explain what is missing."""
    by_name = {normalise_name(name): name for name in plan.columns}
    described = kind_of(kind)
    required, optional = described.required, described.optional
    missing = []
    for canonical in required + optional:
        wanted = config.columns.get(canonical, canonical)
        actual = by_name.get(normalise_name(wanted))
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
        # The problem is the file's, whatever it was read as (a file refused on the command
        # line, over HTTP or from a mailbox is the same refusal); the hint names the kind.
        hint = (
            f"a {kind} file needs {', '.join(required)}: add the column, or map it in "
            f"recon.toml: [sources.{source}.columns] "
            f'{missing[0].split(" ")[0]} = "<your column name>"'
        )
        if "run_id" in missing:
            hint += "; or give the run with --run-id"
        raise InputFileError(
            redact.mask_pans(str(plan.path)) or "",
            f"missing required column(s): {', '.join(missing)}; columns found: {found}"
            f"{header_note}",
            hint,
        )


def read(
    conn: Connection, path: Path, fmt: str, config: SourceConfig, *, python: bool = True
) -> Plan:
    """Expose `path` to SQL and describe it (columns, header, where its rows come from).

    Also registers `plan.nested_masker`, `redact.mask_nested` with this source's name rules:
    the stage step calls it on JSON objects and arrays that may hold keys that must not be stored.
    Without `python`, a SQL stand-in that raises `NEEDS_PYTHON` if it is ever called (`stand_in`)
    (registering a Python function imports numpy; see `files._register_stand_ins`).
    """
    rules = redact.FieldRules.of(config.card_columns, config.sensitive_columns)
    masker = (
        _register_nested_masker(conn, rules)
        if python
        else stand_in(conn, "recon_mask_nested_stand_in")
    )
    if fmt == "csv":
        plan = _read_csv(conn, path, config)
    elif fmt == "jsonl":
        plan = _read_jsonl(conn, path)
    else:
        plan = _read_parquet(conn, path)
    plan.rules = rules
    plan.nested_masker = masker
    return plan


_MASKERS = itertools.count(1)
NEEDS_PYTHON = "recon: a value needs the Python masker"


def stand_in(conn: Connection, name: str) -> str:
    """A SQL stand-in named `name` for a Python masker (registering one imports numpy): NULL
    stays NULL, and called on any value it raises `NEEDS_PYTHON`, so the file's transaction
    rolls back and the file loads again with the real maskers."""
    conn.execute(
        f"CREATE OR REPLACE TEMP MACRO {name}(value) AS CASE WHEN value IS NULL "
        f"THEN NULL::VARCHAR ELSE error({sql_literal(NEEDS_PYTHON)}) END"
    )
    return name


def _register_nested_masker(conn: Connection, rules: redact.FieldRules) -> str:
    """Register the masker under a name of its own. `read` runs inside the file's transaction,
    and DuckDB keeps no function registered in a transaction that rolls back while its Python
    side still holds the name: a fixed name could then be neither created nor removed."""
    name = f"recon_mask_nested_{next(_MASKERS)}"
    conn.create_function(
        name,
        lambda text: redact.mask_nested(text, rules),
        ["VARCHAR"],
        "VARCHAR",
        side_effects=False,
    )
    return name
