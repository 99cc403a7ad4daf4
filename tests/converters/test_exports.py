"""Exports: ours -> openai / sharegpt -> ours gives back the same records; alpaca-text layout."""
from pathlib import Path

import orjson
import pytest

from trajtune import config
from trajtune.converters.convert import run_convert
from trajtune.scripts.convert import Config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"
SOURCES = ["sharegpt.json", "openai.jsonl", "hermes.jsonl", "tool_logs.jsonl", "traces.jsonl", "alpaca.json",
           "llamafactory_v1.jsonl"]


def _run(inp, out, **opts):
    return run_convert(config.build(Config, None, {"input": str(inp), "output": str(out), **opts}))


@pytest.fixture
def ours(tmp_path):
    """Canonical sft records from every tool-bearing fixture, in one file."""
    lines = []
    for i, name in enumerate(SOURCES):
        out = tmp_path / f"src{i}.jsonl"
        _run(FIXTURES / name, out)
        lines += out.read_bytes().splitlines()
    path = tmp_path / "ours.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["openai", "sharegpt"])
def test_round_trip_gives_back_identical_records(ours, tmp_path, fmt):
    exported, back = tmp_path / f"{fmt}.jsonl", tmp_path / f"{fmt}-back.jsonl"
    s1 = _run(ours, exported, source_format="trajtune", to=fmt)
    s2 = _run(exported, back, source_format=fmt)
    assert s1["rejected"] == {} and s2["rejected"] == {}
    assert s1["converted"] == s2["converted"] > 15
    assert back.read_bytes() == ours.read_bytes()


def test_openai_export_writes_arguments_as_strings_and_train_as_weight(ours, tmp_path):
    out = tmp_path / "o.jsonl"
    _run(ours, out, to="openai")
    recs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    calls = [c for r in recs for m in r["messages"] for c in m.get("tool_calls", [])]
    assert calls and all(isinstance(c["function"]["arguments"], str) for c in calls)
    weighted = [m for r in recs for m in r["messages"] if "weight" in m]
    assert {m["weight"] for m in weighted} == {0, 1}
    assert not any("train" in m for r in recs for m in r["messages"])


def test_sharegpt_export_uses_llamafactory_roles_and_a_tools_string(ours, tmp_path):
    out = tmp_path / "s.jsonl"
    _run(ours, out, to="sharegpt")
    rec = orjson.loads(out.read_bytes().splitlines()[0])
    assert [t["from"] for t in rec["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert orjson.loads(rec["conversations"][1]["value"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert isinstance(rec["tools"], str) and orjson.loads(rec["tools"])[0]["name"] == "get_weather"


def test_alpaca_text_export(tmp_path):
    out = tmp_path / "t.jsonl"
    _run(FIXTURES / "alpaca.json", out, to="alpaca-text")
    rec = orjson.loads(out.read_bytes().splitlines()[0])
    assert rec["text"] == "### Instruction:\nGive three tips for staying healthy.\n\n### Response:\n1. Eat well.\n2. Sleep.\n3. Move."


def test_round_trip_keeps_reasoning_train_flags_custom_ids_and_tool_names(tmp_path):
    rec = {"id": "x1", "metadata": {"source": "generate", "category": "ops"},
           "tools": [{"type": "function", "function": {"name": "q", "parameters": {"type": "object", "properties": {}}}}],
           "messages": [
               {"role": "user", "content": "go"},
               {"role": "assistant", "content": "Trying.", "tool_calls": [
                   {"id": "a", "type": "function", "function": {"name": "q", "arguments": {"n": [1, {"deep": None}]}}},
                   {"id": "b", "type": "function", "function": {"name": "q", "arguments": {}}}],
                "train": False, "reasoning": "think"},
               {"role": "tool", "content": "second", "tool_call_id": "b", "name": "q"},
               {"role": "tool", "content": "first", "tool_call_id": "a"},
               {"role": "assistant", "content": "Done.", "train": True}]}
    src = tmp_path / "ours.jsonl"
    src.write_bytes(orjson.dumps(rec) + b"\n")
    for fmt in ("openai", "sharegpt"):
        _run(src, tmp_path / f"{fmt}.jsonl", source_format="trajtune", to=fmt)
        _run(tmp_path / f"{fmt}.jsonl", tmp_path / f"{fmt}-back.jsonl", source_format=fmt)
        assert (tmp_path / f"{fmt}-back.jsonl").read_bytes() == src.read_bytes(), fmt


# --------------------------------------------------------------------------- TRL's formats, both ways

def _ours_of(tmp_path, kind, sources):
    lines = []
    for i, (name, opts) in enumerate(sources):
        out = tmp_path / f"{kind}-src{i}.jsonl"
        s = _run(FIXTURES / name, out, to=kind, **opts)
        assert s["converted"] > 0, name
        lines += out.read_bytes().splitlines()
    path = tmp_path / f"ours-{kind}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _ours_labelled(tmp_path, which):
    src = [("trl_unpaired.jsonl", {})] if which == "unpaired" else [("trl_stepwise.jsonl", {})]
    path = _ours_of(tmp_path, "labelled", src)
    examples = Path(__file__).resolve().parents[2] / "data" / "examples" / "valid" / "labelled.jsonl"
    key = b'"label":' if which == "unpaired" else b'"labels":'
    extra = [line for line in examples.read_bytes().splitlines()
             if key in line.replace(b'": ', b'":')]
    fixed = tmp_path / f"examples-{which}.jsonl"
    fixed.write_bytes(b"\n".join(extra) + b"\n")
    canon = tmp_path / f"examples-{which}-canon.jsonl"
    _run(fixed, canon, source_format="trajtune", to="labelled")  # canonical key order, as convert writes
    path.write_bytes(path.read_bytes() + canon.read_bytes())
    return path


TRL_EXPORTS = {
    "trl": "sft", "trl-prompt-completion": "sft", "trl-preference": "preference",
    "trl-unpaired": "labelled", "trl-stepwise": "labelled",
}


@pytest.mark.parametrize("container", ["jsonl", "parquet", "dataset"])
@pytest.mark.parametrize("fmt", list(TRL_EXPORTS))
def test_trl_round_trip_gives_back_identical_records(ours, tmp_path, fmt, container):
    kind = TRL_EXPORTS[fmt]
    if kind == "sft":
        src = ours
    elif kind == "preference":
        src = _ours_of(tmp_path, "preference", [("trl_preference.jsonl", {}), ("sharegpt_dpo.json", {}),
                                                ("openai_preference.jsonl", {}), ("critiques.jsonl", {})])
    else:
        src = _ours_labelled(tmp_path, "unpaired" if fmt == "trl-unpaired" else "stepwise")
    exported = tmp_path / {"jsonl": "e.jsonl", "parquet": "e.parquet", "dataset": "e-dataset"}[container]
    back = tmp_path / "back.jsonl"
    s1 = _run(src, exported, source_format="trajtune", to=fmt, container=container)
    s2 = _run(exported, back, source_format="trl", to=kind)
    assert s1["rejected"] == {} and s2["rejected"] == {} and s2["skipped"] == {}
    assert s1["converted"] == s2["converted"] >= 3
    assert back.read_bytes() == src.read_bytes()


def test_trl_exports_are_the_shapes_trl_reads(ours, tmp_path):
    out = tmp_path / "pc.jsonl"
    _run(ours, out, to="trl-prompt-completion")
    rec = orjson.loads(out.read_bytes().splitlines()[0])
    assert list(rec) == ["id", "metadata", "tools", "prompt", "completion"]
    assert [m["role"] for m in rec["prompt"]] == ["user"] and rec["completion"][0]["role"] == "assistant"
    assert rec["completion"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # objects, as templates want
    step = _ours_labelled(tmp_path, "stepwise")
    _run(step, tmp_path / "s.jsonl", source_format="trajtune", to="trl-stepwise")
    rec = orjson.loads((tmp_path / "s.jsonl").read_bytes().splitlines()[0])
    assert rec["prompt"] == "Which number is larger, 9.8 or 9.11?"  # TRL's stepwise format is text
    assert rec["completions"][1].startswith("Since 0.11") and rec["labels"] == [True, False]


def test_an_export_that_cannot_hold_a_record_rejects_it(tmp_path):
    src = tmp_path / "l.jsonl"
    src.write_bytes((Path(__file__).resolve().parents[2] / "data" / "examples" / "valid" / "labelled.jsonl").read_bytes())
    s = _run(src, tmp_path / "u.jsonl", source_format="trajtune", to="trl-unpaired")
    assert s["converted"] == 2 and s["rejected"] == {"stepwise record": 1}
    s = _run(src, tmp_path / "w.jsonl", source_format="trajtune", to="trl-stepwise")
    assert s["converted"] == 1 and s["rejected"] == {"unpaired record": 2}
