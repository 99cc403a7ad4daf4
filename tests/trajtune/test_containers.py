"""Parquet files and datasets folders as containers: arguments of mixed types survive, the Arrow
side is what trl and pyarrow read, batches share one schema, foreign files read cleanly."""
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trajtune import config, containers
from trajtune.converters.convert import run_convert
from trajtune.errors import DataError
from trajtune.scripts.convert import Config

TOOL = {"type": "function", "function": {"name": "set", "parameters": {"type": "object"}}}
MIXED = [{"value": 1}, {"value": "one"}, {"value": [1, "two", {"three": None}]}, {"value": {"nested": True}, "n": 2.5},
         {}, {"value": None}]


def _record(i: int, args: dict) -> dict:
    return {"id": f"r{i}", "metadata": {"source": "test", "i": i, "tags": ["a"] if i % 2 else {"k": i}},
            "tools": [TOOL],
            "messages": [{"role": "user", "content": f"set {i}"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": f"call_{i}", "type": "function", "function": {"name": "set", "arguments": args}}]},
                         {"role": "tool", "content": "ok", "tool_call_id": f"call_{i}"},
                         {"role": "assistant", "content": "Done.", "train": i % 2 == 0}]}


def _run(inp, out, **opts):
    return run_convert(config.build(Config, None, {"input": str(inp), "output": str(out), **opts}))


@pytest.fixture
def mixed(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(orjson.dumps(_record(i, a)) + b"\n" for i, a in enumerate(MIXED)))
    return path


@pytest.mark.parametrize("container", ["parquet", "dataset"])
def test_arguments_of_mixed_types_round_trip(mixed, tmp_path, container):
    out, back = tmp_path / ("o.parquet" if container == "parquet" else "o-ds"), tmp_path / "back.jsonl"
    assert _run(mixed, out, source_format="trajtune", container=container)["converted"] == len(MIXED)
    assert _run(out, back, source_format="trajtune")["converted"] == len(MIXED)
    assert back.read_bytes() == mixed.read_bytes()


def test_the_arrow_side_holds_arguments_tools_and_metadata_as_json_text(mixed, tmp_path):
    out = tmp_path / "o.parquet"
    _run(mixed, out, source_format="trajtune", to="trl")
    table = pq.read_table(out)
    assert table.schema.field("metadata").type == pa.string() and table.schema.field("tools").type == pa.string()
    call = table.schema.field("messages").type.value_type.field("tool_calls").type.value_type
    assert call.field("function").type.field("arguments").type == pa.string()
    rows = table.to_pylist()
    assert [json.loads(r["messages"][1]["tool_calls"][0]["function"]["arguments"]) for r in rows] == MIXED
    assert json.loads(rows[0]["tools"]) == [TOOL]  # what trl's SFTTrainer json.loads when tools is a string


def test_the_schema_is_the_union_of_every_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(containers, "BATCH_ROWS", 2)
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "x": 1}, {"id": "b"}, {"id": "c"}, {"id": "d", "late": [{"k": "v"}], "x": 2.5}, {"id": "e"}]
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "o.parquet"
    assert containers.write("parquet", str(src), str(out)) == 5
    pf = pq.ParquetFile(out)
    assert pf.metadata.num_row_groups == 3  # written a batch at a time
    assert pf.schema_arrow.names == ["id", "x", "late"] and pf.schema_arrow.field("x").type == pa.float64()
    got = list(containers.open_rows(str(out), "parquet"))
    assert got == [{"id": "a", "x": 1.0}, {"id": "b"}, {"id": "c"}, {"id": "d", "late": [{"k": "v"}], "x": 2.5},
                   {"id": "e"}]  # absent keys stay absent (nulls dropped)


def test_a_foreign_parquet_with_struct_arguments_reads_without_the_merged_nulls(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Weather in Paris?"},
                          {"role": "assistant", "content": None, "tool_calls": [
                              {"id": "c1", "type": "function", "function": {"name": "w", "arguments": {"city": "Paris"}}}]},
                          {"role": "tool", "content": "sun", "tool_call_id": "c1"},
                          {"role": "assistant", "content": "Sunny."}]},
            {"messages": [{"role": "user", "content": "And Oslo in C?"},
                          {"role": "assistant", "content": "4 C.", "tool_calls": [
                              {"id": "c2", "type": "function", "function": {"name": "w", "arguments": {"city": "Oslo", "unit": "C"}}}]},
                          {"role": "tool", "content": "4", "tool_call_id": "c2"},
                          {"role": "assistant", "content": "4 C."}]}]
    for r in rows:
        r["tools"] = '[{"type": "function", "function": {"name": "w"}}]'  # trl's JSON-string tools column
    src = tmp_path / "foreign.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)  # arguments: one inferred struct {city, unit}
    out = tmp_path / "o.jsonl"
    s = _run(src, out)
    assert s["from"] == "openai" and s["converted"] == 2
    recs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert recs[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # no "unit": null
    assert recs[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo", "unit": "C"}


def test_bytes_decimals_and_dates_become_json(tmp_path):
    import datetime
    import decimal

    table = pa.table({"b": pa.array([b"hi", b"\xff"], pa.binary()), "d": pa.array([decimal.Decimal("1.5")] * 2),
                      "t": pa.array([datetime.date(2026, 1, 2)] * 2)})
    pq.write_table(table, tmp_path / "x.parquet")
    assert list(containers.open_rows(str(tmp_path / "x.parquet"), "parquet")) == [
        {"b": "hi", "d": 1.5, "t": "2026-01-02"}, {"b": "/w==", "d": 1.5, "t": "2026-01-02"}]


def test_a_corrupt_parquet_file_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\0" * 64)
    assert containers.sniff(str(bad)) == "parquet"
    with pytest.raises(DataError) as e:
        list(containers.open_rows(str(bad), "parquet"))
    assert e.value.render().startswith(f"{bad}: not a readable Parquet file")
