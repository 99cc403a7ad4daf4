"""bench/bench_train_embed.py keeps working: on a tiny local model it prints both runs, the
throughput ratio, the held-out retrieval quality of base and both tuned models, and peak memory."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_both_runs_the_ratio_and_quality():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_train_embed.py"), "--tiny", "--steps", "2",
                          "--batch-size", "4", "--tasks-count", "10", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [r["run"] for r in rows] == ["base", "plain SentenceTransformerTrainer", "train-embed"]
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 for r in rows[1:])
    assert re.search(r"tokens/s: train-embed [\d.]+ vs plain SentenceTransformerTrainer [\d.]+ -> [\d.]+x \(target >= 1x\)", res.stdout)
    assert "held-out recall@1: base" in res.stdout and "peak RSS MB: train-embed" in res.stdout
