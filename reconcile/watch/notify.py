"""Alerts: a durable outbox in the store, delivered through apprise, at least once.

The only module that imports apprise (and only when sending). Flow per alert and target:

1. `enqueue` writes the alert and one `pending` delivery per target alias, in the same
   transaction that recorded the state change (record, then act);
2. `claim` marks a due delivery `claimed` with a lease, and commits;
3. `send` calls apprise with no database connection open; only an `AppriseResult` whose status
   is SUCCESS counts (FAILURE, PARTIAL, TIMEOUT and NOMATCH, where nothing was sent, do not);
4. `confirm` marks successes `delivered` and puts failures back to `pending` with exponential
   backoff (capped). A claim never confirmed (the process died mid-send) is claimed again once
   its lease has expired.

`deliver_due` (the outbox cycle) runs 2-4 one delivery at a time: each send starts right after its own claim, and
is confirmed before the next is claimed, so however slow a target is, sending everything never
outlasts a lease that another watcher could then take over; only a single send longer than the
lease (or a process killed mid-send) can repeat. The lease's end is the claim's fencing token:
a watcher whose claim was taken over does not put it back to pending, and a delivery already
confirmed is not confirmed again.

A report (`report.send`) is an alert of a `report_*` kind with more parts (`outbox_parts`): a
target whose service's native format is HTML (email) gets its HTML body (apprise adds the text
part) and its files, written to a private temporary folder for the send only; every other target
gets its short text. Its retries carry the same parts; its confirmed delivery signals the
monitors hearing reports (`outbox_parts.delivered`, in `confirm`'s transaction).

Every message carries its stable alert id, so a target can drop a repeat. Only a target's alias
is ever stored, printed or logged; its URL carries secrets and stays in settings.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconcile import audit, logs, redact
from reconcile.errors import ConfigError
from reconcile.session import Session
from reconcile.settings import Settings
from reconcile.store.db import Connection, fetch_dicts, transaction
from reconcile.watch import outbox_parts
from reconcile.watch.outbox_parts import File

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Target:
    """A notification target: an alias, its apprise URL (secret) and the tags it receives."""

    alias: str
    url: str
    tags: tuple[str, ...] = ()
    fallback: str | None = None  # alias that also gets the alert once this one keeps failing
    escalate_after: int = 3

    def wants(self, tags: list[str] | tuple[str, ...]) -> bool:
        """A target without tags receives every alert; else those sharing a tag."""
        return not self.tags or bool(set(self.tags) & set(tags))


@dataclass(frozen=True)
class Claim:
    alert_id: str
    target: str
    attempts: int
    title: str
    body: str
    lease_until: datetime | None = None  # this claim's fencing token: the lease it set
    kind: str = "test"  # the alert's kind: its notification type (`NOTIFY_TYPES`)
    # A report (`outbox_parts`): the HTML body of email targets, the short text of the others,
    # and the files when this claim's target gets them (None: not loaded).
    html: str | None = None
    short: str | None = None
    files: tuple[File, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.alert_id}\x1f{self.target}"


@dataclass(frozen=True)
class NewAlert:
    monitor_id: int | None
    monitor: str | None
    kind: str
    title: str
    body: str
    tags: tuple[str, ...] | list[str]
    everyone: bool = False  # to every target given, whatever their tags (a test alert)
    # A report: `body` is its plain text; email targets get `html` and the `files`, every
    # other target `short` (`outbox_parts`).
    html: str | None = None
    short: str | None = None
    files: tuple[File, ...] = ()


def enqueue(
    conn: Connection, alerts: list[NewAlert], targets: list[Target], now: datetime
) -> list[tuple[str, list[str]]]:
    """Write alerts and their deliveries, a few statements for any number of alerts (call inside
    the transaction that decided them). Returns (alert id, target aliases) per alert."""
    if not alerts:
        return []
    numbers = [
        int(row[0])
        for row in conn.execute(
            "SELECT nextval('alert_seq') FROM range(?) ORDER BY 1", [len(alerts)]
        ).fetchall()
    ]
    ids = [f"A-{number:06d}" for number in numbers]
    chosen = [
        [t.alias for t in targets if a.everyone or t.wants(list(a.tags))] or ["(no target)"]
        for a in alerts
    ]
    conn.execute(
        "INSERT INTO alerts SELECT unnest($ids), unnest($monitor_ids), unnest($monitors), "
        "unnest($kinds), $now, unnest($titles), unnest($bodies)",
        {
            "ids": ids,
            "monitor_ids": [a.monitor_id for a in alerts],
            "monitors": [a.monitor for a in alerts],
            "kinds": [a.kind for a in alerts],
            "now": now,
            "titles": [f"{a.title} [{i}]" for a, i in zip(alerts, ids, strict=True)],
            "bodies": [f"{a.body}\n\nalert id: {i}" for a, i in zip(alerts, ids, strict=True)],
        },
    )
    pairs = [(i, alias) for i, aliases in zip(ids, chosen, strict=True) for alias in aliases]
    conn.execute(
        "INSERT INTO deliveries SELECT alert_id, target, 'pending', 0, $now, NULL, NULL, "
        "CASE WHEN target = '(no target)' "
        "THEN 'no notification target matches this alert''s tags' END "
        "FROM (SELECT unnest($ids) AS alert_id, unnest($targets) AS target)",
        {"ids": [i for i, _ in pairs], "targets": [alias for _, alias in pairs], "now": now},
    )
    for alert, alert_id in zip(alerts, ids, strict=True):
        if alert.html is not None:
            outbox_parts.store(conn, alert_id, alert.html, alert.short or "", alert.files)
    return [
        (i, [a for a in aliases if a != "(no target)"])
        for i, aliases in zip(ids, chosen, strict=True)
    ]


def claim(
    conn: Connection,
    now: datetime,
    lease: timedelta = LEASE,
    *,
    limit: int | None = None,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    with_files: Collection[str] | None = None,
) -> list[Claim]:
    """Take the deliveries that are due (or whose claim expired) for this process to send: at
    most `limit`, none whose `Claim.key` is in `skip`, only alerts in `only` when given. A
    report's files are loaded for the targets in `with_files` (default: every target)."""
    with transaction(conn):
        rows = conn.execute(
            """
            UPDATE deliveries SET status = 'claimed', claimed_until = $until,
                   attempts = attempts + 1
            WHERE alert_id || chr(31) || target IN (
                SELECT alert_id || chr(31) || target FROM deliveries
                WHERE target <> '(no target)' AND (
                      (status = 'pending' AND next_attempt_at <= $now)
                      OR (status = 'claimed' AND claimed_until < $now))
                  AND NOT list_contains($skip::VARCHAR[], alert_id || chr(31) || target)
                  AND ($only::VARCHAR[] IS NULL OR list_contains($only::VARCHAR[], alert_id))
                ORDER BY alert_id, target
                LIMIT $limit::BIGINT)
            RETURNING alert_id, target, attempts, claimed_until
            """,
            {
                "now": now,
                "until": now + lease,
                "skip": list(skip),
                "only": None if only is None else list(only),
                "limit": limit,
            },
        ).fetchall()
        if not rows:
            return []
        texts = {
            alert_id: (title, body, kind)
            for alert_id, title, body, kind in conn.execute(
                "SELECT alert_id, title, body, kind FROM alerts WHERE list_contains(?, alert_id)",
                [sorted({r[0] for r in rows})],
            ).fetchall()
        }
        parts = outbox_parts.load(
            conn,
            texts,
            {a for a, t, *_ in rows if with_files is None or t in with_files},
        )
    claims = []
    for a, t, n, u in sorted(rows):
        part = parts.get(a)
        report: dict[str, Any] = {}
        if part:  # a report: its bodies, and its files when its target gets them
            wanted = with_files is None or t in with_files
            report = {
                "html": part.html,
                "short": part.short,
                "files": part.files if wanted else None,
            }
        claims.append(Claim(a, t, n, *texts[a][:2], lease_until=u, kind=texts[a][2], **report))
    return claims


def running_clock(start: datetime) -> Callable[[], datetime]:
    """`start`, moving on with the monotonic clock: the time leases are measured in, also when
    the time was given (`--now`), so that a long send uses up a lease under a given time too."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


Sessions = Callable[[], AbstractContextManager[Session]]
"""Opens a session of this command (one `now`, one actor) on a fresh connection: the outbox
holds the store only between sends (it takes one writing process at a time)."""


def deliver_due(
    sessions: Sessions,
    targets: list[Target],
    timeout: float,
    clock: Callable[[], datetime],
    *,
    lease: timedelta = LEASE,
    only: Sequence[str] | None = None,
    claimed: list[Claim] | None = None,
) -> list[tuple[Claim, str]]:
    """The outbox cycle: claim, send and confirm the due deliveries one at a time (see the
    module's notes), each session confirming the last send and claiming the next. Returns every
    send's outcome.

    `clock` measures leases and stamps deliveries, backoffs and audit events (`running_clock`).
    `only`: deliveries of these alerts only. `claimed`: the first claim, already made in the
    caller's session (`claim(..., limit=1)`); when it is empty nothing was due, and no session
    is opened. A delivery is tried once per call, so a failing target cannot keep the loop
    going."""
    outcomes: list[tuple[Claim, str]] = []
    tried: list[str] = []
    sent: list[tuple[Claim, str]] = []
    claims = claimed
    with_files = file_targets(targets) if claims != [] else set()
    while True:
        if claims is None:
            with sessions() as session:
                if sent:
                    confirm(session.conn, sent, clock(), targets)
                claims = claim(
                    session.conn,
                    clock(),
                    lease,
                    limit=1,
                    skip=tried,
                    only=only,
                    with_files=with_files,
                )
        if not claims:
            return outcomes
        tried += [item.key for item in claims]
        sent = send(claims, targets, timeout)
        outcomes += sent
        claims = None


class NoTargets(ConfigError):
    """No notification target is configured."""


class NoTargetWithTag(ConfigError):
    """`recon notify test --tag T`: no target would receive an alert tagged T."""


class BadTarget(ConfigError):
    """A target's apprise URL is not one apprise understands, or its fallback is unknown."""


@dataclass(frozen=True)
class SentTestAlert:
    alert_id: str
    targets: list[str]  # the aliases it was queued for
    outcomes: list[tuple[Claim, str]]  # each send: '' delivered, else why not

    @property
    def failed(self) -> list[str]:
        return [item.target for item, error in self.outcomes if error]


TEST_TITLE = "[recon] test alert"
TEST_BODY = "This is a test from recon notify test: alerts reach this target."


def send_test_alert(sessions: Sessions, tag: str | None) -> SentTestAlert:
    """Queue a test alert for the targets (every target; with `tag`, those with the tag and
    those without tags) and deliver it now, through the outbox like any alert. Only its own
    deliveries are claimed: alerts already waiting keep their turn, their lease and their
    attempt count. When no target would receive it, nothing is queued (`NoTargetWithTag`)."""
    with sessions() as session:
        targets = targets_of(session.settings)
        if not targets:
            raise NoTargets("no notification targets are configured")
        chosen = [t for t in targets if tag is None or t.wants([tag])]
        if not chosen:
            tags = sorted({t for target in targets for t in target.tags})
            raise NoTargetWithTag(
                f"no notification target has the tag {tag!r}; the targets' tags are: "
                f"{', '.join(tags)} (without --tag the test goes to every target)"
            )
        test = NewAlert(
            None, None, "test", TEST_TITLE, TEST_BODY, [tag] if tag else [], everyone=True
        )
        with transaction(session.conn):
            [(alert_id, aliases)] = enqueue(session.conn, [test], chosen, session.now)
        clock = running_clock(session.now)
        timeout = session.settings.notify_timeout
    outcomes = deliver_due(sessions, targets, timeout, clock, only=[alert_id])
    return SentTestAlert(alert_id, aliases, outcomes)


# The notification type of each kind of alert: chat tools colour them, mail clients may sort
# them. An alert of any other kind is a warning.
NOTIFY_TYPES = {
    "down": "failure",
    "still_down": "failure",
    "recovered": "success",
    "test": "info",
    "report_balanced": "success",
    "report_breaks": "warning",
    "report_down": "failure",
    "report_pending": "info",
}


def notify_type(kind: str) -> str:
    return NOTIFY_TYPES.get(kind, "warning")


FENCE = "`" * 3


def render(body: str, body_format: str) -> str:
    """An alert's plain-text body in a target's format: "text" as it is; "html" and "markdown"
    with its structure kept: a blank line parts paragraphs, each line stays a line, and lines
    indented by two spaces (a command's output, quoted) are preformatted."""
    if body_format not in ("html", "markdown"):
        return body
    blocks: list[str] = []
    for paragraph in body.split("\n\n"):
        run: list[str] = []  # consecutive lines of one kind: said, or quoted
        for line in [*paragraph.splitlines(), None]:
            quoted = line is not None and line.startswith("  ")
            if run and (line is None or quoted != run[0].startswith("  ")):
                blocks.append(_block(run, body_format))
                run = []
            if line is not None:
                run.append(line)
    if body_format == "markdown":
        return "\n\n".join(blocks)
    return "<html><body>\n" + "\n".join(blocks) + "\n</body></html>"


def _block(lines: list[str], body_format: str) -> str:
    if lines[0].startswith("  "):  # quoted output: as it was
        text = "\n".join(lines)
        if body_format == "markdown":
            return FENCE + "\n" + text.replace(FENCE, "'" * 3) + "\n" + FENCE
        return f"<pre>{html.escape(text)}</pre>"
    if body_format == "markdown":
        return "  \n".join(re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", line) for line in lines)
    return "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>"


def send(claims: list[Claim], targets: list[Target], timeout: float) -> list[tuple[Claim, str]]:
    """Deliver each claim through apprise; '' for success, else why not (never the URL): the
    reason apprise logged, masked. Each target gets the body in its own format (HTML for email,
    with a text part apprise derives from it; markdown where the service takes it; a URL's
    `format=` wins) and the alert's notification type."""
    import apprise  # imported here: only sending needs it

    # apprise logs URLs with their tokens: the handlers' filter (logs.py) masks them.
    by_alias = {t.alias: t for t in targets}
    outcomes = []
    for item in claims:
        target = by_alias.get(item.target)
        if target is None:
            outcomes.append((item, f"target {item.target!r} is no longer in the settings"))
            continue
        sender = apprise.Apprise()
        if not sender.add(target.url):
            outcomes.append(
                (item, f"apprise does not understand the URL of target {target.alias!r}")
            )
            continue
        body_format = _native_format(sender[0])
        body, files = render(item.body, body_format), tuple[File, ...]()
        if item.html is not None:  # a report: email gets the HTML and the files, chat the short
            if body_format == "html":
                body, files = item.html, item.files or ()
            else:
                body = render(item.short or "", body_format)
        what = "report" if item.html is not None else "alert"
        with (
            logs.correlate(alert_id=item.alert_id),
            outbox_parts.written(files) as written,
            _apprise_said() as said,
        ):
            try:
                result = sender.notify(
                    body=body,
                    title=item.title,
                    notify_type=apprise.NotifyType(notify_type(item.kind)),
                    body_format=apprise.NotifyFormat(body_format),
                    timeout=timeout,
                    attach=_attachments(apprise, written),
                )
                status = result.status.name
                error = "" if status == "SUCCESS" else f"apprise reported {status}"
            except Exception as exc:  # a plugin's bug is one failed attempt, not a stop
                error = f"apprise raised {type(exc).__name__}"
            if error and said:
                error += ": " + _masked_cause(said, target.url)
            logs.event(
                log,
                logging.WARNING if error else logging.INFO,
                f"{what} {'not ' if error else ''}delivered to {item.target}",
                target=item.target,
                attempts=item.attempts,
                error=error or None,
            )
        outcomes.append((item, error))
    return outcomes


def _attachments(apprise: Any, written: list[tuple[Path, File]]) -> Any:
    """The written files as apprise attachments, each under its name and media type."""
    if not written:
        return None
    from apprise.attachment.file import AttachFile

    attached = apprise.AppriseAttachment()
    for path, item in written:
        attached.add(AttachFile(str(path), name=path.name, mimetype=item.media_type))
    return attached


def file_targets(targets: list[Target]) -> set[str]:
    """The aliases of the targets whose service's native format is HTML (email): those that
    get a report's HTML body and its files."""
    import apprise

    found = set()
    with _apprise_said():  # apprise logs the whole URL: kept out of the output
        for target in targets:
            service = apprise.Apprise.instantiate(target.url)
            if service is not None and _native_format(service) == "html":
                found.add(target.alias)
    return found


def _native_format(service: Any) -> str:
    """The format a loaded apprise service renders in when not told otherwise: its URL's
    `format=`, else the first it declares."""
    resolve = getattr(service, "resolve_format", None)
    chosen = resolve(None) if resolve is not None else service.notify_format
    if isinstance(chosen, tuple | list):
        chosen = chosen[0]
    return str(getattr(chosen, "value", chosen))


MAX_CAUSE = 600  # characters of apprise's reason kept with a failed delivery


class _Said(logging.Handler):
    """Collects what apprise logs as a problem while it is attached: its warnings and errors,
    and the exceptions it notes at debug level (a refused connection, a TLS failure)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            said = record.getMessage()
            if record.levelno >= logging.WARNING or "Exception" in said:
                self.lines.append(said)


@contextlib.contextmanager
def _apprise_said() -> Iterator[list[str]]:
    """What apprise logs (its reasons for a failure) while the block runs. Its logger is set to
    DEBUG meanwhile; the log's own handlers keep their levels."""
    handler = _Said()
    logger = logging.getLogger("apprise")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


def _masked_cause(lines: list[str], url: str) -> str:
    """apprise's reasons, without the URL or any part of it that could be a secret (user,
    password, every longer path segment and query value), card numbers masked, cut to
    MAX_CAUSE characters."""
    text = "; ".join(dict.fromkeys(line.strip() for line in lines if line.strip()))
    parts = urlsplit(url)
    secrets = {url, parts.netloc, parts.username or "", parts.password or ""}
    secrets |= {segment for segment in parts.path.split("/") if len(segment) >= 6}
    secrets |= {value for _, value in parse_qsl(parts.query) if len(value) >= 6}
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "****")
    text = redact.mask_pans(text) or ""
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 6] + " [...]"


def targets_of(settings: Settings) -> list[Target]:
    """The notification targets of the settings: `[notify.targets.ALIAS]` (alias, apprise URL,
    tags, escalation), then the URLs of `notify.config_file`. A URL apprise does not
    understand, or a fallback that is not a target, is refused here (`BadTarget`, naming the
    target, never its URL): every command that sends starts with this."""
    configured = [
        Target(
            alias,
            target.url.get_secret_value(),
            tuple(target.tags),
            target.fallback,
            target.escalate_after,
        )
        for alias, target in sorted(settings.notify.targets.items())
    ]
    if configured:
        check_urls(configured)
    if settings.notify.config_file is not None:
        configured += targets_from_apprise_config(settings.notify.config_file)
    aliases = {t.alias for t in configured}
    for target in configured:
        if target.fallback is not None and target.fallback not in aliases:
            raise BadTarget(
                f"notify target {target.alias!r}: its fallback {target.fallback!r} is not a "
                f"target (targets: {', '.join(sorted(aliases))})"
            )
    return configured


def check_urls(targets: list[Target]) -> None:
    """Refuse the targets whose URL apprise cannot load, naming each alias and its URL's
    scheme (the rest of a URL may hold a token or a password)."""
    import apprise

    with _apprise_said():  # apprise logs the whole URL: kept out of the output
        bad = [t for t in targets if apprise.Apprise.instantiate(t.url) is None]
    if bad:
        raise BadTarget(
            "; ".join(
                f"notify target {t.alias!r}: apprise does not understand its URL "
                f"(scheme {urlsplit(t.url).scheme or 'missing'!r})"
                for t in bad
            )
            + " (see https://github.com/caronc/apprise/wiki for each service's URL)"
        )


def targets_from_apprise_config(path: Path) -> list[Target]:
    """The URLs of an apprise configuration file as targets named "<file name>#<n>"."""
    import apprise

    config = apprise.AppriseConfig()
    if not path.is_file() or not config.add(str(path)):
        raise ConfigError(f"notify.config_file {path} cannot be read as an apprise config file")
    sender = apprise.Apprise()
    sender.add(config)
    return [
        Target(f"{path.name}#{number}", server.url(privacy=False), tuple(sorted(server.tags)))
        for number, server in enumerate(sender, start=1)
    ]


def confirm(
    conn: Connection,
    outcomes: list[tuple[Claim, str]],
    now: datetime,
    targets: list[Target] | None = None,
) -> None:
    """Delivered, or back to pending with exponential backoff (capped); a target that keeps
    failing escalates the alert to its fallback alias, once.

    A success is confirmed unless the delivery is confirmed already (it was sent, whoever holds
    the claim now: the holder's next step finds it delivered and does not send it again). A
    failure changes the delivery only while this claim still holds it (its lease is the token):
    a claim another watcher took over after the lease expired is theirs to settle."""
    fallbacks = {t.alias: t for t in targets or [] if t.fallback}
    with transaction(conn):
        for item, error in outcomes:
            audit.record(
                conn,
                "alert.sent" if not error else "alert.failed",
                item.alert_id,
                now=now,
                outcome="success" if not error else "failure",
                details={"target": item.target, "attempts": item.attempts, "error": error or None},
            )
            if not error:
                changed = conn.execute(
                    "UPDATE deliveries SET status = 'delivered', delivered_at = ?, "
                    "claimed_until = NULL, last_error = NULL "
                    "WHERE alert_id = ? AND target = ? AND status <> 'delivered' RETURNING 1",
                    [now, item.alert_id, item.target],
                ).fetchall()
                if changed:  # a report's monitors hear it (outbox_parts)
                    outbox_parts.delivered(conn, item.alert_id, item.target, now)
                else:  # sent by two watchers: a send outlasted its lease
                    logs.event(
                        log,
                        logging.WARNING,
                        f"alert delivered again to {item.target}: its lease ran out mid-send",
                        target=item.target,
                        attempts=item.attempts,
                    )
                continue
            delay = min(BACKOFF_FIRST * 2 ** max(item.attempts - 1, 0), BACKOFF_CAP)
            held = conn.execute(
                "UPDATE deliveries SET status = 'pending', claimed_until = NULL, "
                "next_attempt_at = ?, last_error = ? WHERE alert_id = ? AND target = ? "
                "AND status = 'claimed' AND (?::TIMESTAMPTZ IS NULL OR claimed_until = ?) "
                "RETURNING 1",
                [
                    now + delay,
                    redact.mask_pans(error),
                    item.alert_id,
                    item.target,
                    item.lease_until,
                    item.lease_until,
                ],
            ).fetchall()
            failing = fallbacks.get(item.target)
            if held and failing and failing.fallback and item.attempts >= failing.escalate_after:
                conn.execute(
                    "INSERT OR IGNORE INTO deliveries VALUES (?, ?, 'pending', 0, ?, NULL, NULL, ?)",
                    [item.alert_id, failing.fallback, now, f"escalated: {item.target} failing"],
                )


def history(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts and reports, newest first, with each target's delivery status and attempts (a
    report: its business date and scope)."""
    return fetch_dicts(
        conn,
        """
        SELECT a.alert_id, a.created_at, a.monitor, a.kind, d.target, d.status, d.attempts,
               d.delivered_at, d.next_attempt_at, d.last_error,
               r.business_date AS report_date, r.scope AS report_scope
        FROM alerts a JOIN deliveries d USING (alert_id)
        LEFT JOIN (SELECT DISTINCT alert_id, business_date, scope FROM report_sends) r
            USING (alert_id)
        WHERE a.alert_id IN (SELECT alert_id FROM alerts ORDER BY created_at DESC, alert_id DESC
                             LIMIT ?)
        ORDER BY a.created_at DESC, a.alert_id DESC, d.target
        """,
        [limit],
    )
