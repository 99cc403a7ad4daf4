"""`trajtune train-embed` through the real CLI (subprocesses: exit codes, files and messages as a user
sees them) on a tiny locally built sentence-transformers model: trains, re-runs as a no-op, resumes
after SIGKILL to the same steps and losses, early-stops on the validation metric, LoRA merged into
final/, --holdout, and the data gate."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trajtune import training

_spec = importlib.util.spec_from_file_location("_embed_data", Path(__file__).parents[1] / "scripts" / "embed_data.py")
embed_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(embed_data)

pytestmark = pytest.mark.slow


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "train-embed", *map(str, args)],
                          capture_output=True, text=True, env=env or _env(), cwd=cwd, timeout=300)


def _env(sleep=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    if sleep:
        env["TRAJTUNE_TEST_STEP_SLEEP"] = str(sleep)
    return env


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from trajtune.testing import build_tiny_embedder

    return build_tiny_embedder(tmp_path_factory.mktemp("embedder") / "tiny")


@pytest.fixture(scope="module")
def trips(tmp_path_factory):
    return embed_data.write(tmp_path_factory.mktemp("d") / "triplets.jsonl", embed_data.triplets(120))


def _args(embedder, data, out, **kw):
    base = {"model": embedder, "output": out, "max-steps": 8, "save-steps": 2, "eval-steps": 2, "save-total-limit": 10,
            "batch-size": 8, "logging-steps": 1, "precision": "fp32", "lr": "1e-3", "patience": 0}
    base.update(kw)
    return [str(data)] + [str(x) for k, v in base.items() for x in (f"--{k}", v)]


def test_trains_a_sentence_transformers_model_then_rerun_is_a_no_op(embedder, trips, tmp_path):
    out = tmp_path / "run"
    res = run(*_args(embedder, trips, out, **{"max-steps": 4}), "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["finished"] and s["global_step"] == 4 and s["stop_reason"] == "max_steps reached"
    assert s["loss"] == "mnrl" and s["batch"]["batch_sampler"].endswith("NO_DUPLICATES")
    assert s["data"]["eval_split"] == "auto" and s["data"]["train_triplets"] + s["data"]["eval_triplets"] == 120
    assert s["best_eval_metric"]["name"] == "mrr@10" and 0 <= s["best_eval_metric"]["value"] <= 1
    assert set(s["eval_retrieval"]) >= {"recall@1", "recall@10", "mrr@10", "ndcg@10"}
    assert s["tokens_seen"] > 0 and "done: max_steps reached at step 4" in res.stderr
    assert 1 < s["rows_per_batch"] <= 8 and "distinct documents" not in res.stderr
    assert "validation retrieval (best checkpoint)" in res.stderr and "Traceback" not in res.stderr
    final = out / "final"
    manifest = json.loads((final / "trajtune_embed.json").read_text())
    assert manifest["base_model"] == str(embedder) and len(manifest["trained_documents"]) > 10
    assert (out / "tensorboard").is_dir() and (out / "training_summary.json").is_file()
    from sentence_transformers import SentenceTransformer

    emb = SentenceTransformer(str(final), device="cpu").encode(["please read the file"])
    assert emb.shape[0] == 1
    again = run(*_args(embedder, trips, out, **{"max-steps": 4}), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] is True
    assert "already holds a finished run; nothing to do" in again.stderr


def _wait_for_checkpoint(proc, run_dir, step, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if training.is_complete_checkpoint(run_dir / f"checkpoint-{step}"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def _losses(run_dir, step):
    hist = json.loads((run_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in hist if "loss" in h}


@pytest.mark.parametrize("method,twins", [("full", False), ("lora", False), ("full", True)])
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(embedder, trips, tmp_path, method, twins):
    ref, out = tmp_path / "ref", tmp_path / "run"
    extra = ["--equivalents-from", str(_catalog_file(tmp_path))] if twins else []  # the sense sampler's batches resume too
    args = _args(embedder, trips, out, method=method) + extra
    proc = subprocess.Popen([sys.executable, "-m", "trajtune.cli.app", "train-embed", *args], env=_env(sleep=0.3),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, out, 4)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "final").exists()
    res = run(*args)  # the same command again: continues from the newest complete checkpoint
    assert res.returncode == 0, res.stderr
    s = json.loads((out / "training_summary.json").read_text())
    resumed_at = int(s["resumed_from"].rsplit("-", 1)[1])
    assert resumed_at >= 4 and s["finished"] and s["global_step"] == 8
    assert s["batch"]["batch_sampler"].startswith("SenseBatches") == twins
    r = run(*_args(embedder, trips, ref, method=method), *extra)
    assert r.returncode == 0, r.stderr
    got, want = _losses(out, 8), _losses(ref, 8)
    assert sorted(got) == sorted(want) == list(range(1, 9))
    for step in (resumed_at + 1 if resumed_at < 8 else 8, 8):
        assert got[step] == pytest.approx(want[step], rel=1e-4)
    final = out / "final"
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    if method == "lora":  # only the adapter trained, and it is folded into a plain model
        assert s["method"] == "lora" and s["params"]["trainable"] < s["params"]["total"] / 2


def test_early_stopping_when_the_validation_metric_stops_improving(embedder, trips, tmp_path):
    res = run(*_args(embedder, trips, tmp_path / "es", lr=0.0, patience=1, **{"eval-steps": 1, "save-steps": 1}), "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["global_step"] == 2 and s["stop_reason"] == "early stopping (validation mrr@10 did not improve for 1 evaluations)"


def test_holdout_keeps_evaluation_requests_and_documents_out(embedder, trips, tmp_path):
    tasks = embed_data.write(tmp_path / "tasks.jsonl", embed_data.tasks(6))
    res = run(*_args(embedder, trips, tmp_path / "h", **{"max-steps": 1}), "--holdout", tasks, "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["data"]["held_out"] > 0
    assert s["data"]["train_triplets"] + s["data"]["eval_triplets"] == 120 - s["data"]["held_out"]


def test_bad_or_pending_data_is_refused_before_the_model_loads(trips, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(trips.read_text().splitlines()[0] + "\n" + '{"id": "x", "anchor": "a", "positive": "b"}\n')
    res = run(bad, "--model", tmp_path / "no-such-model", "-o", tmp_path / "r1")
    assert res.returncode == 1 and "bad.jsonl:2" in res.stderr and "Traceback" not in res.stderr
    pending = embed_data.write(tmp_path / "pending.jsonl", embed_data.triplets(60, review="pending"))
    res = run(pending, "--model", tmp_path / "no-such-model", "-o", tmp_path / "r2")
    assert res.returncode == 1 and "not reviewed" in res.stderr
    res = run(pending, "--method", "qlora", "-o", tmp_path / "r3")
    assert res.returncode == 2 and "method is full or lora" in res.stderr


def test_equivalents_from_keeps_same_sense_tools_out_of_one_batch(embedder, trips, tmp_path):
    from trajtune.converters.tool_retrieval import load_tools

    tools = load_tools(_catalog_file(tmp_path))
    res = run(*_args(embedder, trips, tmp_path / "s", **{"max-steps": 2}), "--equivalents-from",
              tmp_path / "tools.json", "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["finished"] and s["batch"]["batch_sampler"] == "SenseBatches(12 senses)"
    assert s["data"]["documents_with_sense"] == s["data"]["documents"] == len(tools)
    assert "same-sense tools never share a batch" in res.stderr
    # a catalog that declares no senses is a usage error, named before training
    plain = tmp_path / "nosense.json"
    plain.write_text(json.dumps([{k: v for k, v in t.items() if k != "x-trajtune"} for t in tools]))
    bad = run(*_args(embedder, trips, tmp_path / "n", **{"max-steps": 2}), "--equivalents-from", plain)
    assert bad.returncode == 2 and "none of the" in bad.stderr and "Traceback" not in bad.stderr


def test_too_few_documents_for_the_batch_is_said_and_measured(embedder, trips, tmp_path):
    # no text may appear twice in an MNRL batch: with ~20 tools a batch of 64 cannot fill up; the user is told
    # before training and the summary says how many rows the batches really held
    res = run(*_args(embedder, trips, tmp_path / "r", **{"max-steps": 2, "batch-size": 64}), "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    docs = s["data"]["documents"]
    assert docs < 128 and f"only {docs} distinct documents for batches of 64" in res.stderr
    assert s["rows_per_batch"] <= docs // 2 + 1 < 64


def _catalog_file(tmp_path):
    """embed_data's tools, the five objects of one verb sharing a sense (so some twins meet)."""
    tools = embed_data.tools()
    for t in tools:
        verb = t["function"]["name"].split("_")[0]
        t["x-trajtune"] = {"sense": f"{verb}:any", "family": verb}
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    return path


def test_validation_split_by_document_holds_out_whole_tools(embedder, trips, tmp_path):
    # --eval-split-by document: validation asks for tools whose triplets never trained as positives
    # (with senses, all spellings of one sense together), and no validation request is trained on
    cat = _catalog_file(tmp_path)
    out = tmp_path / "doc"
    res = run(*_args(embedder, trips, out, **{"max-steps": 2}), "--eval-split-by", "document",
              "--equivalents-from", cat, "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    d = s["data"]
    assert d["eval_split_by"] == "document" and d["eval_triplets"] > 0 and d["eval_documents"] >= 1
    assert "held-out tools" in res.stderr and s["best_eval_metric"]["value"] is not None

    from trajtune.scripts.train_embed import split_by_document
    from trajtune.embeddings import sense_keys

    records = embed_data.triplets(120)
    keys = sense_keys([str(cat)])
    train, ev, dropped = split_by_document(records, 0.1, 42, keys)
    held = {keys[r["positive"]] for r in ev}
    assert ev and not any(keys[r["positive"]] in held for r in train)
    asks = {r["anchor"] for r in ev}
    assert not any(r["anchor"] in asks for r in train) and len(train) + len(ev) + dropped == 120
    assert split_by_document(records, 0.1, 42, keys) == (train, ev, dropped)  # deterministic per seed
