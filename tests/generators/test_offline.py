"""The offline backend: determinism, resume, validity, held-out splits, preference failures."""
import json
from pathlib import Path

import pytest

from trajtune.chat import parse_tool_calls, render
from trajtune.generators import offline
from trajtune.generators.offline import (FAILURE_TYPES, PreferencesConfig, TasksConfig, TrajectoriesConfig,
                                         generate_preferences, generate_tasks, generate_trajectories, load_sources)
from trajtune.generators.templates import load_templates
from trajtune.records import normalize_text
from trajtune.schemas.validate import require_valid
from trajtune.scoring import score


@pytest.fixture(scope="module")
def src():
    return load_sources(TrajectoriesConfig())


@pytest.fixture(scope="module")
def data(tmp_path_factory, src):
    d = tmp_path_factory.mktemp("gen")
    out = {"sft": d / "train.jsonl", "preference": d / "pairs.jsonl", "task": d / "eval.jsonl"}
    summaries = {
        "sft": generate_trajectories(TrajectoriesConfig(count=240, seed=0), str(out["sft"]), sources=src),
        "preference": generate_preferences(PreferencesConfig(count=160, seed=0), str(out["preference"]), sources=src),
        "task": generate_tasks(TasksConfig(count=90, seed=1), str(out["task"]), sources=src),
    }
    return out, summaries


def _rows(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_every_generated_file_passes_validate(data):
    out, summaries = data
    for kind, p in out.items():
        require_valid(str(p), kind)  # schema + semantic checks, the same as `trajtune validate`
        assert summaries[kind]["invalid"] == 0
        assert summaries[kind]["total"] == len(_rows(p))
        assert all(r["metadata"]["review"] == "pending" for r in _rows(p))


def test_same_seed_same_bytes_and_count_is_a_prefix(tmp_path, src):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    generate_trajectories(TrajectoriesConfig(count=30, seed=7), str(a), sources=src)
    generate_trajectories(TrajectoriesConfig(count=30, seed=7), str(b), sources=src)
    generate_trajectories(TrajectoriesConfig(count=12, seed=7), str(c), sources=src)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(c.read_bytes())  # ids do not depend on --count
    d = tmp_path / "d.jsonl"
    generate_trajectories(TrajectoriesConfig(count=30, seed=8), str(d), sources=src)
    assert a.read_bytes() != d.read_bytes()


def test_rerun_appends_only_missing_records(tmp_path, src):
    p = tmp_path / "t.jsonl"
    first = generate_trajectories(TrajectoriesConfig(count=10), str(p), sources=src)
    again = generate_trajectories(TrajectoriesConfig(count=10), str(p), sources=src)
    assert (first["written"], again["written"], again["existing"]) == (10, 0, 10)
    more = generate_trajectories(TrajectoriesConfig(count=25), str(p), sources=src)
    assert (more["existing"], more["written"], more["total"]) == (10, 15, 25)
    # the gate table adds up to the candidates drawn: the resumed run replays the stream past the 10 in the file
    for s in (first, more):
        assert sum(s["gates"].values()) == s["candidates"], s["gates"]
    assert first["gates"]["already_written"] == 0 and more["gates"]["already_written"] == 10
    ids = [r["id"] for r in _rows(p)]
    assert len(ids) == len(set(ids)) == 25
    ref = tmp_path / "ref.jsonl"
    generate_trajectories(TrajectoriesConfig(count=25), str(ref), sources=src)
    assert p.read_bytes() == ref.read_bytes()


def test_trajectories_have_the_agent_shape_and_metadata(data, src):
    out, summaries = data
    rows = _rows(out["sft"])
    multi = [r for r in rows if r["metadata"]["steps"] >= 2]
    assert multi, "multi-step trajectories expected"
    for r in rows:
        m = r["messages"]
        assert [x["role"] for x in m[:2]] == ["system", "user"]
        assert m[-1]["role"] == "assistant" and not m[-1].get("tool_calls") and m[-1]["content"]
        steps = r["metadata"]["steps"]
        assert sum(1 for x in m if x.get("tool_calls")) == steps
        assert sum(1 for x in m if x["role"] == "tool") == steps
        for x in m:
            if x["role"] == "tool":
                fn = next(c["function"] for y in m for c in (y.get("tool_calls") or []) if c["id"] == x["tool_call_id"])
                assert x["content"] == src.catalog[fn["name"]].simulate(fn["arguments"])  # observations from simulators
        names = [t["function"]["name"] for t in r["tools"]]
        assert 2 <= len(names) <= 5  # relevant tools plus a few distractors, never the whole catalog
        assert set(r["metadata"]) >= {"category", "difficulty", "template_id", "review"}
    assert set(summaries["sft"]["by_category"]) == {"coding", "debugging", "refactoring", "devops", "data", "chat"}
    assert set(summaries["sft"]["by_difficulty"]) == {"easy", "medium", "hard"}


def test_rendering_a_trajectory_and_parsing_it_back_gives_the_same_calls(data, tmp_path):
    from trajtune.testing import build_tokenizer

    tok = build_tokenizer(tmp_path)  # the tiny models' ChatML tokenizer (no torch needed)
    for r in _rows(data[0]["sft"])[:40]:
        text = render(tok, r["messages"], r["tools"])
        turns = text.split("<|im_start|>assistant\n")[1:]
        got = [c for t in turns for c in parse_tool_calls(t.split("<|im_end|>")[0]).calls]
        want = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for m in r["messages"] for c in (m.get("tool_calls") or [])]
        assert got == want


def test_training_never_sees_held_out_phrasings_or_templates(data):
    out, summaries = data
    ts = load_templates()
    held_templates = {t.id for t in ts.templates.values() if t.split == "eval"}
    train = _rows(out["sft"]) + _rows(out["preference"])
    train_users = {normalize_text(next(m["content"] for m in (r.get("messages") or r["prompt"]) if m["role"] == "user"))
                   for r in train}
    assert not {r["metadata"]["template_id"] for r in train} & held_templates
    tasks = _rows(out["task"])
    for t in tasks:
        user = next(m["content"] for m in t["prompt"] if m["role"] == "user")
        assert normalize_text(user) not in train_users
        reason = t["metadata"]["split_reason"]
        assert (t["metadata"]["template_id"] in held_templates) == (reason == "held_out_template")
        if reason == "held_out_phrasing":
            tmpl = ts.templates[t["metadata"]["template_id"]]
            assert t["metadata"]["phrasing"] in tmpl.phrasing_indices("eval")
    assert set(summaries["task"]["by_split_reason"]) == {"held_out_phrasing", "held_out_template", "no_call"}


def test_task_arguments_are_recoverable_from_the_prompt_and_gold_answers_pass_the_scorer(data):
    from trajtune.chat import format_tool_call

    tasks = _rows(data[0]["task"])
    later = [t for t in tasks if t["metadata"].get("step", 0) > 0]
    assert later and all(t["prompt"][-1]["role"] == "tool" for t in later)  # earlier steps + observations given
    for t in tasks:
        calls = t["expected"]["calls"]
        if not calls:
            assert score(t, "Hello! How can I help?").passed
            assert not score(t, format_tool_call(t["tools"][0]["function"]["name"], {})).passed
            continue
        text = " ".join(m.get("content") or "" for m in t["prompt"] if m["role"] == "user")
        gold = {}
        for arg, values in calls[0]["arguments"].items():
            assert values[0] is not None
            if arg != "environment":  # "prod" in the text stands for "production"
                assert str(values[0]) in text, (arg, values, text)
            gold[arg] = values[0]
        assert score(t, format_tool_call(calls[0]["name"], gold)).passed


def test_preferences_label_each_failure_and_the_rejected_side_fails_the_scorer(data):
    rows = _rows(data[0]["preference"])
    types = {r["metadata"]["failure_type"] for r in rows}
    assert types >= set(FAILURE_TYPES)
    for r in rows:
        assert r["chosen"] != r["rejected"]
        ft = r["metadata"]["failure_type"]
        chosen = r["chosen"][0]
        if ft == "unneeded_call":
            task = {"prompt": r["prompt"], "tools": r["tools"], "expected": {"calls": []}}
        else:
            fn = chosen["tool_calls"][0]["function"]
            task = {"prompt": r["prompt"], "tools": r["tools"],
                    "expected": {"calls": [{"name": fn["name"], "arguments": {k: [v] for k, v in fn["arguments"].items()}}]}}
        from trajtune.chat import assistant_text

        assert score(task, assistant_text(chosen)).passed
        bad = score(task, assistant_text(r["rejected"][0]))
        assert not bad.passed, (ft, r["rejected"])
        expect = {"wrong_tool": "wrong_tool", "missing_required_arg": "missing_argument", "wrong_type": "wrong_argument",
                  "wrong_value": "wrong_argument", "hallucinated_tool": "hallucinated_tool",
                  "malformed_json": "unparsable_json", "truncated_json": "truncated", "chatter": "no_call",
                  "unneeded_call": "unexpected_call", "extra_argument": "extra_argument", "extra_call": "extra_calls"}[ft]
        assert bad.reason == expect, (ft, bad.reason, bad.detail)


def test_failure_mix_weights_control_the_rejected_side(tmp_path, src):
    p = tmp_path / "p.jsonl"
    mix = {t: 0.0 for t in FAILURE_TYPES} | {"chatter": 1.0, "truncated_json": 3.0}
    s = generate_preferences(PreferencesConfig(count=60, failure_mix=mix, no_call_share=0.0), str(p), sources=src)
    assert set(s["by_failure_type"]) == {"chatter", "truncated_json"}
    assert s["by_failure_type"]["truncated_json"] > s["by_failure_type"]["chatter"]


def test_near_duplicates_are_dropped_and_counted_and_a_short_run_says_so(tmp_path):
    tpl = tmp_path / "t.yaml"
    tpl.write_text("""\
pools:
  table: [orders, users]
templates:
  - id: count
    category: data
    slots: {table: table}
    phrasings: ["Count {table}.", "How many rows in {table}?", "Row count of {table}?", "Size of {table}?"]
    steps:
      - {call: count_rows, args: {table: "{table}"}}
""")
    # template_share 1: only the template (the grammar would phrase the catalog's other tools)
    s = generate_trajectories(TrajectoriesConfig(count=20, templates=str(tpl), no_call_share=0.0, max_attempts=5,
                                                 template_share=1.0),
                              str(tmp_path / "o.jsonl"))
    assert s["total"] == 6  # 3 training phrasings x 2 tables
    assert s["short"] == 14
    assert s["dropped_near_duplicates"] > 0


def test_category_filter(tmp_path, src):
    s = generate_trajectories(TrajectoriesConfig(count=15, category=["devops"], no_call_share=0.0),
                              str(tmp_path / "d.jsonl"), sources=src)
    assert s["by_category"] == {"devops": 15}


def test_iter_tasks_streams_training_prompts_for_backends(src):
    import itertools

    tasks = list(itertools.islice(offline.iter_tasks(TasksConfig(split="train"), sources=src), 50))
    assert len({t["id"] for t in tasks}) == 50
    assert all(t["metadata"]["split_reason"] in ("train_phrasing", "no_call") for t in tasks)
    assert all(t["metadata"]["step"] == 0 for t in tasks)
