"""The validate engine (trajtune.schemas.validate) and its stage (trajtune.scripts.validate): shipped examples,
require_valid, never-crash fuzzing."""
import json
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trajtune.errors import DataError
from trajtune.records import KINDS
from trajtune.schemas import validate as v
from trajtune.schemas.checks import SEVERITY
from trajtune.scripts import validate as stage
from trajtune.scripts.validate import Config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "data" / "examples"
EXPECT = re.compile(rb'"expect":\s*"(\w+)"')


@pytest.mark.parametrize("kind", KINDS)
def test_every_valid_example_passes_with_no_problem(kind):
    res = v.validate_file(str(EXAMPLES / "valid" / f"{kind}.jsonl"), Config())
    assert res.kind == kind
    assert res.problems == [] and res.errors == 0 and res.warnings == 0
    assert res.records == res.valid >= 2


@pytest.mark.parametrize("kind", KINDS)
def test_every_invalid_example_reports_exactly_its_check_at_its_line(kind):
    path = EXAMPLES / "invalid" / f"{kind}.jsonl"
    expected = {}
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        m = EXPECT.search(raw)
        assert m, f"{path.name}:{lineno} carries no metadata.expect"
        expected[lineno] = m.group(1).decode()
    assert all(c in SEVERITY for c in expected.values())
    res = v.validate_file(str(path), Config(kind=None))
    found: dict[int, set] = {}
    for line, check, _msg, _where in res.problems:
        found.setdefault(line, set()).add(check)
    assert found == {ln: {c} for ln, c in expected.items()}
    assert res.kind == kind and res.records == len(expected)


def test_require_valid_returns_records_or_raises_with_file_line_and_count(tmp_path):
    recs = v.require_valid(str(EXAMPLES / "valid" / "sft.jsonl"))
    assert [r["id"] for r in recs][:2] == ["sft-devops-0001", "sft-weather-0002"]
    assert v.require_valid(str(EXAMPLES / "valid" / "task.jsonl"), kind="task")[0]["expected"]["calls"]
    path = str(EXAMPLES / "invalid" / "preference.jsonl")
    with pytest.raises(DataError) as e:
        v.require_valid(path)
    text = e.value.render()
    assert text.startswith(f"8 error(s) in {path}:\n  {path}:1: [chosen_equals_rejected] chosen and rejected are identical")
    assert "... and 3 more" in text and f"run `trajtune validate {path}`" in text
    warn_only = tmp_path / "w.jsonl"
    warn_only.write_bytes(b'{"id":"a","prompt":[{"role":"user","content":"hi"}],"responses":['
                          b'{"messages":[{"role":"assistant","content":"a"}],"reward":1},'
                          b'{"messages":[{"role":"assistant","content":"b"}],"reward":1}]}\n')
    assert len(v.require_valid(str(warn_only))) == 1  # warnings do not fail


def test_require_valid_wrong_kind_is_a_schema_error(tmp_path):
    with pytest.raises(DataError, match=r"sft.jsonl:1: \[schema\] this looks like a sft record in a preference file"):
        v.require_valid(str(EXAMPLES / "valid" / "sft.jsonl"), kind="preference")


def test_duplicates_are_counted_beyond_what_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(v, "KEEP_PROBLEMS", 5)
    p = tmp_path / "d.jsonl"
    rec = {"id": "same", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    p.write_bytes(b"\n".join(orjson.dumps(rec) for _ in range(30)) + b"\n")
    res = v.validate_file(str(p), Config())
    assert res.by_check == {"duplicate_id": 29, "duplicate_content": 29}
    assert res.valid == 1 and len(res.problems) <= 10
    assert res.to_dict()["problems_truncated"] is True


def test_leakage_exact_and_normalised(tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_bytes(b'{"id":"t1","prompt":[{"role":"user","content":"Weather in Oslo?"}],"tools":[],"expected":{"answer":"x"}}\n'
                     b'{"id":"t2","prompt":[{"role":"user","content":"Show  me 5\\n orders"}],"tools":[],"expected":{"answer":"x"}}\n')
    train = tmp_path / "train.jsonl"
    mk = lambda i, q: orjson.dumps({"id": i, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]})
    train.write_bytes(b"\n".join([mk("a", "Weather in Oslo?"), mk("b", "show me 5 orders"), mk("c", "fresh question")]) + b"\n")
    res = v.validate([str(train)], Config(against=[str(test)]))[0]
    assert [(ln, c, m) for ln, c, m, _ in res.problems] == [
        (1, "leakage", f"prompt also in {test}:1 (exact)"),
        (2, "leakage", f"prompt also in {test}:2 (after whitespace/case normalisation)"),
    ]


# ----------------------------------------------------------------------------- never crash

def _check_no_crash(tmp_path, data: bytes, **cfg):
    """The whole stage (validate, print, report) returns exit 0 or 1 on any input."""
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(data)
    conf = Config(paths=[str(p)], output=str(tmp_path / "r.json"), format="github", **cfg)
    conf.check()
    report = stage.run(conf)
    stage.render(report, conf)
    code = report["exit_code"]
    f = orjson.loads((tmp_path / "r.json").read_bytes())["files"][0]
    assert code == (1 if f["errors"] else 0)
    assert 0 <= f["valid"] <= f["records"]
    return f


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_never_crash(tmp_path, lines):
    _check_no_crash(tmp_path, b"\n".join(lines))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(
        ["id", "role", "content", "messages", "tools", "tool_calls", "tool_call_id", "function", "name", "arguments",
         "parameters", "type", "prompt", "chosen", "rejected", "responses", "reward", "expected", "calls", "answer",
         "match", "anchor", "positive", "negative", "x"]), kids, max_size=5),
    max_leaves=20)

_VALID = [orjson.loads(line) for k in KINDS for line in (EXAMPLES / "valid" / f"{k}.jsonl").read_bytes().splitlines()]


def _mutate(node, data):
    """Replace one random subtree of a valid record with arbitrary JSON."""
    if isinstance(node, dict) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node)))
        node[key] = _mutate(node[key], data)
        return node
    if isinstance(node, list) and node and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(node) - 1))
        node[i] = _mutate(node[i], data)
        return node
    return data.draw(_json)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_valid_records_never_crash(tmp_path, data):
    base = orjson.loads(orjson.dumps(data.draw(st.sampled_from(_VALID))))
    recs = [_mutate(base, data) for _ in range(1)] + [data.draw(_json)]
    _check_no_crash(tmp_path, "\n".join(json.dumps(r) for r in recs).encode() + b"\n")  # stdlib: big ints too


def test_pathological_inputs_are_reported_not_raised(tmp_path):
    res = _check_no_crash(tmp_path, b"[" * 10_000 + b"]" * 10_000 + b"\n")
    assert set(res["by_check"]) == {"too_deep"}
    res = _check_no_crash(tmp_path, b"")
    assert res["by_check"] == {"empty_file": {"severity": "error", "count": 1}}
    res = _check_no_crash(tmp_path, bytes(range(256)) * 4)
    assert set(res["by_check"]) <= {"not_utf8", "not_json"} and res["errors"] >= 1
    res = _check_no_crash(tmp_path, b'{"id": "x", "messages": "' + b"y" * 3_000_000 + b'"}\n', max_line_mb=1)
    assert [(p["line"], p["check"]) for p in res["problems"]] == [(1, "line_too_long")]


def test_a_record_of_another_kind_is_named_as_such(tmp_path):
    p = tmp_path / "mixed.jsonl"
    lines = (EXAMPLES / "valid" / "sft.jsonl").read_bytes().splitlines()[:3]
    lines.append((EXAMPLES / "valid" / "preference.jsonl").read_bytes().splitlines()[0])
    p.write_bytes(b"\n".join(lines) + b"\n")
    res = v.validate_file(str(p), Config())
    assert res.kind == "sft"
    assert res.problems == [(4, "schema", "this looks like a preference record in a sft file; keep one kind per file "
                                          "(or pass --kind)", "$")]


# ----------------------------------------------------------------------------- one reader, one numbering

_MSGS = b'"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}'
MESSY = (b'\xef\xbb\xbf{"id":"a",' + _MSGS + b'\r\n'  # 1  BOM, CRLF
         b'\r\n'                                     # 2  blank (CRLF)
         b'   \n'                                    # 3  blank (spaces)
         b'{"id":"a",' + _MSGS + b'\r\n'             # 4  duplicate id
         b'{"id": \r\n'                              # 5  not JSON
         b'\n'                                       # 6  blank
         b'[1, 2]\n'                                 # 7  not an object
         b'{"id":"b",' + _MSGS.replace(b"yo", b"ok") + b'\n'  # 8  fine
         b'{"id":"c","messages":[{"role":"user","con')  # 9  torn last line


@pytest.mark.parametrize("name", ["messy.jsonl", "messy.jsonl.gz"])
def test_validate_and_convert_number_lines_as_trajtune_jsonl_does(tmp_path, monkeypatch, name):
    import gzip

    from trajtune import config, jsonl
    from trajtune.converters.common import Emitter, Source
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config as ConvertConfig

    p = tmp_path / name
    p.write_bytes(gzip.compress(MESSY) if name.endswith(".gz") else MESSY)
    lines = [ln for ln, _, _, _ in jsonl.iter_lines(p)]
    assert lines == [1, 4, 5, 7, 8, 9]
    # validate, in one process and (a plain file) split by byte ranges across workers
    for workers in (1, 2, 3) if not name.endswith(".gz") else (1,):
        monkeypatch.setattr(v, "MIN_SPLIT_BYTES", 0 if workers > 1 else 4 << 20)
        res = v.validate_file(str(p), Config(workers=workers))
        assert sorted((ln, c) for ln, c, _, _ in res.problems) == [
            (1, "bom"), (4, "duplicate_content"), (4, "duplicate_id"), (5, "not_json"), (7, "not_object"),
            (9, "not_json")], workers
        assert "id already used at line 1" in [m for _, c, m, _ in res.problems if c == "duplicate_id"]
        assert res.records == len(lines) and res.valid == 2
    # convert: its source rows and its rejects (the file convert writes)
    rejected = []
    src = Source(str(p), Emitter(rejected.append))
    rows = [r.lineno for r in src.raw_rows()]
    src.close()
    assert rows == [1, 4, 8] and [e["line"] for e in rejected] == [5, 7, 9]
    assert sorted(rows + [e["line"] for e in rejected]) == lines
    out = tmp_path / "out.jsonl"
    run_convert(config.build(ConvertConfig, None, {"input": str(p), "output": str(out), "source_format": "openai"}))
    rejects = [orjson.loads(x) for x in (tmp_path / "out.rejects.jsonl").read_bytes().splitlines()]
    assert [(e["line"], e["reason"]) for e in rejects] == [(4, "duplicate id"), (5, "not valid JSON"),
                                                          (7, "not a JSON object"), (9, "not valid JSON")]
    assert rejects[0]["detail"] == "a first seen at line 1"
    # the same parse error in the same words
    assert rejects[1]["detail"] in [m for ln, c, m, _ in res.problems if ln == 5][0]


def test_byte_ranges_never_end_in_blank_lines_so_every_split_numbers_lines_alike(tmp_path, monkeypatch):
    p = tmp_path / "blanks.jsonl"
    blanks = [1 + i * 37 % 300 for i in range(40)]  # runs of blank lines longer than the records: splits land in them
    p.write_bytes(b"".join(b'{"id":"x",' + _MSGS.replace(b"yo", b"%d" % i) + b"\n" * n for i, n in enumerate(blanks))
                  + b"{oops\n\n  \n")
    one = v.validate_file(str(p), Config())
    assert len(one.problems) == 40 and one.problems[-1][:2] == (sum(blanks) + 1, "not_json")
    monkeypatch.setattr(v, "MIN_SPLIT_BYTES", 0)
    for workers in range(2, 9):
        assert v.validate_file(str(p), Config(workers=workers)).problems == one.problems, workers


def _worker_signals(args):
    import signal

    return {"term": signal.getsignal(signal.SIGTERM), "int": signal.getsignal(signal.SIGINT)}


def test_pool_workers_die_quietly_on_sigterm_even_under_the_cli_handler(tmp_path, monkeypatch):
    # the command line's SIGTERM handler raises KeyboardInterrupt; forked workers inherited it, so
    # the pool's terminate() made them print "Interrupted" and a traceback, and could leave the task
    # queue's lock held: validate --workers then hung at exit. Workers must reset both signals.
    import signal

    from trajtune.cli.common import _terminate

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        p = tmp_path / "x.jsonl"
        p.write_bytes(b"".join(b'{"id":"%d",' % i + _MSGS + b"\n" for i in range(40)))
        monkeypatch.setattr(v, "_scan_range", _worker_signals)
        got = v._run_workers(str(p), 3, None, Config(), None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(got) >= 2
    assert all(g["term"] == signal.SIG_DFL and g["int"] == signal.SIG_IGN for g in got)


def test_the_cli_leaves_the_callers_sigterm_handler_as_it_was():
    import signal

    from tests.helpers.cli import run as cli

    before = signal.getsignal(signal.SIGTERM)
    res = cli("validate", "--help")
    assert res.exit_code == 0 and signal.getsignal(signal.SIGTERM) is before
