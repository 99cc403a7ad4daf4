"""`trajtune validate` as a user runs it: exit codes, file:line messages, formats, report, options."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from trajtune.cli.app import main
from trajtune.schemas import validate as stage
from trajtune.scripts import validate as script

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "data" / "examples" / "valid"
INVALID = ROOT / "data" / "examples" / "invalid"


def cli(capsys, monkeypatch, *args, stdin: bytes | None = None):
    """Run the real entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["trajtune", "validate", *map(str, args)])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def sft(i, q="How many orders?", a="42."):
    return {"id": f"r{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def write(path, recs):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path


def test_help_shows_an_example():
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "validate", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "Example: trajtune validate" in res.stdout and "--max-errors" in res.stdout


def test_valid_files_exit_0_with_a_summary_per_file(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, *sorted(VALID.glob("*.jsonl")))
    assert code == 0, out + err
    assert out == ""
    assert f"{VALID / 'sft.jsonl'} (sft) OK" in err and f"{VALID / 'task.jsonl'} (task) OK" in err
    assert "OK: 6 file(s), 25 records, 25 valid, 0 error(s), 0 warning(s)" in err
    assert "tool calls" in err and "distinct tools" in err


def test_invalid_file_exits_1_and_names_file_line_check_and_json_path(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, INVALID / "sft.jsonl")
    assert code == 1
    p = INVALID / "sft.jsonl"
    assert f"{p}:13: error [tool_call_id_unanswered] tool_call_id 'call_7' matches no earlier call (pending: call_1) " \
           f"(at $.messages[2].tool_call_id)\n" in out
    assert f"{p}:17: error [arguments_schema] 'get_weather' arguments: " '"kelvin" is not one of "celsius" or "fahrenheit" (at unit)\n' in out
    assert f"{p}:6: error [schema] $.messages[1].role: 'bot' is not one of" in out
    assert "FAILED: 1 file(s), 26 records, 2 valid, 24 error(s), 2 warning(s)" in err
    assert "Traceback" not in out + err


def test_unreadable_paths_and_bad_options_exit_2(capsys, monkeypatch, tmp_path):
    code, out, err = cli(capsys, monkeypatch, tmp_path / "missing.jsonl")
    assert code == 2 and f"Error: {tmp_path / 'missing.jsonl'}: no such file" in err
    code, out, err = cli(capsys, monkeypatch, tmp_path)
    assert code == 2 and "is a directory, not a JSONL file" in err
    code, out, err = cli(capsys, monkeypatch, VALID / "sft.jsonl", "--kind", "chat")
    assert code == 2 and "--kind must be one of sft, preference, group, triplet, task, labelled, got 'chat'" in err
    code, out, err = cli(capsys, monkeypatch, VALID / "sft.jsonl", "--max-length", "10")
    assert code == 2 and "--max-length needs --tokenizer MODEL" in err
    code, out, err = cli(capsys, monkeypatch, VALID / "sft.jsonl", "--against", tmp_path / "nope.jsonl")
    assert code == 2 and "nope.jsonl: no such file" in err


def test_github_format_emits_annotations(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, INVALID / "group.jsonl", "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"::warning file={INVALID / 'group.jsonl'},line=1,title=flat_rewards::every response has reward 1: no learning signal"
    assert lines[2] == f"::error file={INVALID / 'group.jsonl'},line=3,title=schema::$.responses[0].reward: 'good' is not of type 'number'"
    assert stage._gh_escape("a,b:c%\n", prop=True) == "a%2Cb%3Ac%25%0A"


def test_report_json_and_max_errors_limits_printing_not_counting(capsys, monkeypatch, tmp_path):
    rep = tmp_path / "r.json"
    code, out, err = cli(capsys, monkeypatch, INVALID / "task.jsonl", "--max-errors", "2", "-o", rep)
    assert code == 1
    assert len([ln for ln in out.splitlines() if ": error [" in ln]) == 2
    assert f"{INVALID / 'task.jsonl'}: 10 more problem(s) not printed (--max-errors 2; all are counted, see {rep})" in out
    report = json.loads(rep.read_text())
    f = report["files"][0]
    assert report["ok"] is False and f["kind"] == "task" and f["records"] == 12 and f["errors"] == 12
    assert f["by_check"]["arguments_schema"] == {"severity": "error", "count": 4}
    assert f["problems"][0] == {"line": 1, "check": "unknown_tool", "severity": "error", "at": "$.expected.calls[0].name",
                                "message": "expects 'get_forecast', which is not in the record's tools (database_query, get_weather)"}
    code, out, err = cli(capsys, monkeypatch, VALID / "group.jsonl", "--json")
    assert code == 0 and json.loads(out)["totals"] == {"files": 1, "records": 2, "valid": 2, "errors": 0, "warnings": 0}


def test_strict_makes_warnings_fail(capsys, monkeypatch, tmp_path):
    p = write(tmp_path / "w.jsonl", [sft(1), sft(2)])  # same content twice: a warning
    code, out, err = cli(capsys, monkeypatch, p)
    assert code == 0 and f"{p}:2: warning [duplicate_content] same content as line 1 (2 copies in this file)" in out
    code, out, err = cli(capsys, monkeypatch, p, "--strict")
    assert code == 1 and "FAILED" in err and "(--strict)" in err


def test_stdin_and_gzip(capsys, monkeypatch, tmp_path):
    code, out, err = cli(capsys, monkeypatch, "-", stdin=(INVALID / "triplet.jsonl").read_bytes())
    assert code == 1 and "<stdin>:3: error [schema] $: 'negative' is a required property" in out
    import gzip
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress((VALID / "preference.jsonl").read_bytes()))
    code, out, err = cli(capsys, monkeypatch, gz)
    assert code == 0 and "(preference) OK" in err


def test_config_file_gives_defaults_and_flags_override(capsys, monkeypatch, tmp_path):
    cfg = tmp_path / "v.yaml"
    cfg.write_text("format: github\nmax_errors: 1\n")
    code, out, err = cli(capsys, monkeypatch, INVALID / "triplet.jsonl", "--config", cfg, "--max-errors", "3")
    assert code == 1 and len([ln for ln in out.splitlines() if ln.startswith("::error")]) == 3
    cfg.write_text("max_error: 1\n")
    code, out, err = cli(capsys, monkeypatch, INVALID / "triplet.jsonl", "--config", cfg)
    assert code == 2 and "unknown config key 'max_error'" in err and "max_errors" in err


def test_tokenizer_counts_tokens_and_lists_truncated_ids(capsys, monkeypatch, tmp_path, tiny_model):
    p = write(tmp_path / "t.jsonl", [sft(1, "hi", "ok"), sft(2, "word " * 200, "long answer " * 50)])
    rep = tmp_path / "r.json"
    code, out, err = cli(capsys, monkeypatch, p, "--tokenizer", tiny_model, "--max-length", "100", "-o", rep)
    tokens = json.loads(rep.read_text())["files"][0]["tokens"]
    assert tokens["counted"] == 2 and tokens["max"] > 100 and 0 < tokens["p50"] <= tokens["p95"] <= tokens["max"]
    assert tokens["truncated"] == 1 and tokens["truncated_ids"] == ["r2"]
    assert code == 0 and f"{p}:2: warning [truncated] id 'r2' has {tokens['max']} tokens, over --max-length 100" in out
    assert "tokens p50 / p95 / max" in err
    code, out, err = cli(capsys, monkeypatch, p, "--tokenizer", tmp_path / "no-model")
    assert code == 2 and "--tokenizer" in err


def test_against_reports_leaked_prompts(capsys, monkeypatch, tmp_path):
    test = write(tmp_path / "test.jsonl", [sft(1, "What is the refund policy?")])
    train = write(tmp_path / "train.jsonl", [sft(1, "what is the  refund policy?"), sft(2, "Other")])
    code, out, err = cli(capsys, monkeypatch, train, "--against", test)
    assert code == 1
    assert f"{train}:1: error [leakage] prompt also in {test}:1 (after whitespace/case normalisation)" in out


def test_workers_give_the_same_counts_and_find_duplicates_across_chunks(capsys, monkeypatch, tmp_path):
    recs = [sft(i, f"question {i}") for i in range(3000)]
    recs[2900] = sft(5, "question 5")  # duplicate id and content of line 6, far away in another chunk
    recs[1500]["messages"][0]["role"] = "bot"
    p = write(tmp_path / "big.jsonl", recs)
    monkeypatch.setattr(stage, "MIN_SPLIT_BYTES", 0)
    one, two = tmp_path / "1.json", tmp_path / "2.json"
    assert cli(capsys, monkeypatch, p, "-o", one)[0] == 1
    assert cli(capsys, monkeypatch, p, "-o", two, "--workers", "2")[0] == 1
    r1, r2 = json.loads(one.read_text()), json.loads(two.read_text())
    assert r1 == r2
    f = r1["files"][0]
    assert (f["records"], f["valid"]) == (3000, 2998)
    assert [(x["line"], x["check"]) for x in f["problems"]] == [(1501, "schema"), (2901, "duplicate_content"), (2901, "duplicate_id")]


def test_pathological_files_exit_1_without_traceback_in_bounded_memory(tmp_path):
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as fh:
        fh.write(b'{"id": "a", "messages": [{"role": "user", "content": "')
        for _ in range(100):
            fh.write(b"x" * 1_000_000)
        fh.write(b'"}]}\n')
    (tmp_path / "deep.jsonl").write_bytes(b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n")
    (tmp_path / "garbage.jsonl").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    # peak RSS from VmHWM (ru_maxrss would include the forking pytest process's peak)
    code = ("import re, sys\nfrom trajtune.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('RSS_MB', int(hwm) // 1024, file=sys.stderr)\nsys.exit(rc)\n")
    names = ["huge.jsonl", "deep.jsonl", "garbage.jsonl", "empty.jsonl"]
    res = subprocess.run([sys.executable, "-c", code, "validate", *names, "--kind", "sft"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "huge.jsonl:1: error [line_too_long] line is 100.0 MB, over the 32 MB limit" in res.stdout
    assert "deep.jsonl:1: error [too_deep]" in res.stdout
    garbage = set(re.findall(r"^garbage.jsonl:\d+: error \[(\w+)\]", res.stdout, re.M))
    assert garbage == {"not_utf8", "not_json"}
    assert "empty.jsonl: error [empty_file] no records: the file is empty" in res.stdout
    rss = int(res.stderr.split("RSS_MB")[1].split()[0])
    assert rss < 300, f"peak RSS {rss} MB"


def test_help_lists_exactly_the_config_fields():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_convert_cli import config_flags, help_flags

    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "validate", "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "250"})
    assert res.returncode == 0
    assert help_flags(res.stdout) == config_flags(script.Config)
    assert {"-o", "--output", "--format", "--strict", "--max-errors", "--against"} <= help_flags(res.stdout)
    assert "--report" not in help_flags(res.stdout)


def test_json_prints_the_report_alone_and_dash_o_writes_it_to_stdout(capsys, monkeypatch):
    for args in (["--json"], ["--json", "--format", "json"], ["--format", "json"], ["-o", "-"], ["--json", "--format", "github"]):
        code, out, err = cli(capsys, monkeypatch, INVALID / "sft.jsonl", *args)
        report = json.loads(out)  # one JSON document: no problem lines, not printed twice
        assert code == 1 and report["ok"] is False and report["exit_code"] == 1, args
        assert report["files"][0]["errors"] == 24 and "FAILED" in err
    code, out, err = cli(capsys, monkeypatch, VALID / "sft.jsonl", "-o", "-", "--json")
    assert code == 2 and "--json and an output of '-' both use stdout" in err


def test_runs_as_a_script_and_stdin_is_given_once(tmp_path):
    rep = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "trajtune.scripts.validate", str(VALID / "sft.jsonl"), "-o", str(rep),
                          "--strict", "--max-errors", "20"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(rep.read_text())["ok"] is True and res.stdout == ""
    res = subprocess.run([sys.executable, "-m", "trajtune.scripts.validate"], capture_output=True, text=True)
    assert res.returncode == 2 and "no files given" in res.stderr


def test_against_takes_a_raw_bfcl_question_file(tmp_path):
    """Training data is checked for prompt overlap with BFCL's files as they ship (own BFCL-shaped lines)."""
    import json
    import subprocess
    import sys

    bfcl = tmp_path / "BFCL_v4_simple_python.json"
    bfcl.write_text(json.dumps({"id": "simple_python_0", "question": [[{"role": "user", "content": "Reverse the list [3, 1, 2]."}]],
                                "function": [{"name": "rev", "parameters": {"type": "dict", "properties": {}}}]}) + "\n")
    train = tmp_path / "train.jsonl"
    rec = {"id": "t1", "metadata": {}, "messages": [{"role": "user", "content": "reverse the list [3, 1, 2]."},
                                                    {"role": "assistant", "content": "[2, 1, 3]"}]}
    train.write_text(json.dumps(rec) + "\n")
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "validate", str(train), "--against", str(bfcl)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and f"{train}:1: error [leakage]" in res.stdout and "BFCL_v4_simple_python.json:1" in res.stdout
