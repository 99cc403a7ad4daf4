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
