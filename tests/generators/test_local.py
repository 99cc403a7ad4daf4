"""Local hf backend with a real tiny model: batched sampling, rewards from THE scorer, groups and
preference pairs, determinism for a seed, resume."""
from __future__ import annotations

import pytest

from trajtune.chat import assistant_text
from trajtune.errors import ConfigError, DataError
from trajtune.generators import local
from trajtune.jsonl import read_jsonl
from trajtune.records import validator
from trajtune.scoring import score

TOOLS = [{"type": "function", "function": {"name": "read_file", "description": "Read a file.",
                                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                                                          "required": ["path"]}}}]


def tasks(n=6):
    # "contains 'a'" makes random replies pass or fail at random: rewards vary within a group
    out = [{"id": f"ans-{i}", "prompt": [{"role": "user", "content": f"Read file {i}"}], "tools": TOOLS,
            "expected": {"answer": "a", "match": "contains"}, "metadata": {"category": "coding", "difficulty": "easy"}}
           for i in range(n)]
    out.append({"id": "call-0", "prompt": [{"role": "user", "content": "Read src/app.py"}], "tools": TOOLS,
                "expected": {"calls": [{"name": "read_file", "arguments": {"path": ["src/app.py"]}}]},
                "metadata": {"category": "coding", "difficulty": "easy"}})
    return out


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return local.load_model(str(tiny_model))


def cfg(tiny_model, **kw):
    kw = {"samples": 4, "reply_limit": 6, "batch_size": 4, "seed": 0, "emit": "group", **kw}
    return local.LocalConfig(model=str(tiny_model), **kw)


def run(tmp_path, name, loaded, tiny_model, **kw):
    model, tok = loaded
    count = kw.pop("count", None)
    out = tmp_path / name
    s = local.generate(tasks(), out, cfg(tiny_model, **kw), count=count, model=model, tokenizer=tok)
    return s, [r.obj for r in read_jsonl(out)] if out.exists() else []


def by_id(all_tasks):
    return {t["id"]: t for t in all_tasks}


def test_groups_hold_k_responses_rewarded_by_the_scorer(tmp_path, loaded, tiny_model):
    s, rows = run(tmp_path, "groups.jsonl", loaded, tiny_model, keep_flat=True)
    assert s["written"] == 7 and s["responses"] == 28
    t = by_id(tasks())
    for rec in rows:
        validator("group")(rec)
        assert rec["metadata"]["review"] == "pending" and rec["metadata"]["source"] == "hf"
        task = t[rec["metadata"]["task_id"]]
        assert rec["prompt"] == task["prompt"] and rec["tools"] == TOOLS
        assert len(rec["responses"]) == 4
        for resp, reason in zip(rec["responses"], rec["metadata"]["reasons"]):
            text = assistant_text(resp["messages"][0])
            verdict = score(task, text)
            assert resp["reward"] == verdict.reward  # the reward IS the scorer's
            assert (reason is None) == verdict.passed
    assert s["passed"] == sum(r["metadata"]["passed"] for r in rows)
    assert any(len({x["reward"] for x in r["responses"]}) > 1 for r in rows)
    flat = sum(1 for r in rows if len({x["reward"] for x in r["responses"]}) == 1)
    assert s["flat_groups"] == flat


def test_flat_groups_are_dropped_by_default(tmp_path, loaded, tiny_model):
    kept, _ = run(tmp_path, "all.jsonl", loaded, tiny_model, keep_flat=True)
    s, rows = run(tmp_path, "groups.jsonl", loaded, tiny_model)
    assert s["flat_groups"] == kept["flat_groups"] > 0
    assert s["written"] == 7 - s["flat_groups"] == len(rows)
    assert all(len({x["reward"] for x in r["responses"]}) > 1 for r in rows)


def test_same_seed_same_records_other_seed_differs(tmp_path, loaded, tiny_model):
    _, a = run(tmp_path, "a.jsonl", loaded, tiny_model, keep_flat=True)
    _, b = run(tmp_path, "b.jsonl", loaded, tiny_model, keep_flat=True)
    _, c = run(tmp_path, "c.jsonl", loaded, tiny_model, keep_flat=True, seed=1)
    assert a == b
    assert [r["responses"] for r in a] != [r["responses"] for r in c]


def test_preferences_pair_best_over_worst_and_skip_ties(tmp_path, loaded, tiny_model):
    s, rows = run(tmp_path, "prefs.jsonl", loaded, tiny_model, emit="preference")
    _, groups = run(tmp_path, "groups.jsonl", loaded, tiny_model, keep_flat=True)  # same seed: same samples
    flat = sum(1 for g in groups if len({x["reward"] for x in g["responses"]}) == 1)
    assert s["ties"] == flat and s["written"] == 7 - flat and s["written"] > 0
    t = by_id(tasks())
    for rec in rows:
        validator("preference")(rec)
        m = rec["metadata"]
        task = t[m["task_id"]]
        assert m["chosen_reward"] > m["rejected_reward"]
        assert score(task, assistant_text(rec["chosen"][0])).reward == m["chosen_reward"]
        text = assistant_text(rec["rejected"][0])
        assert score(task, text).reward == m["rejected_reward"]
        # the failure type is the scorer's reason (truncated when the sample hit the token limit)
        assert m["failure_type"] in {score(task, text, truncated=t).reason for t in (False, True)} - {None}
        assert m["review"] == "pending"


def test_count_target_and_resume(tmp_path, loaded, tiny_model):
    s1, _ = run(tmp_path, "g.jsonl", loaded, tiny_model, count=3, keep_flat=True)
    s2, rows = run(tmp_path, "g.jsonl", loaded, tiny_model, count=5, keep_flat=True)
    s3, _ = run(tmp_path, "g.jsonl", loaded, tiny_model, count=5, keep_flat=True)
    assert (s1["written"], s2["existing"], s2["written"], s3["written"], s3["responses"]) == (3, 3, 2, 0, 0)
    assert len({r["id"] for r in rows}) == 5


def test_response_message_keeps_clean_calls_structured_and_malformed_text_verbatim():
    good = '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>'
    msg = local.response_message(good)
    assert msg["tool_calls"][0]["function"] == {"name": "read_file", "arguments": {"path": "a.py"}}
    assert assistant_text(msg) == good  # renders back to what the model wrote
    bad = '<tool_call>\n{"name": "read_file", "arguments": {"path": '
    assert local.response_message(bad) == {"role": "assistant", "content": bad}


def test_rejects_non_task_input_and_bad_settings(tmp_path, loaded, tiny_model):
    model, tok = loaded
    sft = {"id": "s", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(DataError, match="not a task record"):
        local.generate([sft], tmp_path / "x.jsonl", cfg(tiny_model), model=model, tokenizer=tok)
    with pytest.raises(ConfigError, match="at least 2"):
        local.generate(tasks(), tmp_path / "x.jsonl", cfg(tiny_model, samples=1), model=model, tokenizer=tok)


# ------------------------------------------------------------------------------ through the CLI


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", *args], capture_output=True, text=True)


def test_cli_hf_backend_groups_from_the_templates(tmp_path, tiny_model):
    import json

    out = tmp_path / "groups.jsonl"
    p = _cli("generate", "preferences", "--backend", "hf", "--model", str(tiny_model), "-k", "3", "--emit", "group",
             "--keep-flat", "--set", "reply_limit=4", "--count", "3", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["kind"], s["written"], s["samples"], s["responses"]) == ("group", 3, 3, 9)
    rows = [r.obj for r in read_jsonl(out)]
    for rec in rows:
        validator("group")(rec)
        assert len(rec["responses"]) == 3 and rec["metadata"]["review"] == "pending"
        assert rec["metadata"]["template_id"]  # drawn from the training templates
    saved = (tmp_path / "groups.config.yaml").read_text()
    assert "emit: group" in saved and "backend: hf" in saved and "samples: 3" in saved
    v = _cli("validate", str(out))
    assert v.returncode == 0, v.stdout + v.stderr


def test_all_ties_is_a_run_error_with_the_reason(tmp_path, tiny_model):
    from trajtune.errors import RunError
    from trajtune.scripts.generate import PreferencesConfig

    # a random tiny model never makes a tool call: every sample of a template task gets the same reward
    cfg = PreferencesConfig(output=str(tmp_path / "p.jsonl"), count=1, backend="hf", model=str(tiny_model), samples=2,
                            reply_limit=3)
    cfg.check()
    with pytest.raises(RunError, match="every response got the same reward") as err:
        local.generate_preferences(cfg, cfg.output)
    assert "raise -k or the temperature" in str(err.value) and err.value.exit_code == 1
