"""How commands show things: tables, JSON, messages, terminal-safe text and the masking stderr.

Every `recon` run imports this module (the masking stderr), `recon --help` too: the table,
export and masking code it calls is imported on first use."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import click


def format_amount(value: Decimal) -> str:
    from reconcile import formats

    return formats.amount_text(value)


# Characters a terminal acts on instead of showing: C0 controls but LF and TAB (ESC starts colour,
# cursor and OSC 8 hyperlink sequences, BEL ends them, CR overwrites the line), DEL, C1 controls
# (U+009B is a one-character CSI) and the bidirectional overrides that reorder what is shown.
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


# In JSON text, C0 controls are escaped by json.dumps already; these are not (ensure_ascii off).
_JSON_RAW_CONTROLS = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """`text` with every control character a terminal would act on shown as its escape
    (`\\x1b`, `\\u202e`): field values cannot colour, move, link or rewrite the screen."""
    return _TERMINAL_CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def emit_json(payload: Any) -> None:
    # The same JSON value, with C1 and bidi controls written as \u escapes, so that JSON shown
    # on a terminal cannot drive it either.
    from reconcile import formats

    line = formats.json_line(payload)
    click.echo(_JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", line))


def info(message: str) -> None:
    """Human messages and progress go to stderr, so stdout stays clean for data."""
    click.echo(terminal_text(message), err=True)


def _cell(value: Any, wrapped: bool = False) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, str):
        value = terminal_text(value)
        if len(value) > 60 and not wrapped:
            return value[:57] + "..."
    return value


def emit_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], wrap: Sequence[str] = ()
) -> None:
    """A table for people: long text is cut at 60 characters, except in the `wrap` columns
    (reasons and notes, whose end says what to do), which wrap onto further lines."""
    from tabulate import tabulate

    click.echo(
        tabulate(
            [[_cell(row.get(c), c in wrap) for c in columns] for row in rows],
            headers=[terminal_text(c) for c in columns],
            disable_numparse=True,
            maxcolwidths=[60 if c in wrap else None for c in columns],
        )
    )


def _safe(text: str) -> str:
    """Error text may quote input; never let a card number through."""
    from reconcile import redact

    return redact.mask_secrets(text)


class MaskedStream(io.TextIOBase):
    """stderr with card numbers masked in whatever is written to it: the last guard for text
    recon did not produce itself (click's messages, warnings, tracebacks with RECON_DEBUG, the
    server's own log lines, what `recon run` passes on). Text is held until a line ends (or a
    flush), so a number written in pieces is still seen whole.

    stdout carries data (tables, CSV, JSON) made of stored values, masked when they were
    stored, and identifiers masked where they entered; masking it all again would cost more
    than the data took to read, so only what comes from elsewhere is masked on its way there
    (the output `recon run` passes on, the database path)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._pending = ""

    def __getattr__(self, name: str) -> Any:  # buffer, fileno, isatty...
        return getattr(self._stream, name)

    @property
    def encoding(self) -> Any:  # type: ignore[override]  # click writes to a stream whose
        return self._stream.encoding  # encoding it knows, else to its buffer, around us

    @property
    def errors(self) -> Any:  # type: ignore[override]
        return self._stream.errors

    def isatty(self) -> bool:  # the terminal is the wrapped stream's
        return bool(self._stream.isatty()) if hasattr(self._stream, "isatty") else False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending += text
        end = self._pending.rfind("\n") + 1
        if end:
            from reconcile import redact

            ready, self._pending = self._pending[:end], self._pending[end:]
            self._stream.write(redact.mask_pans(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            from reconcile import redact

            ready, self._pending = self._pending, ""
            self._stream.write(redact.mask_pans(ready))
        self._stream.flush()


def _show_click_error(exc: click.ClickException, argv: Sequence[str]) -> None:
    """click's own message, masked: a usage error quotes the value it refused, often as its
    repr, where invisible characters inside a number are written as escapes (`\\u200b`) the
    masker cannot see through; each argument holding a card number is replaced as given and
    as its repr before the message is masked."""
    shown = io.StringIO()
    exc.show(file=shown)
    text = shown.getvalue()
    from reconcile import redact

    for arg in argv:
        for value in {arg, arg.partition("=")[2]} - {""}:
            masked = redact.mask_pans(value)
            if masked != value:
                text = text.replace(repr(value)[1:-1], masked or "").replace(value, masked or "")
    sys.stderr.write(_safe(text))
