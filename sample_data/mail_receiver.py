"""A stand-in mailbox for `make demo`: an SMTP server on loopback (aiosmtpd) that saves each
message recon sends to it as an .eml file a mail client opens, and says what it holds. Not part
of the product.

    python sample_data/mail_receiver.py PORT_FILE FOLDER   # writes its port, saves to FOLDER
"""

from __future__ import annotations

import email
import email.policy
import socket
import sys
import time
from pathlib import Path
from typing import Any


def describe(path: Path) -> list[str]:
    """What a mail client would show of the message: subject, parts, attachments."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    lines = [f"subject: {message['subject']}", f"to: {message['to']}"]
    for part in message.walk():
        if part.is_multipart():
            continue
        size = len(part.get_payload(decode=True) or b"")
        name = part.get_filename()
        what = f"attachment {name}" if name else f"{part.get_content_type()} body"
        lines.append(f"  {what} ({size:,} bytes, {part.get_content_type()})")
    return lines


class Saver:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        number = len(list(self.folder.glob("*.eml"))) + 1
        path = self.folder / f"report-{number}.eml"
        path.write_bytes(envelope.content)
        print(f"  >>> message received by the operations mailbox, saved as {path}", flush=True)
        for line in describe(path):
            print(f"  >>>   {line}", flush=True)
        return "250 OK"


if __name__ == "__main__":
    from aiosmtpd.controller import Controller

    folder = Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:  # a free port (aiosmtpd cannot start on port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Saver(folder), hostname="127.0.0.1", port=port)
    controller.start()
    Path(sys.argv[1]).write_text(str(port))
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()
