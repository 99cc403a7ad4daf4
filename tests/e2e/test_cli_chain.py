"""The pipeline through the real commands, as a user chains them: generate -> review -> train-sft
-> merge-lora -> evaluate, on a tiny model built locally (each stage a separate process)."""
import json
import subprocess
import sys


def tt(*args, cwd):
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


def test_generate_train_merge_evaluate_chain(tiny_model, tmp_path):
    r = tt("generate", "trajectories", "--count", "60", "--seed", "0", "-o", "train.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = tt("train-sft", "train.jsonl", "--model", tiny_model, "-o", "run", "--max-steps", "2", cwd=tmp_path)
    assert r.returncode == 1 and "are not reviewed" in r.stderr  # synthetic data is review-gated
    assert tt("review", "train.jsonl", "--approve-all", cwd=tmp_path).returncode == 0
    assert tt("generate", "tasks", "--count", "4", "--seed", "1", "-o", "tasks.jsonl", cwd=tmp_path).returncode == 0

    r = tt("train-sft", "train.jsonl", "--model", tiny_model, "-o", "run", "--max-steps", "2", "--batch-size", "4",
           "--set", "save_steps=2", "--precision", "fp32", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    sft = json.loads(r.stdout)
    assert sft["finished"] and sft["global_step"] == 2 and (tmp_path / "run" / "final" / "adapter_config.json").is_file()

    r = tt("merge-lora", "run/final", "--model", tiny_model, "-o", "merged", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    merged = json.loads(r.stdout)
    assert merged["passed"] is True and (tmp_path / "merged" / "config.json").is_file()

    r = tt("evaluate", "tasks.jsonl", "--model", "merged", "--baseline", tiny_model, "--max-new-tokens", "8",
           "-o", "ev", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["tasks"] == 4 and set(report["models"]) == {"baseline", "tuned"}
    preds = [json.loads(x) for x in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8  # every task answered by both models
    assert report["comparison"]["paired_tasks"] == 4
