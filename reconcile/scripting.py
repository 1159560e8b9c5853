"""The Python API, for people who script: a store's data as pandas DataFrames.

    import reconcile

    with reconcile.open("recon.duckdb", config="recon.toml") as store:
        store.ingest(["runs/PL-20261111.csv"], source="payments-loader")
        store.reconcile(date="2026-11-11")
        failed = store.failures(date="2026-11-11")

It is a face like the CLI and the HTTP server: it parses what it is given, opens one `Session`
per call, calls the library, and turns the result into a DataFrame. So every call behaves like
the `recon` command of the same name: the same checks, the same masking, and the same audit
events (actor: the OS user; origin `via: "python"`). The store is not held open between calls
(each call opens it, as each command does), so `recon watch`, `recon serve` and other scripts
keep their turns on the file while a notebook sits idle.

DataFrames are made by DuckDB (`.df()` on the query's relation), with one exception: DuckDB
would turn DECIMAL into float64, so amounts (every DECIMAL column) come as Python `Decimal`
objects (dtype `object`), exact to the cent: `frame.amount.sum()` is a `Decimal`. Dates come
as `datetime64` (midnight), times as `datetime64` in UTC, lists as arrays, as DuckDB gives them.

Errors: a bad argument raises `ValueError`; what the library raises (`reconcile.errors`:
`ConfigError`, `DatabaseLockedError`...) passes through. A file that cannot be read does not
stop a batch: `ingest` reports it in its `error` column, as `recon ingest --json` does.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from reconcile import redact
from reconcile.ingest import files as ingest_file
from reconcile.ingest import kinds
from reconcile.ingest import runs as ingest_runs
from reconcile.ingest.batch import ingest_files
from reconcile.reconciliation import breaks as break_register
from reconcile.reconciliation import compare, failures, workbook
from reconcile.reconciliation import refresh as reconciliation
from reconcile.reconciliation import scope as scope_mod
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import Settings, load_settings
from reconcile.store import db
from reconcile.watch import signals

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Reconciliation", "Store", "open_store"]

VIA = "python"  # the origin of this face's audit events, beside "cli", "http" and "mail"
FILE_COLUMNS = [*(f.name for f in fields(ingest_file.FileResult)), "error"]
Day = str | date | None


@dataclass(frozen=True)
class Reconciliation:
    """What one `Store.reconcile` found and changed: the scope's runs and days as DataFrames
    (the rows of `recon reconcile --json`), and what changed in the store."""

    reconciliation_id: int
    inputs_sha256: str
    runs: pd.DataFrame
    days: pd.DataFrame
    runs_changed: int
    days_changed: int
    breaks_opened: int
    breaks_resolved: int
    needs_attention: bool  # a run or day has breaks or is pending (`recon reconcile` exits 3)


class Store:
    """A reconcile store (one DuckDB file) for scripts and notebooks; see `reconcile.open`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._closed = False

    @property
    def settings(self) -> Settings:
        """The settings in force: recon.toml, `RECON_*` variables, and what `open` was given."""
        return self._settings

    @property
    def path(self) -> Path:
        return Path(self._settings.db)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<reconcile.Store {redact.mask_pans(str(self.path))} ({state})>"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held between calls; after `close` the store refuses further calls."""
        self._closed = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One session, as one command has: the store opened (and migrated), `now` read once,
        the audit trail (the OS user, via "python") active, the chain anchored on the way out.
        Every method uses one; a script may too, to call the library (`reconcile.reconciliation`
        ...) directly."""
        if self._closed:
            raise ValueError(f"{self!r} is closed: open it again with reconcile.open(...)")
        settings = self._settings
        # Files the store creates (database, WAL, anchor, key file) are private, as the CLI
        # makes them (umask 077 for its whole process); here only for the session's length.
        previous = os.umask(0o077)
        try:
            with open_session(settings, trail_for(settings, VIA), now=settings.current_time()) as s:
                yield s
        finally:
            os.umask(previous)

    # -- getting data in ------------------------------------------------------------------

    def ingest(
        self,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        source: str | None = None,
        kind: str = "processed",
        run_id: str | None = None,
        date: Day = None,
        replace: bool = False,
    ) -> pd.DataFrame:
        """Load run logs (`kind="processed"`), manifests (`"expected"`), control totals
        (`"totals"`) or failure reports (`"report"`), as `recon ingest` does.

        One row per file, the fields of `recon ingest --json`: `path`, `sha256`, `rows_read`,
        `rows_loaded`, `rows_quarantined`, `already_ingested`, `run_ids`... A file that could
        not be read loaded nothing and has its reason in `error`; the other files still load.
        `date` dates rows that carry no business date (a failure report's day); `replace`
        loads corrected files in place of what earlier files loaded for the same runs.
        """
        if kind not in kinds.NAMES:
            raise ValueError(f"kind must be one of {', '.join(kinds.NAMES)}, not {kind!r}")
        batch = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
        name = self._source(source)
        day = _day(date, "date")
        with self.session() as session:
            results = _ingest_batch(
                session, batch, source=name, kind=kind, run_id=_masked(run_id), day=day,
                replace=replace,
            )  # fmt: skip
        return pd.DataFrame.from_records(results, columns=FILE_COLUMNS)

    # -- reconciling ----------------------------------------------------------------------

    def reconcile(
        self,
        *,
        date: Day = None,
        since: Day = None,
        until: Day = None,
        run_id: str | None = None,
        source: str | None = None,
    ) -> Reconciliation:
        """Expected versus processed, per run and per business day; results and breaks are
        kept, as `recon reconcile` does. No scope: every run. `date="last"`: the latest
        business date loaded."""
        source = _masked(source)
        with self.session() as session:
            first, last = _scope_range(session, date, since, until, source)
            scope = compare.Scope(source=source, run_id=_masked(run_id), since=first, until=last)
            outcome = _refresh(session, scope)
        return Reconciliation(
            outcome.reconciliation_id,
            outcome.inputs_sha256,
            _records(outcome.runs, ["source", "run_id", *reconciliation.RUN_FIELDS]),
            _records(outcome.days, ["source", "business_date", *reconciliation.DAY_FIELDS]),
            outcome.runs_changed,
            outcome.days_changed,
            outcome.breaks_opened,
            outcome.breaks_resolved,
            outcome.needs_attention,
        )

    # -- reading --------------------------------------------------------------------------

    def failures(
        self,
        *,
        date: Day = None,
        since: Day = None,
        until: Day = None,
        source: str | None = None,
        categories: str | Iterable[str] = "failed",
    ) -> pd.DataFrame:
        """The failed-record list of a day or range, masked, as `recon failures --json` gives
        it (default: the latest business date loaded). The range is reconciled first, so the
        list matches `reconcile`; `categories="all"` lists every kind of break. Reading it is
        an access: it is audited (`failures.list`)."""
        wanted = _categories(categories)
        source = _masked(source)
        with self.session() as session:
            span = _day_range(session, date, since, until, source)
            if span is None:  # nothing loaded yet: an empty list with the list's columns
                return _frame(session, *_failures_query(session, None, wanted, source))
            _refresh_stored(session, compare.Scope(source=source, since=span[0], until=span[1]))
            frame = _frame(session, *_failures_query(session, span, wanted, source))
            first, last = span
            session.record_alone(
                "failures.list",
                f"{source or 'all'}:{first if first == last else f'{first} to {last}'}",
                details={
                    "categories": wanted,
                    "format": "dataframe",
                    "rows": len(frame),
                    "written": {"dataframe": None},
                },
            )
        return frame

    def breaks(
        self,
        *,
        date: Day = None,
        since: Day = None,
        until: Day = None,
        source: str | None = None,
        status: str = "open",
        categories: str | Iterable[str] = "all",
    ) -> pd.DataFrame:
        """The break register as of the last reconcile, as `recon breaks --json` gives it:
        every non-matched record with its stable id, age, status and assignee. No date: every
        day. `status`: "open", "resolved" or "all"."""
        if status not in break_register.STATUSES:
            raise ValueError(f"status must be one of {', '.join(break_register.STATUSES)}")
        wanted = _categories(categories)
        source = _masked(source)
        with self.session() as session:
            first, last = _scope_range(session, date, since, until, source)
            return _frame(session, *_breaks_query(session, status, source, first, last, wanted))

    def runs(
        self, *, source: str | None = None, since: Day = None, until: Day = None
    ) -> pd.DataFrame:
        """Per run: rows loaded, succeeded, failed and quarantined, when and by whom, as
        `recon runs --json` gives it."""
        first, last = _day(since, "since"), _day(until, "until")
        with self.session() as session:
            return _frame(session, *_runs_query(_masked(source), first, last))

    def days(
        self, *, date: Day = None, since: Day = None, until: Day = None, source: str | None = None
    ) -> pd.DataFrame:
        """Per source and business day, the latest stored result (as of the last reconcile;
        the Summary of `recon export`): status, counts per category, expected and processed
        amounts and their difference. No date: every day."""
        source = _masked(source)
        with self.session() as session:
            first, last = _scope_range(session, date, since, until, source)
            return _frame(session, *_days_query(source, first, last))

    def _source(self, given: str | None) -> str:
        if given:
            name = _masked(given) or given
            configured = self._settings.sources
            if configured and name not in configured:
                warnings.warn(
                    f"source {name!r} is not in the settings (configured: "
                    f"{', '.join(sorted(configured))}); loading with the defaults (canonical "
                    "columns, UTC)",
                    stacklevel=3,
                )
            return name
        if len(self._settings.sources) == 1:
            return next(iter(self._settings.sources))
        configured_names = ", ".join(sorted(self._settings.sources)) or "none configured"
        raise ValueError(f"name the source: source=... (configured sources: {configured_names})")


def open_store(
    db: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    now: str | datetime | None = None,
) -> Store:
    """Open (creating or migrating) a store, with settings read as `recon` reads them."""
    settings = load_settings(config, db=str(db) if db is not None else None, now=now)
    store = Store(settings)
    with store.session():  # created and migrated now, so a wrong path fails here
        settings.pan_key_bytes()  # without RECON_PAN_KEY: the store's own key file, made now
    return store


# -- arguments ----------------------------------------------------------------------------


def _masked(value: str | None) -> str | None:
    """Identifiers are masked where they enter (card numbers), as on the command line."""
    return redact.mask_pans(value) if value is not None else None


def _day(value: Day, name: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None


def _text(value: Day, name: str) -> str | None:
    """A day as the scope parser reads it (`YYYY-MM-DD` or `last`)."""
    if value is None or (isinstance(value, str) and value == scope_mod.LAST):
        return value
    day = _day(value, name)
    return day.isoformat() if day else None


def _categories(given: str | Iterable[str]) -> list[str]:
    text = given if isinstance(given, str) else ",".join(given)
    try:
        return compare.parse_categories(text)
    except compare.CategoryError as exc:
        raise ValueError(str(exc)) from None


def _scope(
    session: Session,
    day: Day,
    since: Day,
    until: Day,
    source: str | None,
    *,
    default_last: bool,
    run_id: str | None = None,
) -> scope_mod.Scope | None:
    """date | date="last" | since/until as a scope, `last` resolved (the library's parser, so
    a script and the command line read a scope alike); None: `last`, and nothing loaded yet."""
    try:
        parsed = scope_mod.Scope.parse(
            day=_text(day, "date"),
            since=_text(since, "since"),
            until=_text(until, "until"),
            source=source,
            run_id=run_id,
            default_last=default_last,
        )
    except scope_mod.ScopeError as exc:
        raise ValueError(exc.text({"date": "date", "since": "since", "until": "until"})) from None
    return parsed.resolve(session.conn)


def _day_range(
    session: Session, day: Day, since: Day, until: Day, source: str | None
) -> tuple[date, date] | None:
    """date | date="last" | since/until, as a closed range; None: nothing loaded yet."""
    scope = _scope(session, day, since, until, source, default_last=True)
    if scope is None or scope.since is None or scope.until is None:
        return None
    return scope.since, scope.until


def _scope_range(
    session: Session, day: Day, since: Day, until: Day, source: str | None
) -> tuple[date | None, date | None]:
    """Like `_day_range`, but no date at all means every day: (None, None)."""
    scope = _scope(session, day, since, until, source, default_last=False)
    return (scope.since, scope.until) if scope else (None, None)


# -- DataFrames -----------------------------------------------------------------------------


def _frame(session: Session, sql: str, params: list[Any] | dict[str, Any]) -> pd.DataFrame:
    """The query's rows as a DataFrame made by DuckDB, DECIMAL columns as exact `Decimal`s
    (DuckDB's own conversion would make them float64: 0.1 + 0.2 cents apart)."""
    # A relation refuses to run while a result of `execute` is unread (a library lookup that
    # read one row with fetchone): finish it first (it has nothing left that anyone wants).
    with contextlib.suppress(db.QueryError):  # none unread: nothing to finish
        session.conn.fetchall()
    relation = session.conn.sql(sql, params=params)
    exact = [c for c, t in zip(relation.columns, relation.types, strict=True) if t.id == "decimal"]
    if exact:  # carried as text through the conversion, then read back as Decimal
        relation = relation.project(
            ", ".join(
                f"CAST({db.sql_ident(c)} AS VARCHAR) AS {db.sql_ident(c)}"
                if c in exact
                else db.sql_ident(c)
                for c in relation.columns
            )
        )
    frame = relation.df()
    for column in exact:
        frame[column] = frame[column].map(Decimal, na_action="ignore")
    return frame


def _records(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A reconciliation's runs or days (one row per run or day, already in memory; amounts
    are `Decimal`s). With none, the columns are still there."""
    if not rows:
        return pd.DataFrame(columns=[*columns, "version", "reconciled_at", "currencies"])
    frame = pd.DataFrame.from_records(rows)
    frame["business_date"] = pd.to_datetime(frame["business_date"])  # as DuckDB gives dates
    return frame


# -- the library ----------------------------------------------------------------------------
# Every call into the library's use cases is here, so that this face follows them as they
# move (the ingest batch becomes `ingest.ingest_files(session, ...)`, the reconcile rule
# `reconciliation.refresh(session, scope)`): nothing above this line knows their signatures.


def _ingest_batch(
    session: Session,
    paths: list[Path],
    *,
    source: str,
    kind: str,
    run_id: str | None,
    day: date | None,
    replace: bool,
) -> list[dict[str, Any]]:
    """The batch `recon ingest` runs (`ingest_files`): each file in its own transaction; a
    refused or skipped file is audited too; one that cannot be read does not stop the others;
    the monitors of a source hear its runs, as on the command line."""
    batch = ingest_files(
        session,
        paths,
        source=source,
        kind=kind,
        run_id=run_id,
        report_date=day,
        replace=replace,
        on_runs=signals.runs_arrived,
    )
    return [outcome.as_json() for outcome in batch.files]


def _refresh(session: Session, scope: compare.Scope) -> reconciliation.Outcome:
    """Reconcile `scope` and keep the results (audited by the library, once)."""
    return reconciliation.refresh(session, scope)


def _refresh_stored(session: Session, scope: compare.Scope) -> None:
    """Make the stored results of `scope` current, classifying only when its inputs changed."""
    reconciliation.refresh_stored(session, scope)


def _failures_query(
    session: Session, span: tuple[date, date] | None, wanted: list[str], source: str | None
) -> tuple[str, dict[str, Any]]:
    first, last = span or (date.max, date.min)  # no span: a range that holds nothing
    return failures.failures_query(first, last, wanted, source, session.now)


def _breaks_query(
    session: Session,
    status: str,
    source: str | None,
    since: date | None,
    until: date | None,
    wanted: list[str],
) -> tuple[str, dict[str, Any]]:
    return break_register.breaks_query(
        now=session.now,
        status=status,
        source=source,
        since=since,
        until=until,
        categories=wanted,
    )


def _runs_query(
    source: str | None, since: date | None, until: date | None
) -> tuple[str, list[object]]:
    return ingest_runs.runs_query(source, since, until)


def _days_query(
    source: str | None, since: date | None, until: date | None
) -> tuple[str, dict[str, Any]]:
    """The latest stored result of each day in scope: the export's days table."""
    scope = compare.Scope(source=source, since=since, until=until)
    return workbook._queries(scope)["days"]
