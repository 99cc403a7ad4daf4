"""`trajtune evaluate` through the real CLI in subprocesses: kill and resume, JSON summary, exit codes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FIX = Path(__file__).parents[1] / "fixtures" / "evaluate"
N = 24  # tasks in the kill test


def cmd(*args):
    return [sys.executable, "-m", "trajtune.cli.app", "evaluate", *map(str, args)]


def run(*args):
    return subprocess.run(cmd(*args), capture_output=True, text=True)


def test_killed_evaluate_resumes_without_redoing_tasks(tiny_model, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    base = [json.loads(l) for l in (FIX / "tasks.jsonl").read_text().splitlines()]
    with tasks.open("w") as fh:
        for i in range(N):
            fh.write(json.dumps({**base[i % len(base)], "id": f"k-{i:02d}"}) + "\n")
    out = tmp_path / "ev"
    preds = out / "predictions.jsonl"
    args = ("--tasks", tasks, "--output", out, "--model", tiny_model, "--max-new-tokens", 32)
    proc = subprocess.Popen(cmd(*args, "--batch-size", 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # generous: a loaded CI machine can take minutes just to import torch
    while time.time() < deadline and (not preds.exists() or preds.read_bytes().count(b"\n") < 3):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = preds.read_text().splitlines()
    done = [json.loads(l)["task_id"] for l in lines if l.endswith("}")]
    assert 3 <= len(done) < N, "the kill must land mid-run"
    assert not (out / "report.json").exists()

    res = run(*args, "--batch-size", 8, "--json")  # batch size is not part of a prediction's key
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    report = json.loads(res.stdout)
    m = report["models"]["model"]
    assert m["done_before"] == len(done) and m["generated_now"] == N - len(done)
    rows = [json.loads(l) for l in preds.read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == [f"k-{i:02d}" for i in range(N)]  # each task exactly once
    assert [r["task_id"] for r in rows[: len(done)]] == done  # earlier predictions kept as they were
    assert m["metrics"]["tasks"] == N


def test_table_on_terminal_matches_report_md(tiny_model, tmp_path):
    res = run("--tasks", FIX / "learnable.jsonl", "--output", tmp_path, "--model", tiny_model, "--max-new-tokens", 4)
    assert res.returncode == 0, res.stderr
    assert "pass rate" in res.stdout and "ready for RL" in res.stdout
    md = (tmp_path / "report.md").read_text()
    assert "| pass rate | 0.0% |" in md and "0.0%" in res.stdout


def test_invalid_task_line_exits_1_with_file_and_line(tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((FIX / "learnable.jsonl").read_text().splitlines()[0] + "\n{not json\n")
    res = run("--tasks", bad, "--output", tmp_path / "o", "--model", tiny_model)
    assert res.returncode == 1
    assert f"Error: {bad}:2: not valid JSON" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2(tiny_model, tmp_path):
    res = run("--output", tmp_path / "o", "--model", tiny_model)
    assert res.returncode == 2 and "no task file given" in res.stderr
    res = run("--tasks", FIX / "learnable.jsonl", "--output", tmp_path / "o", "--model", tiny_model, "--baseline", "base")
    assert res.returncode == 2 and "no --adapter was given" in res.stderr
