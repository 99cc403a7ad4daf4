"""Shared by the hostile-input tests: the network guard's folder and input digests."""
from __future__ import annotations

import hashlib
from pathlib import Path

NETGUARD = Path(__file__).resolve().parents[1] / "hostile" / "netguard"


def digest(*paths: Path) -> dict[str, str]:
    """sha256 of every file under the given paths (folders walked), for before/after checks."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
