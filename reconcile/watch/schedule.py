"""When a cron monitor is due: five-field expressions in an IANA zone, Debian cron semantics.

The only module that imports croniter. croniter walks the *wall clock* (naive local times);
this module turns each wall time into UTC instants the way Debian's cron does across DST:

- a *fixed-time* job (neither the minute nor the hour field starts with `*`) whose time is
  skipped at spring-forward fires once, at the transition; one whose time repeats at fall-back
  fires once, at the first occurrence (croniter alone would fire twice);
- a *wildcard* job (`*/15 * * * *`, `* 9 * * *`) follows the wall clock: skipped times do not
  fire, repeated ones fire in both hours.

Day-of-month and day-of-week combine as in Vixie cron: when both are restricted (neither starts
with `*`), either matching is enough; otherwise both must match. Local time exists only here;
everything returned is aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconcile.errors import ReconError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_EQUAL_RANGE = re.compile(r"(?<![0-9A-Za-z])([0-9A-Za-z]+)-\1(?![0-9A-Za-z])")


class ScheduleError(ReconError):
    """A schedule that cannot be used as written: the message says why and what to write."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        ) from None


@dataclass(frozen=True)
class Cron:
    """A validated five-field cron expression in a time zone."""

    expression: str
    tz: str

    @classmethod
    def parse(cls, expression: str, tz: str) -> Cron:
        text = " ".join(expression.split())
        text = MACROS.get(text.lower(), text)
        if text.startswith("@"):
            raise ScheduleError(
                f"{expression!r}: only @yearly, @monthly, @weekly, @daily and @hourly are "
                "understood (a watched job needs a schedule, not @reboot)"
            )
        fields = text.split(" ")
        if len(fields) != 5:
            hint = (
                "; six fields look like seconds or years, which Debian cron does not have"
                if len(fields) == 6
                else ""
            )
            raise ScheduleError(
                f"{expression!r} has {len(fields)} fields; write five: minute hour "
                f"day-of-month month day-of-week (e.g. '0 7 * * 1-5'){hint}"
            )
        for name, field in zip(_FIELDS, fields, strict=True):
            equal = _EQUAL_RANGE.search(field)
            if equal:
                raise ScheduleError(
                    f"{expression!r}: the {name} range {equal.group(0)} starts and ends at the "
                    f"same value; write {equal.group(1)}"
                )
        from croniter import CroniterError, croniter  # on use: most commands hear no monitor

        if not croniter.is_valid(text):
            raise ScheduleError(
                f"{expression!r} is not a valid cron expression; check each of the five fields "
                "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7)"
            )
        zone(tz)
        cron = cls(text, tz)
        try:
            fires = cron.next_after(datetime(2026, 1, 1, tzinfo=UTC)) is not None
        except CroniterError:  # croniter gives up on dates that never come
            fires = False
        if not fires:
            raise ScheduleError(
                f"{expression!r} never fires within five years (a date that does not exist, "
                "such as 31 February, or a day of the month and a weekday that rarely fall "
                "together); check the day, month and weekday fields"
            )
        return cron

    @property
    def wildcard(self) -> bool:
        """Debian cron's rule: a job is fixed-time unless its minute or hour starts with '*'."""
        minute, hour = self.expression.split(" ")[:2]
        return minute.startswith("*") or hour.startswith("*")

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock times after `start` (naive), in order."""
        fields = self.expression.split(" ")
        day_or = not (fields[2].startswith("*") or fields[4].startswith("*"))
        from croniter import croniter

        walk = croniter(self.expression, start, day_or=day_or)
        while True:
            yield walk.get_next(datetime)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants at which a wall time fires: none, one or two (see module doc)."""
        tz = zone(self.tz)
        first = wall.replace(tzinfo=tz, fold=0)
        second = wall.replace(tzinfo=tz, fold=1)
        exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
        if not exists:  # skipped at spring-forward
            return [] if self.wildcard else [_transition(tz, wall)]
        if first.utcoffset() != second.utcoffset():  # repeated at fall-back
            if self.wildcard:
                return [first.astimezone(UTC), second.astimezone(UTC)]
            return [first.astimezone(UTC)]
        return [first.astimezone(UTC)]

    def due_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every due instant in (start, end], UTC, in order."""
        tz = zone(self.tz)
        wall = start.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3)
        stop = end.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
        found: set[datetime] = set()
        for candidate in self._walls(wall):
            if candidate > stop:
                break
            for instant in self._instants(candidate):
                if start < instant <= end:
                    found.add(instant)
        return sorted(found)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first due instant strictly after `moment`, or None if there is none in 5 years."""
        tz = zone(self.tz)
        local = moment.astimezone(tz).replace(tzinfo=None)
        best: datetime | None = None
        give_up = local + timedelta(days=1830)
        from croniter import CroniterError

        # Instants come out of order only around a fall-back (a repeated hour fires twice), so
        # keep walking a few hours of wall clock past the best candidate.
        with suppress(CroniterError):  # croniter found no further date
            for wall in self._walls(local - timedelta(hours=3)):
                if wall > give_up or (
                    best is not None and wall > _wall(best, tz) + timedelta(hours=3)
                ):
                    break
                for instant in self._instants(wall):
                    if instant > moment and (best is None or instant < best):
                        best = instant
        return best


def preview(cron: Cron, start: datetime, count: int) -> list[dict[str, Any]]:
    """The next `count` due times after `start`: UTC, local, and whether the local day changes
    its UTC offset (a DST day)."""
    tz = zone(cron.tz)
    rows: list[dict[str, Any]] = []
    moment = start
    for _ in range(count):
        due = cron.next_after(moment)
        if due is None:
            break
        local = due.astimezone(tz)
        day_start = datetime(local.year, local.month, local.day, tzinfo=tz)
        day_end = day_start + timedelta(days=1)
        dst_change = day_start.utcoffset() != day_end.astimezone(tz).utcoffset()
        rows.append({"utc": due, "local": local, "dst_change": dst_change})
        moment = due
    return rows


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _transition(tz: ZoneInfo, skipped: datetime) -> datetime:
    """The instant the clocks jumped past the skipped wall time: the first wall minute after it
    that exists (02:00 when 01:00-01:59 is skipped), in UTC."""
    later = skipped
    while True:
        later += timedelta(minutes=1)
        moment = later.replace(tzinfo=tz)
        if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == later:
            return moment.astimezone(UTC)
