"""Capacity and speed of `trajtune generate trajectories` at the design's 50K target, and a kill mid-run.

    python bench/bench_generate.py --count 50000

In a temp folder, each in a fresh process (the command a user types; import and catalog loading
included in the time):

  new      the demo's mix: the shipped catalog + `generate tools --synthesize 1000` (templates where
           tools have them, the phrasing grammar elsewhere), --count N from one seed
  peer     the previous generator, templates only (the shipped catalog alone, --template-share 1),
           same N and seed: how many distinct records it reaches and how fast
  resume   the new run again, SIGKILLed after --kill-after seconds, then re-run to completion:
           the file must hold N records with N distinct ids and no torn line

Prints records/s (written records / wall seconds), distinct records, the quality-gate table and
the ratio new/peer on distinct records. Target: N distinct at >= 2,000 records/s on this machine,
nothing else running.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TT = [sys.executable, "-m", "trajtune.cli.app"]


def _run(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run(TT + args + ["--json"], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr[-2000:]}")
    return dt, json.loads(p.stdout)


def _check_file(path: Path, n: int) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "torn last line"
    ids = [json.loads(line)["id"] for line in raw.splitlines() if line.strip()]
    return len(ids), len(set(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--kill-after", type=float, default=8.0)
    ap.add_argument("--skip-resume", action="store_true")
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tools = tmp / "synth_tools.json"
        _run(["generate", "tools", "--synthesize", "1000", "--seed", "0", "-o", str(tools)])
        cat = ["--catalog", str(root / "data" / "tools"), "--catalog", str(tools)]
        out = tmp / "new.jsonl"
        dt, s = _run(["generate", "trajectories", *cat, "--count", str(a.count), "--seed", str(a.seed), "-o", str(out)])
        n, distinct = _check_file(out, a.count)
        print(f"new   : {s['total']:>6} records ({distinct} distinct ids) in {dt:6.1f} s = {s['total'] / dt:7.0f} records/s; "
              f"gates {s['gates']}; shapes {s.get('by_shape')}")
        peer = tmp / "peer.jsonl"
        pdt, ps = _run(["generate", "trajectories", "--template-share", "1", "--count", str(a.count), "--seed",
                        str(a.seed), "-o", str(peer)])
        print(f"peer  : {ps['total']:>6} records in {pdt:6.1f} s = {ps['total'] / pdt:7.0f} records/s "
              f"(templates only: {ps.get('short', 0)} short of --count; duplicates dropped {ps['dropped_near_duplicates']})")
        print(f"ratio : new/peer distinct records {s['total'] / max(ps['total'], 1):.2f}x; "
              f"new rate {s['total'] / dt:.0f} records/s (target >= 2000)")
        if a.skip_resume:
            return
        res = tmp / "resume.jsonl"
        args = TT + ["generate", "trajectories", *cat, "--count", str(a.count), "--seed", str(a.seed), "-o", str(res)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(a.kill_after)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(res.read_bytes().splitlines()) if res.exists() else 0
        _, rs = _run(["generate", "trajectories", *cat, "--count", str(a.count), "--seed", str(a.seed), "-o", str(res)])
        n, distinct = _check_file(res, a.count)
        same = res.read_bytes() == out.read_bytes()
        print(f"resume: killed with ~{before} lines written; re-run appended {rs['written']}; file holds {n} records, "
              f"{distinct} distinct ids; identical to the uninterrupted run: {same}")


if __name__ == "__main__":
    main()
