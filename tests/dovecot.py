"""A real Dovecot IMAP server on loopback, for the mailbox tests.

One server per test session (it starts in well under a second); each test gets an account of
its own, so its INBOX starts empty and tests stay independent. The server listens on
127.0.0.1 only: plain IMAP (also used for STARTTLS) and IMAPS, with a certificate for
127.0.0.1/localhost from a private CA made by trustme, so the tests exercise certificate
verification as it works against a real mail server.

Dovecot refuses mail access as root. Run as root (CI), its login and internal processes use the
dovecot/dovenull users that Debian's package creates, and mail is kept as the system user
`mail`; run as anyone else, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import itertools
import mimetypes
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from tests.support import free_port, port_open

HOST = "127.0.0.1"
INSTALL_HINT = (
    "the IMAP tests need Dovecot: apt-get install dovecot-imapd (.ci/run installs it); "
    "/usr/sbin/dovecot was not found"
)
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def dovecot_binary() -> str | None:
    """The dovecot executable; /usr/sbin is not on every user's PATH."""
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DovecotServer:
    """The server process and its files in a temporary directory."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        # Not under pytest's tmp_path: its parents are private to root, and Dovecot's
        # unprivileged processes must reach the password file and the mail directories.
        self.root = Path(tempfile.mkdtemp(prefix="recon-dovecot-"))
        self.root.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.ca_file = self.root / "ca.pem"
        self.passwd = self.root / "passwd.d"
        self.log = self.root / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._accounts = itertools.count(1)

    def start(self, timeout: float = 15.0) -> None:
        self._write_files()
        with self.log.open("ab") as output:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        waiting = {self.imap_port, self.imaps_port}
        while waiting:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"dovecot did not listen within {timeout}s:\n{tail}")
            waiting = {port for port in waiting if not port_open(port)}
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def account(self) -> Dovecot:
        """A new user with its own empty mailbox, and a password that needs care: a space, a
        quote, a backslash and a non-ASCII letter, plus a random part tests can search for."""
        user = f"ops{next(self._accounts)}@example.test"
        password = f'pa ss"\\wörd-{secrets.token_hex(6)}'
        # A passwd-file per user: Dovecot opens it at the first login, whereas a changed shared
        # file is re-read at most once a second.
        entry = self.passwd / user
        entry.write_text(f"{user}:{{PLAIN}}{password}\n", encoding="utf-8")
        entry.chmod(0o644)
        return Dovecot(HOST, self.imap_port, self.imaps_port, user, password, self.ca_file)

    def _write_files(self) -> None:
        import trustme  # dev extra; imported here so that only the IMAP tests need it

        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        server_cert = ca.issue_cert(HOST, "localhost")
        cert, key = self.root / "server-cert.pem", self.root / "server-key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
        server_cert.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        self.passwd.mkdir(mode=0o755)
        home = self.root / "home"
        home.mkdir()
        (self.root / "dovecot.conf").write_text(self._config(cert, key, home), encoding="utf-8")

    def _config(self, cert: Path, key: Path, home: Path) -> str:
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("mail")  # Debian's base-passwd always has it
            os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
            users = (
                f"mail_uid = {mail_user.pw_uid}\nmail_gid = {mail_user.pw_gid}\n"
                f"first_valid_uid = {mail_user.pw_uid}\nfirst_valid_gid = {mail_user.pw_gid}\n"
            )
            chroot = ""
        else:
            # Rootless: every process runs as this user, and nothing can chroot.
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(me.pw_gid).gr_name
            users = (
                f"default_login_user = {me.pw_name}\ndefault_internal_user = {me.pw_name}\n"
                f"default_internal_group = {group}\n"
                f"first_valid_uid = {me.pw_uid}\nfirst_valid_gid = {me.pw_gid}\n"
            )
            chroot = "  chroot =\n"
        root = self.root
        return f"""# Written by tests/dovecot.py for one test session; loopback only.
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = imap
listen = {HOST}
{users}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
# Plain LOGIN is allowed so that security = "none" can be tested; loopback only.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Rejections answer at once (the default waits 2s to slow down guessing).
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd}/%u
}}
userdb {{
  driver = static
  args = home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
# No growing per-IP delay after failed logins: the tests fail some on purpose.
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@dataclass
class Dovecot:
    """One account on the test server: what a test needs to configure and fill a mailbox."""

    host: str
    imap_port: int  # plain IMAP, and STARTTLS
    imaps_port: int  # IMAP over TLS
    user: str
    password: str
    ca_file: Path  # PEM of the private CA that signed the server's certificate

    def mailbox_config(self, security: str = "tls", **overrides: Any) -> dict[str, Any]:
        """Settings for `mailboxes.<alias>` that reach this account."""
        config: dict[str, Any] = {
            "host": self.host,
            "port": self.imaps_port if security == "tls" else self.imap_port,
            "security": security,
            "user": self.user,
            "password": self.password,
            "ca_file": str(self.ca_file),
            "timeout": 10,
        }
        config.update(overrides)
        return config

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP connection (plain, on loopback) for arranging and inspecting."""
        imap = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            token = f"\0{self.user}\0{self.password}".encode()
            imap.authenticate("PLAIN", lambda _challenge: token)
            yield imap
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()

    def deliver(
        self,
        subject: str,
        sender: str,
        *,
        arrived_at: datetime,
        body: str = "Please find the report attached.",
        attachments: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] = (),
        folder: str = "INBOX",
    ) -> int:
        """Put a message in `folder` (created if need be) with `arrived_at` as its INTERNALDATE;
        returns its UID. A non-ASCII subject is sent RFC 2047-encoded, as mailers do."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.user
        message["Subject"] = subject
        message["Date"] = format_datetime(arrived_at)
        message["Message-ID"] = make_msgid(domain="example.test")
        message.set_content(body)
        for filename, content in attachments:
            kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            maintype, subtype = kind.split("/")
            message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
        return self.append(message.as_bytes(policy=SMTP), arrived_at=arrived_at, folder=folder)

    def append(self, raw: bytes, *, arrived_at: datetime, folder: str = "INBOX") -> int:
        """IMAP APPEND of a raw RFC 5322 message; returns its UID."""
        with self.client() as imap:
            imap.create(_quoted(folder))  # NO when it exists already, which is fine
            status, data = imap.append(
                _quoted(folder), None, imaplib.Time2Internaldate(arrived_at), raw
            )
        assert status == "OK", data
        match = _APPENDUID.search(data[0] or b"")
        assert match, data
        return int(match.group(1))

    def flags(self, uid: int, folder: str = "INBOX") -> str:
        """The message's flags as the server reports them, read without changing them."""
        with self.client() as imap:
            imap.select(_quoted(folder), readonly=True)
            status, data = imap.uid("FETCH", str(uid), "(FLAGS)")
        assert status == "OK" and data and data[0], data
        return bytes(data[0]).decode()
