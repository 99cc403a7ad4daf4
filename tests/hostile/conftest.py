"""Hostile-input tests: real `trajtune` processes under a network guard, with inputs hashed
before and after, wall time bounded, and the user-facing message checked (never a traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.hostile import NETGUARD  # noqa: E402


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float
    net: list[str]


@pytest.fixture
def tt(tmp_path):
    """Run `trajtune ARGS...` in a real process: network outside loopback refused and logged."""
    netlog = tmp_path / "netlog.txt"

    def run(*args: str, stdin: str | bytes | None = None, timeout: float = 60, env: dict | None = None,
            cwd: Path | None = None) -> Result:
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NETGUARD), os.environ.get("PYTHONPATH", "")]),
                    "TRAJTUNE_NETLOG": str(netlog), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
        full_env.pop("TRAJTUNE_DEBUG", None)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "trajtune.cli.app", *map(str, args)],
                              input=stdin.encode() if isinstance(stdin, str) else stdin, capture_output=True,
                              timeout=timeout, env=full_env, cwd=cwd or tmp_path)
        net = netlog.read_text().splitlines() if netlog.exists() else []
        res = Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"),
                     time.monotonic() - t0, net)
        assert "Traceback" not in res.err and "Traceback" not in res.out, res.err[-3000:]
        assert not net, f"network connection attempted: {net}"
        return res

    return run
