"""The product's own logs: one JSON object per line, redacted, with correlation ids.

People read the CLI's plain messages; machines and incident reviews read these logs. Each record
is encoded by `json.dumps` with ASCII escapes, so no value (CR, LF, U+2028, U+2029, U+0085, an
ANSI escape, or text like `","level":"INFO`) can start a new line or a new field. Every record
passes a redaction filter on its handler, whoever logged it (apprise's plugins log webhook URLs
with their tokens at DEBUG): card numbers are masked, configured secrets replaced, and URLs cut
to scheme and host. Each record carries the correlation ids in effect (`correlate`): the command,
and the run_id or alert id being worked on.

Logs go to the file `log_file` (0600, at `log_file_level`, default INFO) and, when `log_level`
(RECON_LOG_LEVEL) is set, to stderr.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcile import redact

_CORRELATION: ContextVar[dict[str, str]] = ContextVar("log_correlation", default={})  # noqa: B039
_HANDLERS: list[logging.Handler] = []


class RedactFilter(logging.Filter):
    """Applied on each handler: the message is rendered, then masked, before anything sees it."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        super().__init__()
        self.known = [s for s in known if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string is still logged, as written
            message = str(record.msg)
        record.msg, record.args = redact.mask_secrets(message, self.known), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = self._clean(fields)
        # The correlation ids (command, run_id, alert_id...) are identifiers from outside too.
        record.correlation = self._clean(_CORRELATION.get())
        if record.exc_info and record.exc_info[1] is not None:
            kind = type(record.exc_info[1]).__name__
            record.exc_text = redact.mask_secrets(f"{kind}: {record.exc_info[1]}", self.known)
            record.exc_info = None
        return True

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact.mask_secrets(value, self.known)
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, dict):
            return {self._clean(str(k)): self._clean(v) for k, v in value.items()}
        return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ASCII escapes keep every value inside its string."""

    def format(self, record: logging.LogRecord) -> str:
        item: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": None,
            "alert_id": None,
            **getattr(record, "correlation", _CORRELATION.get()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():  # a field never replaces the record's own keys
                item[f"{key}_" if key in ("ts", "level", "logger", "message") else key] = value
        if record.exc_text:
            item["error"] = record.exc_text
        return json.dumps(item, ensure_ascii=True, default=str, sort_keys=False)


@contextmanager
def correlate(**ids: str | None) -> Iterator[None]:
    """Add correlation ids (command, run_id, alert_id, monitor...) to every record inside."""
    given = {k: redact.mask_pans(v) or "" for k, v in ids.items() if v}
    token = _CORRELATION.set({**_CORRELATION.get(), **given})
    try:
        yield
    finally:
        _CORRELATION.reset(token)


def configure(
    *,
    level: str | None,
    log_file: Path | None,
    file_level: str = "INFO",
    secrets: Iterable[str] = (),
) -> None:
    """Install the handlers (once per process; a second call replaces them)."""
    root = logging.getLogger()
    for handler in _HANDLERS:
        root.removeHandler(handler)
        handler.close()
    _HANDLERS.clear()
    known = list(secrets)
    if level:
        _HANDLERS.append(logging.StreamHandler())
        _HANDLERS[-1].setLevel(level.upper())
    if log_file:
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        _HANDLERS.append(logging.FileHandler(log_file, encoding="utf-8"))
        _HANDLERS[-1].setLevel(file_level.upper())
    for handler in _HANDLERS:
        handler.addFilter(RedactFilter(known))
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    if not _HANDLERS:  # never Python's last-resort handler: it would print records unredacted
        _HANDLERS.append(logging.NullHandler())
        root.addHandler(_HANDLERS[-1])
        root.setLevel(logging.WARNING)
        return
    root.setLevel(min(h.level for h in _HANDLERS))


def set_command(name: str) -> None:
    """The command this process runs, on every record (the CLI sets it once)."""
    _CORRELATION.set({**_CORRELATION.get(), "command": redact.mask_pans(name) or ""})


def event(logger: logging.Logger, level: int, text: str, /, **fields: Any) -> None:
    """Log `text` with structured fields (they become keys of the JSON object)."""
    if logger.isEnabledFor(level):
        logger.log(level, text, extra={"fields": fields})
