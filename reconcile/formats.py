"""Writing tables for people and their tools: CSV, JSON Lines, XLSX, Parquet.

Amounts stay exact: DECIMAL in DuckDB, `Decimal` in Python, and in XLSX a number cell whose
text is the decimal itself (openpyxl would format it through a float). Text cells that a
spreadsheet could run as a formula are neutralised, list cells included.

Files are created private (0600) and written whole or not at all: into a new temporary file
beside the target (O_EXCL, so nothing planted there is followed), synced, then renamed over
it. The target is refused when it is a symbolic link, not a regular file, or another user's
file; the rename itself never writes through a link or into another user's file.

A base module: the command line's output and the reconciliation's exports both write through
it, and it knows nothing of either (Parquet is written by DuckDB, from a query it is given).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import secrets
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from reconcile.errors import ReconError
from reconcile.store.db import Connection

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
XLSX_MAX_ROWS = 1_048_576  # rows per worksheet, header included
CENT = Decimal("0.01")
AMOUNT_FORMAT = "#,##0.00"


def amount_text(value: Decimal) -> str:
    """Amounts as finance reads them: 12.90, never 12.9000 or 1.29E+1, never rounded."""
    cents = value.quantize(CENT)
    return f"{cents:f}" if cents == value else f"{value.normalize():f}"


def neutralise(text: str) -> str:
    """Prefix text a spreadsheet would read as a formula (=, +, -, @, TAB, CR, LF) with '."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _text_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, bool | int):  # numbers stay numbers: -3 is a count, not a formula
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):  # a list is text too: its first item starts the cell
        return neutralise(", ".join(str(v) for v in value))
    return neutralise(str(value))


class OutputError(ReconError):
    """An output path (`-o`) that recon will not write: the message says why and what to do."""


def check_output(path: Path, folder: bool = False) -> None:
    """Refuse `path` as an output when it is a symbolic link, another user's, or not a regular
    file (a folder, for `folder` outputs); a path that does not exist yet is fine."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    what = "folder" if folder else "file"
    if stat.S_ISLNK(found.st_mode):
        raise OutputError(
            f"{path}: refusing to write the output: it is a symbolic link, which could point "
            f"anywhere; remove the link or give the path of a new {what}"
        )
    if found.st_uid != os.geteuid():
        raise OutputError(
            f"{path}: refusing to write the output: the {what} belongs to another user "
            f"(uid {found.st_uid}); give a path of your own"
        )
    if folder and not stat.S_ISDIR(found.st_mode):
        raise OutputError(f"{path}: not a folder; give a new or existing folder for the files")
    if not folder and not stat.S_ISREG(found.st_mode):
        raise OutputError(f"{path}: not a regular file; give the path of a new or existing file")


def output_folder(path: Path) -> None:
    """Create (or accept) the folder a multi-file export writes into, refused as `check_output`
    refuses a file: a link to elsewhere, or another user's folder."""
    check_output(path, folder=True)
    path.mkdir(parents=True, exist_ok=True)
    check_output(path, folder=True)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def private_file(path: Path) -> Iterator[IO[bytes]]:
    """Write `path` whole or not at all, created 0600 (exports carry transaction data): the
    handle writes a new temporary file beside it, which replaces `path` once complete and synced.
    An exception (or a kill) leaves the previous `path` as it was."""
    check_output(path)
    folder = path.parent
    temp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o600)
    except OSError as exc:  # named as the user gave it: no such folder, no permission
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    keep = os.dup(fd)  # the caller's wrapper may close the handle; the sync still needs it
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.fsync(keep)
        check_output(path)  # a link or file planted meanwhile is refused too
        os.replace(temp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    finally:
        os.close(keep)
    _sync_folder(folder)


@contextmanager
def private_path(path: Path) -> Iterator[Path]:
    """As `private_file`, for writers that want a path (DuckDB's COPY): the path of a file in a
    new private (0700) folder beside `path`, moved over `path` once written."""
    check_output(path)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        temp = scratch / path.name
        yield temp
        os.chmod(temp, 0o600)
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        check_output(path)
        os.replace(temp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _sync_folder(path.parent)


def seal_output(path: Path, mode: int) -> str:
    """Give a written output its final mode (`export_mode`) and return its SHA-256, through one
    descriptor opened without following links: what is hashed is what was chmod-ed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
            raise OutputError(f"{path}: changed by someone else while it was written")
        os.fchmod(handle.fileno(), mode)
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], stream: IO[str]) -> None:
    # RFC 4180 line ends: with CRLF as the terminator, a field holding a lone CR or LF is quoted.
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text_cell(row.get(column)) for column in columns])


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_line(payload: Any) -> str:
    return json.dumps(payload, default=_json_default, ensure_ascii=False)


def write_jsonl(rows: Iterable[dict[str, Any]], columns: Sequence[str], stream: IO[str]) -> None:
    for row in rows:
        stream.write(json_line({column: row.get(column) for column in columns}) + "\n")


class Rows(Protocol):
    """A table's rows: counted up front, read once, in order (a list, or a `QueryRows`)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[dict[str, Any]]: ...


class QueryRows:
    """A query's rows as dicts (as `fetch_dicts` gives them), counted when made and fetched in
    batches as they are read, so a table of a million rows is never held whole. Read it once,
    and run nothing else on the connection while reading (DuckDB keeps one pending result per
    connection): in a workbook, a sheet's only table."""

    def __init__(
        self, conn: Connection, sql: str, params: dict[str, Any], batch: int = 10_000
    ) -> None:
        self.conn, self.sql, self.params, self.batch = conn, sql, params, batch
        found = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
        self.count = int(found[0]) if found else 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute(self.sql, self.params)
        names = [column[0] for column in cursor.description]
        while batch := cursor.fetchmany(self.batch):
            for row in batch:
                yield dict(zip(names, row, strict=True))


class _Page:
    """The next `count` rows of a long table's shared iterator: one worksheet's share."""

    def __init__(self, rows: Iterator[dict[str, Any]], count: int) -> None:
        self.rows, self.count = rows, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.islice(self.rows, self.count)


@dataclass
class Table:
    heading: str | None
    columns: Sequence[str]
    rows: Rows


@dataclass
class Sheet:
    """One worksheet: (label, value) lines on top, then tables one under the other. A sheet of
    one long table continues on "<title> (2)" and so on past the worksheet's row limit.

    Every worksheet prints landscape, fitted to one page wide, with its first table's header
    row repeated on every page, kept in view (frozen) on screen, and filtered (autofilter)."""

    title: str
    tables: Sequence[Table]
    preamble: Sequence[tuple[str, Any]] = ()


MIN_WIDTH, MAX_WIDTH = 10, 60  # column widths, in characters
WIDTH_SAMPLE = 5_000  # rows of a table whose text sets its columns' widths


def write_xlsx(
    path: Path, sheets: Sequence[Sheet], created: datetime, max_rows: int = XLSX_MAX_ROWS
) -> None:
    """Stream the sheets into a workbook (openpyxl's write-only mode: each row is written once,
    in order, so time grows with the rows and memory does not), amounts exact.

    The same sheets and `created` give the same bytes: the document's times are `created`
    (openpyxl's own save would stamp "modified" with the clock), and so is every zip entry's
    date, with fixed permissions (see `_FixedZip`)."""
    from openpyxl import Workbook  # imported here: only exports need it
    from openpyxl.writer.excel import ExcelWriter

    book = Workbook(write_only=True)
    stamp = created.astimezone(UTC).replace(tzinfo=None) if created.tzinfo else created
    book.properties.created = book.properties.modified = stamp
    book.properties.creator = "recon"
    for sheet in sheets:
        for number, (preamble, tables) in enumerate(_pages(sheet, max_rows), start=1):
            title = sheet.title if number == 1 else f"{sheet.title} ({number})"
            _write_sheet(book.create_sheet(title[:31]), preamble, tables)
    if not book.worksheets:  # as Workbook.save: a workbook has at least one sheet
        book.create_sheet()
    with private_file(path) as handle:
        # What `book.save` does (save_workbook), minus its clock: ExcelWriter on our archive.
        ExcelWriter(book, _FixedZip(handle, _zip_time(stamp))).save()


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """A zip entry's date for `moment` (naive UTC): zip dates run from 1980 to 2107, to even
    seconds."""
    year = min(max(moment.year, 1980), 2107)
    if year != moment.year:
        return (year, 1, 1, 0, 0, 0)
    return (year, moment.month, moment.day, moment.hour, moment.minute, moment.second // 2 * 2)


class _FixedZip(zipfile.ZipFile):
    """A deflated zip whose entries all carry one given date and mode 0600, whatever the clock
    or the temporary files' times and modes: `writestr` by name would stamp the time of day,
    and `write` (openpyxl adds each write-only worksheet from its temporary file) that file's
    mtime and mode. Entries stay in the order written; `write` still streams the file."""

    def __init__(self, handle: IO[bytes], when: tuple[int, int, int, int, int, int]) -> None:
        super().__init__(handle, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self.when = when

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self.when)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o600) << 16
        return info

    def writestr(  # type: ignore[override]
        self, zinfo_or_arcname: str | zipfile.ZipInfo, data: str | bytes, *args: Any, **kw: Any
    ) -> None:
        if not isinstance(zinfo_or_arcname, zipfile.ZipInfo):
            zinfo_or_arcname = self._info(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, *args, **kw)

    def write(  # type: ignore[override]
        self, filename: str | os.PathLike[str], arcname: str | None = None, *args: Any, **kw: Any
    ) -> None:
        info = self._info(arcname if arcname is not None else os.fspath(filename))
        info.file_size = os.path.getsize(filename)  # picks zip64 as ZipFile.write would
        with open(filename, "rb") as source, self.open(info, "w") as target:
            shutil.copyfileobj(source, target, 1 << 20)


def _write_sheet(ws: Any, preamble: Sequence[tuple[str, Any]], tables: Sequence[Table]) -> None:
    """One worksheet, rows counted here (asking openpyxl for the row count scans the sheet)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.properties import PageSetupProperties

    # Where each table's header row falls: the layout is known before a row is written.
    line, headers = len(preamble), []
    for index, table in enumerate(tables):
        line += (1 if index or preamble else 0) + (1 if table.heading else 0) + 1
        headers.append(line)
        line += len(table.rows)
    widths: dict[int, float] = {}
    for label, value in preamble:
        widths[1] = max(widths.get(1, 0), len(label) + 2)
        widths[2] = max(widths.get(2, 0), min(len(_text_cell(value)) + 2, MAX_WIDTH))
    # Each table's rows are read once: its first WIDTH_SAMPLE rows set the widths (set before
    # any row is written), then are written followed by the rest.
    bodies: list[Iterator[dict[str, Any]]] = []
    for table in tables:
        rest = iter(table.rows)
        head = list(itertools.islice(rest, WIDTH_SAMPLE))
        bodies.append(itertools.chain(head, rest))
        for n, column in enumerate(table.columns, start=1):
            texts = (_text_cell(row.get(column)) for row in head)
            longest = max((len(t) for t in texts), default=0)
            widths[n] = max(widths.get(n, 0), len(column) + 2, longest + 2)
    for n, width in widths.items():
        ws.column_dimensions[get_column_letter(n)].width = min(max(width, MIN_WIDTH), MAX_WIDTH)
    # For print and screen: landscape, one page wide, the first table's header on every page
    # and in view, and a filter on it.
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_options.gridLines = True
    if tables:
        first, header = tables[0], headers[0]
        last_column = get_column_letter(max(len(first.columns), 1))
        ws.freeze_panes = f"A{header + 1}"
        ws.print_title_rows = f"{header}:{header}"
        ws.auto_filter.ref = f"A{header}:{last_column}{header + max(len(first.rows), 1)}"

    def cells(values: Sequence[Any]) -> list[Any]:
        """Plain values as they are; a styled cell only for amounts and dates."""
        out: list[Any] = []
        for value in values:
            if isinstance(value, Decimal | date) and not isinstance(value, datetime):
                cell = WriteOnlyCell(ws)
                _put(cell, value)
                out.append(cell)
            elif value is None or isinstance(value, bool | int):
                out.append(value)
            else:
                out.append(_text_cell(value))
        return out

    for label, value in preamble:
        ws.append(cells([label, value]))
    for index, (table, body) in enumerate(zip(tables, bodies, strict=True)):
        if index or preamble:
            ws.append([])
        if table.heading:
            ws.append([table.heading])
        ws.append(list(table.columns))
        for row in body:
            ws.append(cells([row.get(column) for column in table.columns]))


def _pages(sheet: Sheet, max_rows: int) -> list[tuple[Sequence[tuple[str, Any]], list[Table]]]:
    """Split a one-table sheet into worksheet-sized pages (each takes its rows in turn from
    one pass over the table's rows: write them in order); other sheets are one page."""
    if len(sheet.tables) != 1:
        return [(sheet.preamble, list(sheet.tables))]
    table = sheet.tables[0]
    used = len(sheet.preamble) + (1 if sheet.preamble else 0) + (1 if table.heading else 0) + 1
    room = max_rows - used
    total, rows = len(table.rows), iter(table.rows)
    counts = [min(room, total - i) for i in range(0, total, room)] or [0]
    return [
        (
            sheet.preamble if n == 0 else (),
            [Table(table.heading, table.columns, _Page(rows, count))],
        )
        for n, count in enumerate(counts)
    ]


def _put(cell: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Decimal):
        # The exact decimal as the cell's number text; assigning a Decimal would go via float.
        cell.value = amount_text(value)
        cell.data_type = "n"
        cell.number_format = AMOUNT_FORMAT
    elif isinstance(value, bool | int):
        cell.value = value
    elif isinstance(value, datetime):
        cell.value = value.isoformat()
    elif isinstance(value, date):
        cell.value = value
        cell.number_format = "yyyy-mm-dd"
    else:
        cell.value = _text_cell(value)


def write_parquet(conn: Connection, sql: str, params: dict[str, Any], path: Path) -> None:
    """The query's rows as Parquet, written by DuckDB with exact DECIMAL columns."""
    conn.execute(f"CREATE OR REPLACE TEMP TABLE export_rows AS {sql}", params)
    try:
        with private_path(path) as temp:
            quoted = "'" + str(temp).replace("'", "''") + "'"
            conn.execute(f"COPY export_rows TO {quoted} (FORMAT parquet)")
    finally:
        conn.execute("DROP TABLE IF EXISTS export_rows")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a written file, as recorded in the audit trail."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
