"""trajtune/jsonl.py: streaming reads with line numbers, atomic writes, resumable appends."""
import gzip
import io
import sys

import orjson
import pytest

from trajtune import jsonl
from trajtune.errors import DataError, UsageError


def test_iter_lines_numbers_physical_lines_skips_blanks_and_tolerates_crlf(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"a": 1}\r\n\r\n   \n{"a": 2}\n{"a": 3}')
    # (line number, byte offset, bytes without the line ending, byte length with it); the torn last line as it is
    assert list(jsonl.iter_lines(p)) == [(1, 0, b'{"a": 1}', 10), (4, 16, b'{"a": 2}', 9), (5, 25, b'{"a": 3}', 8)]


def test_iter_lines_reads_a_byte_range_numbering_from_its_start(tmp_path):
    p = tmp_path / "a.jsonl"
    data = b'{"a": 1}\n\n{"a": 2}\n{"a": 3}\n'
    p.write_bytes(data)
    cut = data.index(b'{"a": 2}')
    assert [(ln, raw) for ln, _, raw, _ in jsonl.iter_lines(p, end=cut)] == [(1, b'{"a": 1}')]
    assert [(ln, off) for ln, off, _, _ in jsonl.iter_lines(p, start=cut)] == [(1, cut), (2, cut + 9)]


def test_bom_is_stripped_only_at_byte_0_and_reported_through_on_bom(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\xef\xbb\xbf{"a": 2}\n')
    seen = []
    lines = list(jsonl.iter_lines(p, on_bom=lambda: seen.append(1)))
    assert seen == [1] and [raw for _, _, raw, _ in lines] == [b'{"a": 1}', b'\xef\xbb\xbf{"a": 2}']
    assert [raw for _, _, raw, _ in jsonl.iter_lines(p, start=lines[1][1])] == [b'\xef\xbb\xbf{"a": 2}']


def test_bom_is_stripped_with_a_warning(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    with pytest.warns(jsonl.BOMWarning, match=r"bom.jsonl:1: UTF-8 byte order mark stripped"):
        rows = list(jsonl.read_jsonl(p))
    assert rows[0].obj == {"a": 1}


def test_gzip_and_stdin_are_read_like_files(tmp_path, monkeypatch):
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert [r.obj["a"] for r in jsonl.read_jsonl(p)] == [1, 2]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"b": 1}\n')))
    rows = list(jsonl.read_jsonl("-"))
    assert rows[0].path == "<stdin>" and rows[0].obj == {"b": 1}


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": \n')
    with pytest.raises(DataError) as e:
        list(jsonl.read_jsonl(p))
    assert e.value.render().startswith(f"{p}:2: not valid JSON")
    p.write_bytes(b'{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: expected a JSON object, got list"):
        list(jsonl.read_jsonl(p))


def test_missing_file_directory_device_and_corrupt_gzip(tmp_path):
    with pytest.raises(UsageError, match=r"nope.jsonl: no such file"):
        list(jsonl.iter_lines(tmp_path / "nope.jsonl"))
    with pytest.raises(UsageError, match="is a directory, not a JSONL file"):
        list(jsonl.iter_lines(tmp_path))
    with pytest.raises(UsageError, match="/dev/zero is a character device"):
        jsonl.open_input("/dev/zero")
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match=r"x.jsonl.gz: not a readable gzip file"):
        list(jsonl.iter_lines(bad))
    with pytest.raises(DataError, match=r"x.jsonl.gz: not a readable gzip file"):
        list(jsonl.read_jsonl(bad))


def test_a_line_over_the_limit_is_none_with_its_length_and_never_held_in_memory(tmp_path):
    p = tmp_path / "long.jsonl"
    p.write_bytes(b'"' + b"x" * 3_000_000 + b'"\r\n{"a": 1}\n')
    lines = list(jsonl.iter_lines(p, limit=1000))
    assert lines == [(1, 0, None, 3_000_004), (2, 3_000_004, b'{"a": 1}', 9)]
    assert [raw for _, _, raw, _ in jsonl.iter_lines(p)][0] == b'"' + b"x" * 3_000_000 + b'"'  # no limit


def test_read_json_or_jsonl_accepts_arrays_and_lines(tmp_path, monkeypatch):
    arr = tmp_path / "a.json"
    arr.write_bytes(b'\xef\xbb\xbf [{"a": 1}, {"a": 2}]')
    assert [(r.lineno, r.obj) for r in jsonl.read_json_or_jsonl(arr)] == [(1, {"a": 1}), (2, {"a": 2})]
    lines = tmp_path / "b.jsonl"
    lines.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    assert [r.obj for r in jsonl.read_json_or_jsonl(lines)] == [{"a": 1}, {"a": 2}]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'[{"c": 3}]')))
    assert [r.obj for r in jsonl.read_json_or_jsonl("-")] == [{"c": 3}]


def test_write_jsonl_is_atomic_and_leaves_no_temp_file_on_failure(tmp_path):
    p = tmp_path / "out" / "data.jsonl"
    assert jsonl.write_jsonl(p, [{"a": 1}, {"b": "é"}]) == 2
    assert p.read_bytes() == b'{"a":1}\n{"b":"\xc3\xa9"}\n'

    def boom():
        yield {"a": 2}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        jsonl.write_jsonl(p, boom())
    assert p.read_bytes() == b'{"a":1}\n{"b":"\xc3\xa9"}\n'  # old content intact
    assert sorted(x.name for x in p.parent.iterdir()) == ["data.jsonl"]


def test_write_json_and_stdout(tmp_path, capsysbinary):
    jsonl.write_json(tmp_path / "r.json", {"ok": True})
    assert orjson.loads((tmp_path / "r.json").read_bytes()) == {"ok": True}
    jsonl.write_jsonl("-", [{"a": 1}])
    assert capsysbinary.readouterr().out == b'{"a":1}\n'


def test_appender_resumes_and_repairs_a_torn_last_line(tmp_path):
    p = tmp_path / "gen.jsonl"
    with jsonl.Appender(p) as ap:
        ap.write({"id": "a"})
        ap.write({"id": "b"})
    with open(p, "ab") as fh:
        fh.write(b'{"id": "c", "messa')  # killed mid-write
    ap = jsonl.Appender(p)
    assert ap.existing == 2 and ap.existing_ids == {"a", "b"}
    ap.write({"id": "c"})
    ap.close()
    assert [r.obj["id"] for r in jsonl.read_jsonl(p)] == ["a", "b", "c"]


def test_appender_never_cuts_records_after_a_bad_or_blank_middle_line(tmp_path):
    p = tmp_path / "gen.jsonl"
    p.write_bytes(b'{"id": "a"}\n\n{"id": "b"}\n')
    ap = jsonl.Appender(p)
    ap.close()
    assert ap.existing_ids == {"a", "b"} and p.read_bytes() == b'{"id": "a"}\n\n{"id": "b"}\n'
    p.write_bytes(b'{"id": "a"}\n{oops}\n{"id": "b"}\n')
    with pytest.raises(DataError, match=r"gen.jsonl:2: not valid JSON; cannot append safely"):
        jsonl.Appender(p)
    assert p.read_bytes() == b'{"id": "a"}\n{oops}\n{"id": "b"}\n'
