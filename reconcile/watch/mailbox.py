"""Reading an operations mailbox over IMAP: the heartbeat email and its CSV report.

A monitor may watch a mailbox instead of being pinged: a matching message (subject pattern,
sender) arriving is the signal, and its CSV attachment is the day's failure report.

Reading is strictly read-only (EXAMINE, BODY.PEEK): the people who also work this mailbox find
it as they left it, nothing marked seen, moved or deleted. The caller keeps `uidvalidity` and
`last_uid` from each `Fetched` and passes them back, so each message is read once; when the
server renumbers the folder (a new UIDVALIDITY), reading starts again from the first message.

Standard library only (imaplib, email, ssl). Every failure is a `MailboxError` that names the
mailbox and says what to do; none carries the password, in its text or in its chain.
"""

from __future__ import annotations

import contextlib
import email.policy
import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.message import Message as _EmailPart
from email.parser import BytesHeaderParser, BytesParser
from pathlib import PurePosixPath

from reconcile.errors import ConfigError, ReconError
from reconcile.settings import MailboxConfig

log = logging.getLogger(__name__)

# UIDs per FETCH of whole messages: keeps each command line far below servers' length limits.
_CHUNK = 200
_HEADERS = "(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID)])"
_FETCH_START = re.compile(rb"^\d+ \(")  # imaplib's form of "* <seq> FETCH (" in its data
_UID = re.compile(rb"\bUID (\d+)")
_LIST_NAME = re.compile(rb'^\([^)]*\) (?:NIL|"(?:[^"\\]|\\.)*") (.+)$')


class MailboxError(ReconError):
    """A mailbox cannot be read: names the mailbox, what failed and what to do."""


@dataclass(frozen=True)
class Attachment:
    filename: str  # as the sender named it, without any directory part; untrusted
    content: bytes  # exactly the attached bytes (transfer encoding undone)


@dataclass(frozen=True)
class Message:
    uid: int
    arrived_at: datetime  # the server's INTERNALDATE (when it was delivered), aware UTC
    subject: str  # decoded (RFC 2047)
    sender: str  # the bare From address, lower case; "" when there is none
    message_id: str | None
    attachments: list[Attachment]  # CSV attachments only (text/csv or a .csv file name)


@dataclass(frozen=True)
class Fetched:
    uidvalidity: int
    last_uid: int  # the highest UID seen, matching or not: pass it back as after_uid
    messages: list[Message]


def fetch(
    config: MailboxConfig,
    *,
    alias: str | None = None,
    after_uid: int = 0,
    uidvalidity: int | None = None,
    subject: str | None = None,
    sender: str | None = None,
) -> Fetched:
    """Messages of the configured folder with a UID above `after_uid`, oldest first.

    `subject` is a regular expression searched case-insensitively in the decoded subject;
    `sender` is an address compared case-insensitively with the From address. When the folder's
    UIDVALIDITY differs from `uidvalidity`, `after_uid` no longer means anything and every
    message is considered. `alias` names the mailbox in error messages.
    """
    where = _where(config, alias)
    pattern = _subject_pattern(subject, where)
    wanted_sender = sender.strip().lower() if sender else None
    session = _Session(where, config.timeout, _password(config, alias, where))
    session.connect(config)
    try:
        session.login(config.user)
        current, exists = session.examine(config.folder)
        start = after_uid if uidvalidity in (None, current) else 0
        if exists == 0:
            return Fetched(current, start, [])
        headers = session.headers(start)
        matching = [
            uid
            for uid, (_, head) in sorted(headers.items())
            if _matches(head, pattern, wanted_sender)
        ]
        bodies = session.bodies(matching)
    finally:
        session.logout()
    messages = [_message(uid, headers[uid][0], bodies[uid]) for uid in matching if uid in bodies]
    log.debug("%s: %d new, %d matching", where, len(headers), len(messages))
    return Fetched(current, max([start, *headers]), messages)


def _where(config: MailboxConfig, alias: str | None) -> str:
    address = f"{config.host}:{config.imap_port}"
    return f"mailbox '{alias}' ({address})" if alias else f"mailbox {address}"


def _subject_pattern(subject: str | None, where: str) -> re.Pattern[str] | None:
    if not subject:
        return None
    try:
        return re.compile(subject, re.IGNORECASE)
    except re.error as exc:
        problem = f"subject pattern {subject!r} is not a valid regular expression ({exc})"
    raise MailboxError(
        f"{where}: {problem}; escape special characters, e.g. 'Failed Transactions \\(daily\\)'"
    )


def _password(config: MailboxConfig, alias: str | None, where: str) -> str:
    try:
        secret = config.secret()
    except ConfigError as exc:
        raise MailboxError(f"{where}: {exc}") from None
    if secret is None:
        variable = f"RECON_MAILBOXES__{(alias or 'ALIAS').upper()}__PASSWORD"
        raise MailboxError(
            f"{where}: no password configured; set {variable} in the environment, or "
            f"password_file in its [mailboxes] section of recon.toml"
        )
    return secret


def _tls_context(config: MailboxConfig, where: str) -> ssl.SSLContext:
    cafile = str(config.ca_file) if config.ca_file is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror
    except OSError as exc:
        reason = exc.strerror
    raise MailboxError(
        f"{where}: ca_file {cafile} cannot be used ({reason}); point it at the PEM certificate "
        f"of the CA that signed the server's certificate"
    )


def _transport_problem(exc: BaseException, timeout: float, doing: str) -> str:
    """What a network or TLS failure means, for a person."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed ({exc.verify_message}); if the server's "
            f"certificate comes from a private CA, set ca_file to that CA's PEM file, and check "
            f"that host is a name the certificate is issued for"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS failed while {doing} ({exc.reason or exc.strerror}); check security: port 993 "
            f"usually wants tls, port 143 starttls"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout:g}s while {doing}; check that host and port lead to an "
            f"IMAP server and that security matches the port (993: tls, 143: starttls), "
            f"or raise timeout"
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        return f"the server closed the connection while {doing} ({exc}); try again later"
    if isinstance(exc, OSError):
        return f"network error while {doing} ({exc.strerror or type(exc).__name__})"
    return f"the server refused {doing} ({exc})"


class _Session:
    """One IMAP conversation. Every failure leaves as a MailboxError raised outside the
    `except` block, so no exception of imaplib's (with arguments of ours) hangs off it."""

    def __init__(self, where: str, timeout: float, password: str) -> None:
        self.where = where
        self.timeout = timeout
        self.password = password
        self.imap: imaplib.IMAP4 | None = None

    def fail(self, problem: str) -> MailboxError:
        return MailboxError(f"{self.where}: {_scrub(problem, self.password)}")

    @property
    def client(self) -> imaplib.IMAP4:
        assert self.imap is not None, "connect() first"
        return self.imap

    def connect(self, config: MailboxConfig) -> None:
        """TLS, direct or by STARTTLS, always verifies the server's certificate."""
        host, port = config.host, config.imap_port
        context = _tls_context(config, self.where) if config.security != "none" else None
        try:
            if context is not None and config.security == "tls":
                self.imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=self.timeout)
                return
            self.imap = imaplib.IMAP4(host, port, timeout=self.timeout)
            if context is not None:
                self.imap.starttls(ssl_context=context)
            return
        except socket.gaierror:
            problem = f"host name {host!r} cannot be resolved; check host"
        except ConnectionRefusedError:
            problem = "connection refused: nothing listens there; check host and port"
        except imaplib.IMAP4.abort as exc:
            problem = _transport_problem(exc, self.timeout, "connecting")
        except imaplib.IMAP4.error as exc:
            problem = (
                "the server does not offer STARTTLS; use security = tls (usually port 993), "
                "or none only on a trusted network"
                if "STARTTLS" in str(exc)
                else f"the server did not answer as an IMAP server ({exc}); check host and port"
            )
        except OSError as exc:
            problem = _transport_problem(exc, self.timeout, "connecting")
        self.logout()
        raise self.fail(problem)

    def login(self, user: str) -> None:
        # AUTHENTICATE PLAIN carries any character; the LOGIN command only ASCII.
        imap = self.client
        try:
            if "AUTH=PLAIN" in imap.capabilities:
                token = f"\0{user}\0{self.password}".encode()
                imap.authenticate("PLAIN", lambda _challenge: token)
            else:
                imap.login(user, self.password)
            return
        except UnicodeEncodeError:
            problem = (
                "the user name or password has non-ASCII characters and the server offers no "
                "AUTH=PLAIN to send them; use ASCII ones"
            )
        except imaplib.IMAP4.abort as exc:
            problem = _transport_problem(exc, self.timeout, "logging in")
        except imaplib.IMAP4.error as exc:
            problem = (
                f"login rejected for user {user!r} ({exc}); check user and password "
                f"(the password comes from the environment or password_file)"
            )
        except OSError as exc:
            problem = _transport_problem(exc, self.timeout, "logging in")
        raise self.fail(problem)

    def examine(self, folder: str) -> tuple[int, int]:
        """Open the folder read-only; returns its UIDVALIDITY and message count."""
        imap = self.client
        try:
            status, data = imap.select(_quoted(folder), readonly=True)
            if status == "OK":
                _, validity = imap.response("UIDVALIDITY")
                if validity and validity[0] is not None:
                    return int(validity[0]), int(data[0] or 0)
                problem = f"the server gave no UIDVALIDITY for folder {folder!r}"
            elif "NONEXISTENT" in _text(data) or "exist" in _text(data).lower():
                problem = (
                    f"folder {folder!r} does not exist ({_text(data)}); check folder in its "
                    f"[mailboxes] section (names are case-sensitive, except INBOX)"
                    f"{_folders(imap)}"
                )
            else:
                problem = (
                    f"folder {folder!r} cannot be opened ({_text(data)}); check folder (the "
                    f"server's hierarchy separator may be '.' or '/') and the user's rights on it"
                    f"{_folders(imap)}"
                )
        except (OSError, imaplib.IMAP4.error) as exc:
            problem = _transport_problem(exc, self.timeout, f"opening folder {folder!r}")
        raise self.fail(problem)

    def headers(self, start: int) -> dict[int, tuple[datetime, EmailMessage]]:
        """Arrival time and the headers filtered on, of every message with a UID above `start`."""
        # "n:*" also names the last message when its UID is below n (RFC 3501), hence the check.
        found = {}
        for meta, literals in self._fetch(f"{start + 1}:*", _HEADERS):
            uid = _uid(meta)
            if uid is None or uid <= start or not literals:
                continue  # e.g. an unsolicited FETCH: flags changed by another client
            arrived_at = _arrival(meta)
            if arrived_at is None:
                raise self.fail(f"the server sent no arrival time for message UID {uid}")
            parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(literals[0])
            found[uid] = (arrived_at, _as_email(parsed))
        return found

    def bodies(self, uids: list[int]) -> dict[int, EmailMessage]:
        """Whole messages, fetched only for those that matched (attachments can be large)."""
        found = {}
        for first in range(0, len(uids), _CHUNK):
            chunk = ",".join(str(uid) for uid in uids[first : first + _CHUNK])
            for meta, literals in self._fetch(chunk, "(UID BODY.PEEK[])"):
                uid = _uid(meta)
                if uid is not None and literals:
                    parsed = BytesParser(policy=email.policy.default).parsebytes(literals[0])
                    found[uid] = _as_email(parsed)
        return found

    def _fetch(self, uids: str, items: str) -> Iterator[tuple[bytes, list[bytes]]]:
        """UID FETCH, as (response text outside literals, literals) per message."""
        try:
            status, data = self.client.uid("FETCH", uids, items)
        except (OSError, imaplib.IMAP4.error) as exc:
            problem = _transport_problem(exc, self.timeout, "fetching messages")
        else:
            if status == "OK":
                return _group(data)
            problem = f"the server refused to fetch messages ({_text(data)})"
        raise self.fail(problem)

    def logout(self) -> None:
        if self.imap is None:
            return
        with contextlib.suppress(OSError, imaplib.IMAP4.error):  # it is gone either way
            self.imap.logout()
        self.imap = None


def _group(data: Sequence[object]) -> Iterator[tuple[bytes, list[bytes]]]:
    # imaplib gives a (text, literal) pair per literal and plain bytes for text after one.
    current: tuple[bytearray, list[bytes]] | None = None
    for part in data:
        text, literal = part if isinstance(part, tuple) else (part, None)
        if not isinstance(text, bytes):
            continue
        if current is None or _FETCH_START.match(text):
            if current is not None:
                yield bytes(current[0]), current[1]
            current = (bytearray(), [])
        current[0].extend(text)
        if isinstance(literal, bytes):
            current[1].append(literal)
    if current is not None:
        yield bytes(current[0]), current[1]


def _folders(imap: imaplib.IMAP4) -> str:
    """'; folders here: ...' when the server lists them; best effort, for an error message."""
    try:
        status, data = imap.list()
    except (OSError, imaplib.IMAP4.error):
        return ""
    names = []
    for line in data if status == "OK" else []:
        match = _LIST_NAME.match(line) if isinstance(line, bytes) else None
        if match:
            names.append(match.group(1).decode("ascii", "replace").strip('"'))
    shown = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
    return f"; folders here: {shown}" if names else ""


def _uid(meta: bytes) -> int | None:
    match = _UID.search(meta)
    return int(match.group(1)) if match else None


def _arrival(meta: bytes) -> datetime | None:
    moment = imaplib.Internaldate2tuple(meta)
    # It answers in local time (with the DST flag), which mktime turns back into the instant.
    return None if moment is None else datetime.fromtimestamp(time.mktime(moment), UTC)


def _matches(head: EmailMessage, pattern: re.Pattern[str] | None, sender: str | None) -> bool:
    if pattern is not None and not pattern.search(_subject(head)):
        return False
    return sender is None or _sender(head) == sender


def _message(uid: int, arrived_at: datetime, message: EmailMessage) -> Message:
    message_id = str(message["message-id"] or "").strip() or None
    return Message(
        uid, arrived_at, _subject(message), _sender(message), message_id, _csv_files(message)
    )


def _subject(message: EmailMessage) -> str:
    return str(message["subject"] or "")


def _sender(message: EmailMessage) -> str:
    header = message["from"]
    addresses = getattr(header, "addresses", ()) if header is not None else ()
    return addresses[0].addr_spec.lower() if addresses else ""


def _csv_files(message: EmailMessage) -> list[Attachment]:
    """Every CSV part, however deep: some senders nest the report in multipart/mixed or in a
    forwarded message, and some send it as the whole body."""
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        is_csv = part.get_content_type() == "text/csv" or (
            filename is not None and filename.lower().endswith(".csv")
        )
        content = part.get_payload(decode=True) if is_csv else None
        if isinstance(content, bytes):
            found.append(Attachment(_safe_name(filename, len(found) + 1), content))
    return found


def _safe_name(filename: str | None, number: int) -> str:
    # A sender chooses the name: keep only its last component so it cannot point elsewhere.
    name = PurePosixPath((filename or "").replace("\\", "/")).name.strip()
    return name if name not in ("", ".", "..") else f"attachment-{number}.csv"


def _as_email(parsed: _EmailPart) -> EmailMessage:
    # policy.default builds EmailMessage objects; the parsers are annotated with the base class.
    assert isinstance(parsed, EmailMessage)
    return parsed


def _quoted(name: str) -> str:
    """An IMAP quoted string; imaplib sends arguments as given."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: Sequence[object]) -> str:
    parts = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in data]
    return " ".join(part for part in parts if part and part != "None").strip()


def _scrub(text: str, password: str) -> str:
    """Server text is shown to people; a server that echoed the password must not leak it."""
    return text.replace(password, "***") if password else text
