"""Shared converter pieces: argument/tool parsing, the message builder, the input source."""
import pytest

from trajtune.converters.common import Builder, Emitter, Reject, Source, parse_arguments, parse_tools


def test_arguments_accept_objects_strings_and_double_encoded_strings():
    assert parse_arguments({"a": 1}) == {"a": 1}
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments('"{\\"a\\": 1}"') == {"a": 1}
    assert parse_arguments("") == {}


@pytest.mark.parametrize("value, reason", [("{a: 1}", "arguments not valid JSON"), ("[1, 2]", "arguments not a JSON object"),
                                           (7, "arguments not a JSON object")])
def test_bad_arguments_are_rejected_with_a_reason(value, reason):
    with pytest.raises(Reject) as exc:
        parse_arguments(value)
    assert exc.value.reason == reason


def test_tools_as_json_string_of_bare_functions_are_wrapped():
    tools = parse_tools('[{"name": "f", "description": "d", "parameters": "{\\"type\\": \\"object\\"}"}]')
    assert tools == [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    with pytest.raises(Reject, match="invalid tool name"):
        parse_tools([{"name": "has space"}])


def test_builder_pairs_results_with_calls_in_order_and_numbers_missing_ids():
    b = Builder()
    b.user("q")
    b.assistant("thinking", [b.call("f", "{}"), b.call("g", {"x": 1}, "mine")])
    b.tool("r1")
    b.tool("r2")
    b.assistant("done")
    msgs = b.finish()
    assert [c["id"] for c in msgs[1]["tool_calls"]] == ["call_1", "mine"]
    assert [m["tool_call_id"] for m in msgs[2:4]] == ["call_1", "mine"]
    with pytest.raises(Reject, match="tool result without a matching call"):
        b.tool("extra")


def test_source_spools_arrays_and_reports_bad_lines_with_their_number(tmp_path):
    rejected = []
    emit = Emitter(rejected.append)
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n[1]\n{"a": 2}\n')
    src = Source(str(p), emit)
    assert [(r.lineno, r.obj) for r in src.rows()] == [(1, {"a": 1}), (5, {"a": 2})]
    assert [(e["line"], e["reason"]) for e in rejected] == [(3, "not valid JSON"), (4, "not a JSON object")]
    arr = tmp_path / "b.json"
    arr.write_text('[\n  {"a": 1},\n  {"a": 2}\n]\n')
    src = Source(str(arr), emit)
    rows = list(src.rows())
    assert [r.obj for r in rows] == [{"a": 1}, {"a": 2}]
    assert src.read_at(0, 1).obj == {"a": 1}
    src.close()


def test_gzipped_jsonl_and_json_arrays_are_read(tmp_path):
    import gzip

    emit = Emitter()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(b'[{"b": 1}, {"b": 2}]'))
    for name, key in (("a.jsonl.gz", "a"), ("b.json.gz", "b")):
        src = Source(str(tmp_path / name), emit)
        assert [r.obj[key] for r in src.rows()] == [1, 2]
        src.close()


def test_source_reads_through_trajtune_jsonl_bom_blank_lines_and_offsets(tmp_path):
    from trajtune.errors import DataError, UsageError

    emit = Emitter()
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}\r\n')
    src = Source(str(p), emit)
    rows = list(src.raw_rows())
    assert [(r.lineno, r.offset) for r in rows] == [(1, 0), (3, 15)]
    assert [src.read_at(r.offset, r.lineno).obj for r in rows] == [{"a": 1}, {"a": 2}]  # the BOM too
    one = tmp_path / "one.jsonl"
    one.write_bytes(b'\n\n{"a": 1}\n')  # one object after blank lines is JSONL, numbered where it is
    assert [r.lineno for r in Source(str(one), emit).rows()] == [3]
    with pytest.raises(UsageError, match="is a directory, not a JSONL file"):
        Source(str(tmp_path), emit)
    with pytest.raises(UsageError, match="nope.jsonl: no such file"):
        Source(str(tmp_path / "nope.jsonl"), emit)
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip\n")
    with pytest.raises(DataError, match="bad.jsonl.gz: not a readable gzip file"):
        Source(str(bad), emit)
