"""`recon serve` on a port that is taken: one clear error and exit 1, no banner (it is printed
only once the server listens); on a free port the banner comes once the port accepts."""

from __future__ import annotations

import socket
import subprocess

from .conftest import Recon
from .support import HOST, free_port, port_open, start_recon, stop, wait_until


def test_serve_on_a_busy_port_exits_1_with_a_clear_message_and_no_banner(recon: Recon) -> None:
    assert recon("init").code == 0
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        served = recon("serve", "--port", str(port), timeout=60)
    assert served.code == 1, served.stderr
    assert "serving pings" not in served.stderr + served.stdout
    assert f"cannot listen on {HOST}:{port}" in served.stderr
    assert "in use" in served.stderr and "--port" in served.stderr
    assert "Traceback" not in served.stderr
    assert served.stderr.count("error") == 1, served.stderr  # one message, not uvicorn's too


def test_the_banner_comes_once_the_port_accepts(recon: Recon) -> None:
    assert recon("init").code == 0
    port = free_port()
    process = start_recon(
        ["serve", "--port", str(port)],
        env=recon.env,
        cwd=recon.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert f"serving pings on http://{HOST}:{port}/ping/" in banner
        assert port_open(port)  # listening when it says so
    finally:
        stop(process)
    wait_until(lambda: process.poll() is not None, 10, "recon serve did not stop")
