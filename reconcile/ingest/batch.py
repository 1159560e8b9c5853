"""A batch of files in: the one use case behind `recon ingest`, the HTTP transactions API and
the mail watcher's report attachments.

Each file loads in its own transaction (`files.ingest_file`); a file that cannot be read at all
is refused and the batch goes on; bytes already loaded for the source are skipped. Whatever
happens to a file is on the audit trail, whichever entry point brought it: a loaded file's
event is written with its rows, a refused or skipped file gets an event of its own. Only the
trail's origin (`via` cli, http or mail) and actor say where the file came from; the event
itself (action, object, outcome, details) is the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from reconcile import logs, redact
from reconcile.errors import InputFileError
from reconcile.ingest.files import FileResult, Interrupted, OnRuns, display_name, ingest_file
from reconcile.ingest.kinds import kind_of
from reconcile.session import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Input:
    """A file to ingest: `path` is where its bytes are read; `name` is what it is called in the
    store, the audit trail and messages (default: the path as given). The mail watcher and the
    HTTP API stage their files somewhere private and name them for where they came from."""

    path: Path
    name: str | None = None

    @property
    def shown(self) -> str:
        return redact.mask_secrets(str(self.path) if self.name is None else self.name)


@dataclass(frozen=True)
class Refused:
    """A file that could not be read at all: nothing of it was loaded."""

    path: str
    source: str
    kind: str
    error: str  # the whole message: path, problem, what to do
    problem: str  # the problem alone (what the audit trail records)
    hint: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "source": self.source, "kind": self.kind, "error": self.error}


Outcome = FileResult | Refused


@dataclass
class Batch:
    """What happened to each file, in order; the JSON shape of `recon ingest --json`."""

    source: str
    kind: str
    files: list[Outcome] = field(default_factory=list)

    @property
    def refused(self) -> list[Refused]:
        return [f for f in self.files if isinstance(f, Refused)]

    @property
    def results(self) -> list[FileResult]:
        return [f for f in self.files if isinstance(f, FileResult)]

    @property
    def loaded(self) -> list[FileResult]:
        return [f for f in self.results if not f.already_ingested]

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.results if f.already_ingested]

    @property
    def replaced(self) -> list[FileResult]:
        return [f for f in self.loaded if f.replaced is not None]

    @property
    def quarantined(self) -> bool:
        """Some row of a file loaded now was quarantined."""
        return any(f.rows_quarantined > 0 for f in self.loaded)

    def as_json(self) -> dict[str, Any]:
        return {"files": [f.as_json() for f in self.files]}


def ingest_files(
    session: Session,
    inputs: Iterable[Path | Input],
    *,
    source: str,
    kind: str = "processed",
    run_id: str | None = None,
    report_date: date | None = None,
    replace: bool = False,
    user: str | None = None,
    on_runs: OnRuns | None = None,
    on_file: Callable[[Outcome], None] | None = None,
    on_start: Callable[[Input], None] | None = None,
) -> Batch:
    """Ingest `inputs` one by one as files of `source` and `kind`; see the module docstring.

    `run_id`: the run of rows whose file has no run_id column. `report_date`: the date of rows
    that carry none (a failure report's date; a run log's undated rows). `replace`: the files are
    corrected versions of what earlier files loaded for the same runs (files of this batch never
    replace each other). `user`: who ingested (default: the session's actor). `on_runs`: told
    of the runs each run log loaded, in its transaction (the watchdog's `runs_arrived`).
    `on_file`: called with each file's outcome as soon as it is known (progress);
    `on_start`: with each file before it is read.

    A Ctrl-C while a file loads stops the batch with `files.Interrupted` (exit 130), after
    auditing the file as "interrupted": nothing of it was loaded, the files before it were."""
    kind_of(kind)  # an unknown kind is the caller's error, before any file is looked at
    settings = session.settings
    config = settings.source(source)
    batch = Batch(source, kind)
    for given in inputs:
        item = given if isinstance(given, Input) else Input(given)
        if on_start is not None:
            on_start(item)
        outcome = _one(session, item, batch, config, run_id, report_date, replace, user, on_runs)
        batch.files.append(outcome)
        if on_file is not None:
            on_file(outcome)
    return batch


def _one(
    session: Session,
    item: Input,
    batch: Batch,
    config: Any,
    run_id: str | None,
    report_date: date | None,
    replace: bool,
    user: str | None,
    on_runs: OnRuns | None,
) -> Outcome:
    source, kind = batch.source, batch.kind
    target = f"{source}:{display_name(item.shown)}"
    try:
        result = ingest_file(
            session.conn,
            item.path,
            source=source,
            config=config,
            kind=kind,
            run_id=run_id,
            now=session.now,
            user=user or session.actor,
            pan_key=session.settings.pan_key_bytes(),
            report_date=report_date,
            replace=replace,
            keep=[r.file_id for r in batch.results],
            on_runs=on_runs,
            name=item.name,
        )
    except Interrupted:
        # Ctrl-C: the file's transaction rolled back; the batch stops here. The files before it
        # stay loaded (each was its own transaction).
        logs.event(log, logging.WARNING, "file interrupted", path=item.shown)
        session.record_alone(
            "ingest",
            target,
            outcome="interrupted",
            details={"path": item.shown, "problem": "interrupted (SIGINT): nothing was loaded"},
        )
        raise
    except InputFileError as exc:
        refused = Refused(
            item.shown,
            source,
            kind,
            redact.mask_secrets(str(exc)),
            redact.mask_secrets(exc.problem),
            redact.mask_secrets(exc.hint),
        )
        logs.event(log, logging.WARNING, "file refused", path=item.shown, error=refused.error)
        # Nothing of it was written, but the attempt is recorded.
        session.record_alone(
            "ingest", target, outcome="failure", details={"problem": refused.problem}
        )
        return refused
    if result.already_ingested:
        session.record_alone(
            "ingest",
            target,
            outcome="skipped",
            details={"path": result.path, "sha256": result.sha256, "reason": "already"},
        )
    with logs.correlate(run_id=result.run_ids[0] if len(result.run_ids) == 1 else None):
        logs.event(
            log,
            logging.INFO,
            "file skipped: already ingested" if result.already_ingested else "file ingested",
            path=result.path,
            source=source,
            kind=kind,
            sha256=result.sha256,
            run_ids=result.run_ids[:50],
            rows_read=result.rows_read,
            rows_loaded=result.rows_loaded,
            rows_quarantined=result.rows_quarantined,
        )
    return result
