"""A stand-in on-call inbox for `make demo`: an HTTP server on loopback that prints each alert
recon delivers to it (apprise's json:// format). Not part of the product.

    python sample_data/alert_receiver.py PORT_FILE    # writes the port it listens on, serves
"""

from __future__ import annotations

import http.server
import json
import sys
from pathlib import Path


class Inbox(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        alert = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        print(f"\n  >>> alert received by the on-call inbox: {alert['title']}", flush=True)
        for line in alert["message"].splitlines():
            print(f"  >>> {line}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = http.server.HTTPServer(("127.0.0.1", 0), Inbox)
    Path(sys.argv[1]).write_text(str(server.server_address[1]))
    server.serve_forever()
