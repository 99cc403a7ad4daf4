"""split: seeded, prompt-grouped, stratified, balanced; train/val/test written atomically."""
import orjson
import pytest

from trajtune import config
from trajtune.converters.split import run_split
from trajtune.scripts.split import Config as SplitConfig
from trajtune.errors import ConfigError, DataError
from trajtune.records import normalize_text, prompt_text

TOOLS = ["search", "search", "search", "search", "search", "search", "weather", "weather", "calc", None]


def rec(i, prompt, tool=None, success=None, category=None):
    meta = {"source": "test"}
    if success is not None:
        meta["success"] = success
    if category:
        meta["category"] = category
    msgs = [{"role": "user", "content": prompt}]
    if tool:
        msgs.append({"role": "assistant", "content": None,
                     "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": tool, "arguments": {}}}]})
        msgs.append({"role": "tool", "content": "ok", "tool_call_id": "call_1"})
    msgs.append({"role": "assistant", "content": "done"})
    return {"id": f"r{i}", "metadata": meta, "messages": msgs}


@pytest.fixture
def data(tmp_path):
    recs = []
    for i in range(200):
        # every prompt appears twice, once with different case/spacing
        p = f"Question number {i // 2}" if i % 2 == 0 else f"question  NUMBER {i // 2}"
        recs.append(rec(i, p, TOOLS[(i // 2) % len(TOOLS)], success=(i % 3 != 0), category="ab"[i % 2]))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path


def split(inp, out, **opts):
    return run_split(config.build(SplitConfig, None, {"input": str(inp), "output": str(out), **opts}), str(inp), str(out))


def load(d):
    return {n: [orjson.loads(x) for x in (d / f"{n}.jsonl").read_bytes().splitlines()] for n in ("train", "val", "test")}


def test_ratios_and_no_normalised_prompt_in_two_splits(data, tmp_path):
    s = split(data, tmp_path / "o")
    parts = load(tmp_path / "o")
    assert {k: len(v) for k, v in parts.items()} == s["counts"]
    assert sum(s["counts"].values()) == 200 and 130 <= s["counts"]["train"] <= 150
    seen = {}
    for name, recs in parts.items():
        for r in recs:
            key = normalize_text(prompt_text(r))
            assert seen.setdefault(key, name) == name
    assert s["groups"] == 100


def test_same_seed_same_bytes_other_seed_other_split(data, tmp_path):
    split(data, tmp_path / "a", seed=7)
    again = config.build(SplitConfig, str(tmp_path / "a" / "split.yaml"), {"output": str(tmp_path / "b")})
    assert again.input == str(data)  # the saved config repeats the run: same input, same options
    run_split(again, again.input, again.output)
    split(data, tmp_path / "c", seed=8)
    for n in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{n}.jsonl").read_bytes() == (tmp_path / "b" / f"{n}.jsonl").read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_stratified_split_keeps_each_tool_in_proportion(data, tmp_path):
    s = split(data, tmp_path / "o", stratify_by="tool", ratios=[0.5, 0.25, 0.25])
    parts = load(tmp_path / "o")
    for tool in ("search", "weather"):
        n = {k: sum(1 for r in v if tool in str(r["messages"])) for k, v in parts.items()}
        total = sum(n.values())
        assert abs(n["train"] - total / 2) <= 2 and abs(n["val"] - total / 4) <= 2
    table = {row["split"]: row for row in s["table"]}
    assert table["input"]["count"] == 200 and table["input"]["distinct_tools"] == 3
    assert table["input"]["success_rate"] == pytest.approx(133 / 200, abs=1e-3)
    assert table["input"]["avg_tool_seq_len"] == pytest.approx(0.9)


def test_balance_caps_over_represented_tools_and_reports_before_and_after(data, tmp_path):
    s = split(data, tmp_path / "o", balance=True, balance_cap=30)
    assert s["strata_before"] == {"(no tool)": 20, "calc": 20, "search": 120, "weather": 40}
    assert s["strata_after"] == {"(no tool)": 20, "calc": 20, "search": 30, "weather": 30}
    assert s["dropped_by_balance"] == 100 and sum(s["counts"].values()) == 100
    assert [row["split"] for row in s["table"]] == ["input", "after balance", "train", "val", "test"]


def test_group_by_metadata_key_keeps_each_key_in_one_split(data, tmp_path):
    split(data, tmp_path / "o", group_by="metadata.category")
    parts = load(tmp_path / "o")
    # categories a/b alternate inside each prompt pair, so everything is one group
    assert sorted(len(v) for v in parts.values())[-1] == 200


def test_bad_options_and_bad_input(data, tmp_path):
    with pytest.raises(ConfigError, match="three non-negative fractions"):
        config.build(SplitConfig, None, {"input": "x", "ratios": "0.5,0.5,0.5"})
    with pytest.raises(ConfigError, match="metadata.KEY"):
        config.build(SplitConfig, None, {"input": "x", "stratify_by": "color"})
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(data.read_bytes() + b'{"id": "r0", "messages": []}\n')
    with pytest.raises(DataError, match="duplicate id 'r0'") as exc:
        split(bad, tmp_path / "o")
    assert exc.value.line == 201 and not (tmp_path / "o" / "train.jsonl").exists()
