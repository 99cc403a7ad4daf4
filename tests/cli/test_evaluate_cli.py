"""`trajtune evaluate` through the real CLI in subprocesses: kill and resume, JSON summary, exit codes."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from trajtune.cli.command import COMMON, flag_names, options
from trajtune.scripts.evaluate import Config

FIX = Path(__file__).parents[1] / "fixtures" / "evaluate"
N = 24  # tasks in the kill test


def cmd(*args):
    return [sys.executable, "-m", "trajtune.cli.app", "evaluate", *map(str, args)]


def run(*args, env=None):
    return subprocess.run(cmd(*args), capture_output=True, text=True, env=env)


def test_help_lists_exactly_the_config_fields():
    res = run("--help", env={**os.environ, "COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    got = set()
    for line in res.stdout.splitlines():  # each row of the option table starts with its flag names
        cells = line.strip().strip("│").split()
        while cells and cells[0].startswith("-"):
            got.add(cells.pop(0))
    want = {"-h", *COMMON}
    for f, shape, _ in options(Config):
        if not f.metadata.get("positional"):
            want |= set(flag_names(f)) | ({"--no-" + f.name.replace("_", "-")} if shape == "bool" else set())
    assert got == want
    assert {f.name for f, _, _ in options(Config)} == {f.name for f in dataclasses.fields(Config)}
    assert "TASKS" in res.stdout and "--tasks" not in got and "Example: trajtune evaluate" in res.stdout


def test_killed_evaluate_resumes_without_redoing_tasks(tiny_model, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    base = [json.loads(l) for l in (FIX / "tasks.jsonl").read_text().splitlines()]
    with tasks.open("w") as fh:
        for i in range(N):
            fh.write(json.dumps({**base[i % len(base)], "id": f"k-{i:02d}"}) + "\n")
    out = tmp_path / "ev"
    preds = out / "predictions.jsonl"
    args = (tasks, "-o", out, "--model", tiny_model, "--max-new-tokens", 32)
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
    res = run(FIX / "learnable.jsonl", "-o", tmp_path, "--model", tiny_model, "--max-new-tokens", 4)
    assert res.returncode == 0, res.stderr
    assert "pass rate" in res.stderr and "ready for RL" in res.stderr and res.stdout == ""  # the report is on stderr
    md = (tmp_path / "report.md").read_text()
    assert "| pass rate | 0.0% |" in md and "0.0%" in res.stderr


def test_invalid_task_line_exits_1_with_file_and_line(tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((FIX / "learnable.jsonl").read_text().splitlines()[0] + "\n{not json\n")
    res = run(bad, "-o", tmp_path / "o", "--model", tiny_model)
    assert res.returncode == 1
    assert f"Error: {bad}:2: not valid JSON" in res.stderr and "Traceback" not in res.stderr


def test_usage_errors_exit_2(tiny_model, tmp_path):
    res = run("-o", tmp_path / "o", "--model", tiny_model)
    assert res.returncode == 2 and "no task file given" in res.stderr
    res = run(FIX / "learnable.jsonl", "-o", tmp_path / "o", "--model", tiny_model, "--baseline", "base")
    assert res.returncode == 2 and "no --adapter was given" in res.stderr
    res = run(FIX / "learnable.jsonl", "-o", "-", "--model", tiny_model)
    assert res.returncode == 2 and "not '-'" in res.stderr


def test_tasks_from_stdin_and_config_yaml(tiny_model, tmp_path):
    """TASKS '-' reads stdin; --config takes the same keys as the flags (flags override it)."""
    conf = tmp_path / "ev.yaml"
    conf.write_text(f"model: {tiny_model}\nmax_new_tokens: 4\nlimit: 2\nengine: generate\n")
    res = subprocess.run(cmd("-", "-o", tmp_path / "ev", "--config", conf, "--limit", 3, "--json"),
                         input=(FIX / "learnable.jsonl").read_text(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)["models"]["model"]
    assert m["metrics"]["tasks"] == 3 and m["engine"] == "generate"


def test_a_model_retrained_into_the_same_folder_is_evaluated_again(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "ev"
    args = (FIX / "learnable.jsonl", "-o", out, "--model", model, "--max-new-tokens", 4, "--json")
    first = json.loads(run(*args).stdout)["models"]["model"]
    assert first["generated_now"] > 0
    again = json.loads(run(*args).stdout)["models"]["model"]
    assert again["generated_now"] == 0  # same weights: the predictions are reused
    weights = next(model.glob("*.safetensors"))
    data = weights.read_bytes()
    os.remove(weights)
    weights.write_bytes(data)  # new weights file (same bytes here): a retraining would write one
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    redone = json.loads(run(*args).stdout)["models"]["model"]
    assert redone["generated_now"] == first["generated_now"]  # never the old model's predictions
