"""Lineage manifests, the registry and `trajtune runs ...` through the real CLI (real processes,
real files, a real SQLite registry): what a user relies on to find a run again and trust it."""
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALPACA = ROOT / "tests" / "fixtures" / "convert" / "alpaca.json"
_spec = importlib.util.spec_from_file_location("_sft_records", ROOT / "tests" / "scripts" / "sft_records.py")
sft_records = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sft_records)


def tt(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`trajtune ARGS` in a real process, registering in CWD/runs/registry.sqlite."""
    full = {**os.environ, "TRAJTUNE_REGISTRY": str(cwd / "runs" / "registry.sqlite"), "COLUMNS": "200", **(env or {})}
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, env=full, timeout=600)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def ok(*args, cwd: Path, **kw) -> dict | None:
    res = tt(*args, cwd=cwd, **kw)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout) if "--json" in args else None


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def manifest(p: Path) -> dict:
    return json.loads(p.read_text())


def test_every_stage_leaves_a_manifest_and_the_lineage_reaches_the_raw_data(tmp_path):
    ok("generate", "trajectories", "--count", "12", "--seed", "0", "-o", "data/train.jsonl", cwd=tmp_path)
    generated = sha(tmp_path / "data" / "train.jsonl")
    gen = manifest(tmp_path / "data" / "train.manifest.json")
    assert gen["stage"] == "generate trajectories" and gen["status"] == "finished"
    assert gen["outputs"][0] == {"path": "train.jsonl", "bytes": (tmp_path / "data" / "train.jsonl").stat().st_size,
                                 "sha256": generated, "records": 12}
    ok("review", "data/train.jsonl", "--approve-all", cwd=tmp_path)
    ok("split", "data/train.jsonl", "-o", "data/splits", cwd=tmp_path)
    ok("convert", "--from", "alpaca", "--to", "sft", ALPACA, "-o", "data/conv.jsonl", cwd=tmp_path)

    # review rewrote the file: its manifest replaced generate's, which it keeps, and names it as the parent
    rev = manifest(tmp_path / "data" / "train.manifest.json")
    assert rev["stage"] == "review" and rev["earlier"][0]["run_id"] == gen["run_id"]
    assert rev["inputs"][0]["sha256"] == generated  # read before it rewrote it
    assert rev["outputs"][0]["sha256"] == sha(tmp_path / "data" / "train.jsonl") != generated
    assert rev["parents"] == [{"field": "input", "path": str(tmp_path / "data" / "train.jsonl"), "run_id": gen["run_id"],
                               "stage": "generate trajectories", "manifest": str(tmp_path / "data" / "train.manifest.json"),
                               "matches": True}]
    split = manifest(tmp_path / "data" / "splits" / "manifest.json")
    assert split["command"] == ["trajtune", "split", "data/train.jsonl", "-o", "data/splits"]
    assert split["config"]["ratios"] == [0.7, 0.15, 0.15] and split["parents"][0]["run_id"] == rev["run_id"]
    outs = {o["path"]: o for o in split["outputs"]}
    assert {"train.jsonl", "val.jsonl", "test.jsonl"} <= set(outs)
    assert sum(outs[k]["records"] for k in ("train.jsonl", "val.jsonl", "test.jsonl")) == 12
    assert all(outs[k]["sha256"] == sha(tmp_path / "data" / "splits" / k) for k in outs)
    assert {"python", "trajtune", "torch", "transformers"} <= set(split["packages"])
    assert split["wall_time_s"] > 0 and split["peak_memory"]["rss_mb"] > 0 and split["metrics"]["counts.train"] > 0
    conv = manifest(tmp_path / "data" / "conv.manifest.json")
    assert conv["inputs"][0]["sha256"] == sha(ALPACA) and conv["parents"] == []  # raw data: nothing made it

    listed = ok("runs", "list", "--json", cwd=tmp_path)
    assert [r["stage"] for r in listed["runs"]] == ["generate trajectories", "review", "split", "convert"]
    assert ok("runs", "list", "--stage", "split", "--json", cwd=tmp_path)["count"] == 1
    shown = ok("runs", "show", "data/splits", "--json", cwd=tmp_path)
    chain, node = [], shown["lineage"]
    while True:
        chain.append(node["stage"])
        runs = [e["run"] for e in node["from"] if "run" in e]
        if not runs:
            break
        node = runs[0]
    assert chain == ["split", "review", "generate trajectories"]
    text = tt("runs", "show", split["run_id"][:20], cwd=tmp_path).stderr  # a unique prefix of the id
    assert "lineage:" in text and gen["run_id"] in text and "trajtune split data/train.jsonl -o data/splits" in text

    # the file changes after the split read it: a new reader is told its producer no longer matches
    lines = (tmp_path / "data" / "train.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "data" / "train.jsonl").write_text("".join(lines[:-1]))
    ok("split", "data/train.jsonl", "-o", "data/splits2", cwd=tmp_path)
    assert manifest(tmp_path / "data" / "splits2" / "manifest.json")["parents"][0]["matches"] is False
    assert "changed since that run wrote it" in tt("runs", "show", "data/splits2", cwd=tmp_path).stderr


def test_reindex_rebuilds_the_registry_from_the_manifests(tmp_path):
    ok("generate", "tasks", "--count", "5", "-o", "data/tasks.jsonl", cwd=tmp_path)
    ok("review", "data/tasks.jsonl", "--approve-all", cwd=tmp_path)
    ok("convert", "--from", "alpaca", "--to", "sft", ALPACA, "-o", "data/conv.jsonl", cwd=tmp_path)
    before = {r["run_id"] for r in ok("runs", "list", "--json", cwd=tmp_path)["runs"]}
    for p in (tmp_path / "runs").glob("registry.sqlite*"):
        p.unlink()
    res = tt("runs", "list", cwd=tmp_path)
    assert res.returncode == 2 and "no registry at" in res.stderr and "trajtune runs reindex" in res.stderr
    got = ok("runs", "reindex", ".", "--json", cwd=tmp_path)
    assert got["runs_indexed"] == 3 and got["removed"] == 0  # generate's run lives on inside review's manifest
    assert {r["run_id"] for r in ok("runs", "list", "--json", cwd=tmp_path)["runs"]} == before
    (tmp_path / "data" / "conv.manifest.json").unlink()
    (tmp_path / "data" / "junk.manifest.json").write_text('{"not": "ours"}')
    got = ok("runs", "reindex", "data", "--json", cwd=tmp_path)
    assert got["removed"] == 1 and got["unreadable"] == ["data/junk.manifest.json"] and got["runs_in_registry"] == 2


# --------------------------------------------------------------------------------------------- compare


def _reply(task: dict, passing: bool) -> str:
    calls = task["expected"].get("calls")
    if calls is None:
        return task["expected"]["answer"] if passing else "no idea"
    if passing == (not calls):  # a plain reply passes a no-call task and fails a call task
        return "I can answer that directly."
    wanted = calls or [{"name": "no_such_tool", "arguments": {}}]
    return "\n".join("<tool_call>\n" + json.dumps({"name": c["name"], "arguments": {
        k: next(v for v in vals if v is not None) for k, vals in c["arguments"].items() if any(v is not None for v in vals)}})
        + "\n</tool_call>" for c in wanted)


def _predictions(folder: Path, tasks: list[dict], key: str, passing: set) -> dict:
    """predictions.jsonl as evaluate writes it (scored by the real scorer), so evaluate finds every task done."""
    from trajtune.scoring import score

    folder.mkdir(parents=True)
    got = {}
    with open(folder / "predictions.jsonl", "w") as fh:
        for t in tasks:
            text = _reply(t, t["id"] in passing)
            s = score(t, text, False)
            got[t["id"]] = s.passed
            fh.write(json.dumps({
                "id": f"{key}:{t['id']}", "task_id": t["id"], "model": "model", "model_key": key, "model_path": "m",
                "output": text, "calls": s.calls, "pass": s.passed, "reason": s.reason, "detail": s.detail,
                "kind": s.kind, "valid_json": s.valid_json, "tool_name_correct": s.tool_name_correct,
                "argument_accuracy": s.argument_accuracy, "hallucinated": s.hallucinated, "reward": s.reward,
                "truncated": False, "generated_tokens": 10, "prompt_tokens": 50, "latency_s": 0.1}) + "\n")
    return got


def test_compare_pairs_two_evaluations_with_the_exact_mcnemar_test_and_refuses_other_task_sets(tiny_model, tmp_path):
    from trajtune.scripts.evaluate import Config, _resolve_spec

    scipy_stats = pytest.importorskip("scipy.stats")
    ok("generate", "tasks", "--count", "30", "--seed", "1", "-o", "tasks.jsonl", cwd=tmp_path)
    tasks = [json.loads(line) for line in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    ids = [t["id"] for t in tasks]
    key = _resolve_spec("model", str(tiny_model), [], Config(tasks="t", output="o", max_new_tokens=32)).key
    a = _predictions(tmp_path / "ev-a", tasks, key, set(ids[:12]))
    b = _predictions(tmp_path / "ev-b", tasks, key, set(ids[4:26]))
    for ev in ("ev-a", "ev-b"):  # the real evaluate: every task is in predictions.jsonl, so it only scores and reports
        res = tt("evaluate", "tasks.jsonl", "--model", tiny_model, "--max-new-tokens", "32", "-o", ev, cwd=tmp_path)
        assert res.returncode == 0 and "all 30 tasks already in predictions.jsonl" in res.stderr, res.stderr
    got = ok("runs", "compare", "ev-a", "ev-b", "--json", cwd=tmp_path)
    fixed = sum(b[i] and not a[i] for i in ids)
    broken = sum(a[i] and not b[i] for i in ids)
    assert fixed >= 5 and broken >= 2  # the fixture has discordant pairs both ways
    n = fixed + broken
    by_hand = min(1.0, 2 * sum(math.comb(n, k) for k in range(min(fixed, broken) + 1)) / 2**n)
    assert (got["fixed"], got["broken"], got["paired_tasks"]) == (fixed, broken, 30)
    assert got["mcnemar_p"] == pytest.approx(scipy_stats.binomtest(fixed, n, 0.5).pvalue, rel=1e-12)
    assert got["mcnemar_p"] == pytest.approx(by_hand, rel=1e-12)
    pa, pb = sum(a.values()) / 30, sum(b.values()) / 30
    assert got["metrics"]["pass_rate"]["delta"] == pytest.approx(pb - pa, abs=1e-4)
    assert got["improvement_points"] == pytest.approx(100 * (pb - pa), abs=0.01)
    table = tt("runs", "compare", "ev-a", "ev-b", cwd=tmp_path).stderr
    assert "McNemar p (paired, exact)" in table and f"{fixed} / {broken}" in table

    # the same model on fewer tasks: not the same task set, refused with the reason
    _predictions(tmp_path / "ev-c", tasks, key, set(ids))
    ok("evaluate", "tasks.jsonl", "--model", tiny_model, "--max-new-tokens", "32", "--limit", "20", "-o", "ev-c", cwd=tmp_path)
    res = tt("runs", "compare", "ev-a", "ev-c", cwd=tmp_path)
    assert res.returncode == 1 and "ran on different tasks: A has 30, B has 20; 10 only in A" in res.stderr
    assert "same tasks file with the same --limit" in res.stderr and res.stderr.count("Error:") == 1
    # the same ids with different contents: refused too
    changed = [dict(t, metadata={**t.get("metadata", {}), "difficulty": "v2"}) if i == 0 else t for i, t in enumerate(tasks)]
    (tmp_path / "tasks2.jsonl").write_text("".join(json.dumps(t) + "\n" for t in changed))
    _predictions(tmp_path / "ev-d", changed, key, set(ids[:12]))
    ok("evaluate", "tasks2.jsonl", "--model", tiny_model, "--max-new-tokens", "32", "-o", "ev-d", cwd=tmp_path)
    res = tt("runs", "compare", "ev-a", "ev-d", cwd=tmp_path)
    assert res.returncode == 1 and "same 30 task ids but different task contents" in res.stderr
    res = tt("runs", "compare", "ev-a:baseline", "ev-b", cwd=tmp_path)
    assert res.returncode == 2 and "has no 'baseline' model" in res.stderr
    res = tt("runs", "compare", "ev-a", cwd=tmp_path)
    assert res.returncode == 2 and "compare takes two evaluations, got 1" in res.stderr
    ev = manifest(tmp_path / "ev-a" / "manifest.json")
    assert ev["evaluation"]["roles"]["model"]["key"] == key and ev["metrics"]["pass_rate"] == pytest.approx(pa, abs=1e-4)
    assert ev["inputs"][0]["records"] == 30 and ev["evaluation"]["task_ids"] == ids
    parents = {p["field"]: p for p in ev["parents"]}
    assert parents["tasks"]["stage"] == "generate tasks" and parents["model"] == {"field": "model", "path": str(tiny_model),
                                                                                  "run_id": None}


# --------------------------------------------------------------------------------------------- promote


def test_promote_active_rollback_export_on_real_training_runs(tiny_model, tmp_path):
    data = sft_records.write(tmp_path / "train.jsonl", 12)
    train = ["train-sft", data, "--model", tiny_model, "--max-steps", "1", "--batch-size", "4",
             "--set", "save_steps=1", "--set", "min_records=10"]
    res = tt(*train, "-o", "runs/a", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # started below the design's threshold: the same warning as `trajtune advise`
    assert "12 approved sft records: SFT needs at least 50" in " ".join(res.stderr.split())
    ok(*train, "--seed", "1", "-o", "runs/b", cwd=tmp_path)
    m = manifest(tmp_path / "runs" / "a" / "manifest.json")
    assert m["stage"] == "train-sft" and m["metrics"]["global_step"] == 1
    outs = {o["path"]: o for o in m["outputs"]}
    weights = tmp_path / "runs" / "a" / "final" / "adapter_model.safetensors"
    assert outs["final/adapter_model.safetensors"]["sha256"] == sha(weights)
    assert m["inputs"][0] == {"field": "data", "path": str(data), "bytes": data.stat().st_size, "sha256": sha(data),
                              "records": 12}
    assert {"field": "model", "path": str(tiny_model), "run_id": None} in m["parents"]
    res = tt(*train, "-o", "runs/a", cwd=tmp_path)  # finished already: nothing trained, the manifest stays
    assert res.returncode == 0 and manifest(tmp_path / "runs" / "a" / "manifest.json")["run_id"] == m["run_id"]

    assert ok("runs", "promote", "runs/a", "--agent", "support", "--json", cwd=tmp_path)["active"]["version"] == "v1"
    assert ok("runs", "promote", "runs/b", "--agent", "support", "--json", cwd=tmp_path)["active"]["version"] == "v2"
    live = ok("runs", "active", "--agent", "support", "--json", cwd=tmp_path)
    assert live["active"]["model_path"] == str(tmp_path / "runs" / "b" / "final") and len(live["history"]) == 2
    assert {r["output"] for r in ok("runs", "list", "--agent", "support", "--json", cwd=tmp_path)["runs"]} == \
        {str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b")}

    res = tt("runs", "export", "--agent", "support", "--format", "vllm", cwd=tmp_path)
    line, rest = res.stdout.split("\n", 1)
    assert line == f"--lora-modules support={tmp_path / 'runs' / 'b' / 'final'}"
    desc = json.loads(rest)
    adapter_cfg = json.loads((tmp_path / "runs" / "b" / "final" / "adapter_config.json").read_text())
    assert desc["base_model"] == adapter_cfg["base_model_name_or_path"] and desc["version"] == "v2"
    assert desc["serve"].startswith("vllm serve ") and "--enable-lora" in desc["serve"] and line in desc["serve"]

    res = tt("runs", "rollback", "--agent", "support", cwd=tmp_path)
    assert res.returncode == 0 and "rolled back v2" in res.stderr and "v1 is active again" in res.stderr
    assert ok("runs", "active", "--agent", "support", "--json", cwd=tmp_path)["active"]["run_id"] == m["run_id"]
    res = tt("runs", "rollback", "--agent", "support", cwd=tmp_path)
    assert res.returncode == 1 and "nothing promoted before it to roll back to" in res.stderr
    ok("convert", "--from", "alpaca", "--to", "sft", ALPACA, "-o", "conv.jsonl", cwd=tmp_path)
    res = tt("runs", "promote", "conv.jsonl", "--agent", "support", cwd=tmp_path)
    assert res.returncode == 2 and "is a convert run: only train-sft, train-dpo, merge-lora runs make a model" in res.stderr
    res = tt("runs", "export", "--agent", "nobody", cwd=tmp_path)
    assert res.returncode == 1 and "agent 'nobody' has no active version" in res.stderr


def test_no_secret_reaches_a_manifest_or_the_registry(tmp_path):
    from trajtune.lineage import redact_argv

    argv = ["generate", "trajectories", "--base-url", "http://alice:s3cr%2Ft@host:8/v1", "--api-key", "sk-123",
            "--hf-token=hf_abc", "--set", "api_key=sk-456", "--set", "max_tokens=5"]
    got = " ".join(redact_argv(argv))
    for secret in ("alice", "s3cr", "sk-123", "hf_abc", "sk-456"):
        assert secret not in got
    assert "http://***@host:8/v1" in got and "max_tokens=5" in got
