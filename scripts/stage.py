"""Run one `make demo` stage: time it, record its peak memory, say plainly when it fails.

    python -m trajtune.scripts.stage TIMES.tsv NAME 'shell command'

Runs the command with ``bash -c``; on success appends ``NAME<TAB>seconds<TAB>peak_MB`` to
TIMES.tsv, where peak_MB is the largest resident set of any process the stage ran (the kernel's
``ru_maxrss`` over the waited-for children). On failure prints which stage failed and how to
continue, and exits 1. ``--report`` prints the table (the latest run of each stage):

    python -m trajtune.scripts.stage TIMES.tsv --report
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time


def run_stage(times: str, name: str, command: str) -> int:
    os.makedirs(os.path.dirname(times) or ".", exist_ok=True)
    print(f">>> {name}", flush=True)
    start = time.monotonic()
    rc = subprocess.call(["bash", "-c", command])
    seconds = time.monotonic() - start
    if rc != 0:
        print(f"make demo: stage {name} failed (exit {rc}); fix it and re-run make demo to "
              f"continue from there", file=sys.stderr)
        return 1
    # ru_maxrss is in KiB on Linux: the peak of the largest single descendant, not a sum
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open(times, "a", encoding="utf-8") as f:
        f.write(f"{name}\t{seconds:.0f}\t{peak_mb:.0f}\n")
        f.flush()
        os.fsync(f.fileno())
    return 0


def report(times: str) -> int:
    latest: dict[str, tuple[str, str]] = {}
    with open(times, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                latest[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "-")
    print(f"  {'stage':<24} {'wall s':>7} {'peak MB':>8}")
    total = 0
    peak = 0
    for name, (secs, mb) in latest.items():
        print(f"  {name:<24} {secs:>7} {mb:>8}")
        total += int(secs)
        peak = max(peak, int(mb)) if mb != "-" else peak
    print(f"  {'total':<24} {total:>7} {peak:>8}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] == "--report":
        return report(argv[0])
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    return run_stage(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
