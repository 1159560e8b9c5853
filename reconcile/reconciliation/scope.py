"""A scope: which runs a command works on (one run, a business-date range, or everything; maybe
one source), and "the latest business date loaded" until the store is asked which that is.

One class parses the words a person gives (a date or `last`, a range), describes itself (the
audit event's object, the export's summary line, the failure list's dates) and serialises
itself (the `reconciliations.scope` column). Errors name the scope's parts by the names a face
passes (the command line its options, the API its query parameters): the library names no flag.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from reconcile.errors import ReconError
from reconcile.store.db import Connection

LAST = "last"
# How the scope's parts are named in a message when the face gives no names of its own.
PLAIN_NAMES = {"date": "a date", "since": "since", "until": "until"}


class ScopeError(ReconError):
    """A scope that cannot be. `param` is the part at fault (date, since, until; None: their
    combination); `text(names)` words the message with a face's own names for the parts."""

    exit_code = 2

    def __init__(self, template: str, param: str | None = None, **values: Any) -> None:
        self.template = template
        self.param = param
        self.values = values
        super().__init__(self.text())

    def text(self, names: dict[str, str] | None = None) -> str:
        return self.template.format(**{**PLAIN_NAMES, **(names or {})}, **self.values)


def parse_date(value: str | None, param: str = "date") -> date | None:
    """`YYYY-MM-DD` as a date (None stays None); ScopeError naming `param` otherwise."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ScopeError(
            "expected a date as YYYY-MM-DD, got {value!r}", param, value=value
        ) from None


@dataclass(frozen=True)
class Scope:
    """Which runs: `run_id`, business dates `since`..`until` (inclusive), `source`; none of
    them set is everything. `last` asks for the latest business date loaded (of `source`):
    `resolve` replaces it with that date."""

    source: str | None = None
    run_id: str | None = None
    since: date | None = None
    until: date | None = None
    last: bool = False

    @classmethod
    def parse(
        cls,
        *,
        day: str | None = None,
        since: str | None = None,
        until: str | None = None,
        source: str | None = None,
        run_id: str | None = None,
        default_last: bool = False,
    ) -> Scope:
        """One business date (or `last`), or a range (either end may be open), as given; with
        none of them: everything, or the latest date when `default_last`."""
        if day and (since or until):
            raise ScopeError("give either {date} or {since}/{until}, not both")
        if since or until:
            first = parse_date(since, "since") or date.min
            last = parse_date(until, "until") or date.max
            if first > last:
                raise ScopeError(
                    "{since} {first} is after {until} {last}: swap them", first=since, last=until
                )
            return cls(source, run_id, first, last)
        if day and day != LAST:
            only = parse_date(day, "date")
            return cls(source, run_id, only, only)
        if day == LAST or default_last:
            return cls(source, run_id, last=True)
        return cls(source, run_id)

    def resolve(self, conn: Connection) -> Scope | None:
        """The scope with `last` replaced by the latest business date loaded; None when `last`
        was asked and nothing is loaded yet."""
        if not self.last:
            return self
        latest = latest_business_date(conn, self.source)
        return replace(self, since=latest, until=latest, last=False) if latest else None

    def everything(self) -> Scope:
        """The same source and run, every business date."""
        return Scope(self.source, self.run_id)

    @property
    def text(self) -> str:
        """The scope as an audit object: `source:run`, `source:since..until`, or `all`."""
        what = self.run_id or (
            f"{self.since or ''}..{self.until or ''}" if self.since or self.until else "all"
        )
        if self.last and not self.run_id:
            what = LAST
        return f"{self.source}:{what}" if self.source else what

    @property
    def days(self) -> str:
        """The business dates as a person reads them: `2026-11-13`, or `2026-11-09 to ...13`."""
        if self.last:
            return "the latest business date"
        if self.since == self.until:
            return str(self.since)
        return f"{self.since or 'start'} to {self.until or 'end'}"

    def describe(self) -> str:
        """One line for a report's summary: `source S, run R, business dates A to B`."""
        parts = []
        if self.source:
            parts.append(f"source {self.source}")
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.last:
            parts.append("the latest business date")
        elif self.since or self.until:
            parts.append(f"business dates {self.since or 'start'} to {self.until or 'end'}")
        return ", ".join(parts) or "everything"

    def to_json(self) -> dict[str, Any]:
        """As stored with each reconciliation (`reconciliations.scope`)."""
        return {
            "source": self.source,
            "run_id": self.run_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Scope:
        return cls(
            value.get("source"),
            value.get("run_id"),
            parse_date(value.get("since"), "since"),
            parse_date(value.get("until"), "until"),
        )


def latest_business_date(conn: Connection, source: str | None = None) -> date | None:
    """The latest business date of the transactions loaded (of `source`); None: none yet."""
    from reconcile.reconciliation.fingerprint import latest_dates  # it builds on this module

    latest = latest_dates(conn)
    if source is not None:
        return latest.get(source)
    return max(latest.values(), default=None)
