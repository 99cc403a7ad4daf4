"""bench/bench_evaluate.py and bench/profile_generation.py keep working: both paths run, the ratio,
the correctness check and the profile's figures print.

No speed is asserted (speed is the benchmark's job, not a test's); the tiny model has large random
weights so greedy outputs are far from ties and must agree between the engine and the loop."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_ratio_and_agreement(tiny_model, tmp_path):
    from trajtune.testing import build_noisy_model

    build_noisy_model(tiny_model, tmp_path / "m")
    tasks = ROOT / "tests" / "fixtures" / "evaluate" / "tasks.jsonl"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_evaluate.py"), "--model", str(tmp_path / "m"),
                          "--tasks-file", str(tasks), "--tasks", "8", "--max-new-tokens", "16", "--batch-size", "3",
                          "--generate-engine"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    out = res.stdout
    assert re.search(r"evaluate \(batch 3\)\s+\d+ tokens\s+[\d.]+ s\s+[\d.]+ tok/s", out), out
    assert re.search(r"per-task loop\s+\d+ tokens", out) and "evaluate --engine generate" in out
    assert re.search(r"engine: 3 slots, \d+ prompt tokens of which \d+ ran through the model", out)
    assert re.search(r"ratio evaluate / per-task loop: [\d.]+x \(target >= 5x\)", out)
    assert "identical outputs on 8/8 tasks overall" in out and "outputs identical to the default engine on 8/8" in out


def test_profile_generation_prints_its_three_figures(tiny_model):
    tasks = ROOT / "tests" / "fixtures" / "evaluate" / "tasks.jsonl"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_generation.py"), "--model", str(tiny_model),
                          "--tasks-file", str(tasks)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert re.search(r"prefill of 8 prompts \(\d+ tokens\): padded batch [\d.]+ s \(\d+% padding\), one at a time [\d.]+ s", out), out
    assert re.search(r"suffix prefill \(250 tokens on a 120-token prefix\): [\d.]+ s, \d+ tok/s", out)
    assert len(re.findall(r"decode step, +\d+ rows, 450-token cache: +[\d.]+ ms", out)) == 4
