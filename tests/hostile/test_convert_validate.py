"""Hostile inputs: convert and validate.

Each test runs the real `trajtune` command in a process under the network guard
(tests/hostile/conftest.py) and asserts the exit code, the message shape (`Error: ...`,
file:line where there is one, never a traceback), that inputs are byte-for-byte unchanged, and
bounded time.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.hostile import FIX, NETGUARD, ROOT, VALID, alpaca, digest, fake_adapter, jsonl, sft_with_tool  # noqa: E402,F401

class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        body = json.dumps({"type": "integer"}).encode()  # a schema that would decide the verdict
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def schema_server():
    _Recorder.hits = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Recorder.hits
    srv.shutdown()


def test_convert_rejects_path_equal_to_the_input_is_refused(tt, tmp_path):
    a = alpaca(tmp_path / "a.jsonl")
    before = digest(a)
    r = tt("convert", "--from", "alpaca", "--rejects", a, a, "-o", tmp_path / "o.jsonl")
    assert r.code == 2 and "Error: --rejects" in r.err and "refusing to overwrite an input" in r.err
    assert digest(a) == before and not (tmp_path / "o.jsonl").exists()


def test_convert_default_rejects_path_that_is_another_input_is_refused(tt, tmp_path):
    spans, ann = FIX / "traces.jsonl", tmp_path / "o.rejects.jsonl"
    ann.write_bytes((FIX / "traces_annotations.jsonl").read_bytes())
    before = digest(ann)
    r = tt("convert", "--from", "traces", "--annotations", ann, spans, "-o", tmp_path / "o.jsonl")
    assert r.code == 2 and "is the input --annotations" in r.err
    assert digest(ann) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_convert_output_that_is_a_link_to_the_input_is_refused(tt, tmp_path, link):
    a = alpaca(tmp_path / "a.jsonl")
    out = tmp_path / "o.jsonl"
    (os.symlink if link == "symlink" else os.link)(a, out)
    before = digest(a)
    r = tt("convert", "--from", "alpaca", a, "-o", out)
    assert r.code == 2 and "refusing to overwrite an input" in r.err
    assert digest(a) == before


def test_validate_report_onto_its_input_is_refused(tt, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(a)
    r = tt("validate", a, "-o", a)
    assert r.code == 2 and "Error: -o" in r.err and "refusing to overwrite an input" in r.err
    assert digest(a) == before


@pytest.mark.parametrize("host", ["loopback", "outside"])
def test_validate_never_fetches_a_remote_ref_and_says_where_it_is(tt, tmp_path, schema_server, host):
    base, hits = schema_server
    url = f"{base}/x.json" if host == "loopback" else "http://203.0.113.7/x.json"
    f = jsonl(tmp_path / "a.jsonl", [sft_with_tool({"type": "object", "properties": {"n": {"$ref": url}}}, {"n": "s"})])
    r = tt("validate", f, timeout=30)
    assert r.code == 1
    assert f"{f}:1: error [tool_schema]" in r.out and "points outside the record" in r.out
    assert hits == [] and r.seconds < 20


def test_convert_rejects_a_record_with_a_remote_ref_without_fetching_it(tt, tmp_path, schema_server):
    base, hits = schema_server
    rec = sft_with_tool({"type": "object", "properties": {"n": {"$ref": f"{base}/x.json"}}}, {"n": 1})
    good = {**sft_with_tool({"type": "object"}, {}), "id": "r2"}
    f = jsonl(tmp_path / "a.jsonl", [rec, good])
    out = tmp_path / "o.jsonl"
    r = tt("convert", "--from", "trajtune", f, "-o", out)
    assert r.code == 0 and hits == []
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r2"]
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert rej[0]["line"] == 1 and rej[0]["reason"] == "fails check tool_schema"


@pytest.mark.parametrize("model", ["no_such_dir", "./no_such_dir", "no/such/dir/", "/abs/no_such_dir"])
def test_a_mistyped_model_path_is_an_error_naming_it_not_a_hub_lookup(tt, tmp_path, model):
    r = tt("validate", VALID / "sft.jsonl", "--tokenizer", model)
    assert r.code == 2 and model.rstrip("/") in r.err and "not a local folder" in r.err


def test_a_catastrophic_pattern_is_checked_in_bounded_time(tt, tmp_path):
    params = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    f = jsonl(tmp_path / "a.jsonl", [sft_with_tool(params, {"s": "a" * 40 + "!"})])
    r = tt("validate", f, timeout=30)
    assert r.code == 1 and f"{f}:1: error [arguments_schema]" in r.out and r.seconds < 20


@pytest.mark.parametrize("dev", ["/dev/zero", "fifo"])
def test_validate_refuses_inputs_that_never_end(tt, tmp_path, dev):
    if dev == "fifo":
        dev = tmp_path / "pipe"
        os.mkfifo(dev)
    r = tt("validate", dev, timeout=30)
    assert r.code == 2 and ("a character device" in r.err or "a FIFO" in r.err) and r.seconds < 20


def test_convert_refuses_a_character_device(tt, tmp_path):
    r = tt("convert", "--from", "alpaca", "/dev/zero", "-o", tmp_path / "o.jsonl", timeout=30)
    assert r.code == 2 and "a character device" in r.err


def test_a_300_deep_json_record_is_a_line_error_in_validate_and_a_reject_in_convert(tt, tmp_path):
    deep = {"x": 1}
    for _ in range(300):
        deep = {"x": deep}
    rec = {**sft_with_tool({"type": "object"}, deep), "id": "deep"}
    f = jsonl(tmp_path / "deep.jsonl", [rec, {**sft_with_tool({"type": "object"}, {}), "id": "ok"}])
    r = tt("validate", f)
    assert r.code == 1 and f"{f}:1: error" in r.out
    out = tmp_path / "o.jsonl"
    r = tt("convert", "--from", "trajtune", f, "-o", out)
    assert r.code == 0 and [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["ok"]


@pytest.mark.parametrize("fmt,good", [("atif", FIX / "atif.jsonl"), ("hh-rlhf", FIX / "hh_rlhf.jsonl")])
def test_malformed_rows_become_counted_rejects_and_the_run_goes_on(tt, tmp_path, fmt, good):
    bad = [{"schema_version": "ATIF-v1.5", "steps": 7}, {"schema_version": "ATIF-v1.5", "steps": [None, 3]},
           {"chosen": 5, "rejected": ["x"]}, {"chosen": None}]
    f = tmp_path / "in.jsonl"
    f.write_text(good.read_text() + "".join(json.dumps(b) + "\n" for b in bad))
    out = tmp_path / "o.jsonl"
    r = tt("convert", "--from", fmt, "--to", "sft" if fmt == "atif" else "preference", f, "-o", out)
    n_good = len(good.read_text().splitlines())
    assert r.code == 0 and "rejected" in r.err
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert {x["line"] for x in rej} >= set(range(n_good + 1, n_good + 5))
    assert out.read_text().strip()


def test_auto_detection_survives_a_row_of_the_wrong_shape(tt, tmp_path):
    f = jsonl(tmp_path / "in.jsonl", [{"messages": 1}, {"messages": [{"role": "user", "content": "hi"},
                                                                      {"role": "assistant", "content": "hello"}]}])
    out = tmp_path / "o.jsonl"
    r = tt("convert", f, "-o", out)
    assert r.code == 0 and len(out.read_text().splitlines()) == 1
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert [x["line"] for x in rej] == [1]


def test_rich_markup_in_a_path_is_printed_as_is(tt, tmp_path):
    odd = tmp_path / "[bold]x[/].jsonl"
    r = tt("validate", odd)
    assert r.code == 2 and "[bold]x[/].jsonl: no such file" in r.err


def test_temp_files_of_a_killed_run_are_swept_and_outputs_honour_the_umask(tt, tmp_path):
    out = tmp_path / "o.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".o.jsonl.{dead.stdout.strip()}.abcdefgh.tmp"
    stale.write_bytes(b"x" * 1000)
    legacy = tmp_path / ".o.jsonl.zyxwvuts.tmp"
    legacy.write_bytes(b"y")
    os.utime(legacy, (time.time() - 86400, time.time() - 86400))
    old_mask = os.umask(0o022)
    try:
        r = tt("convert", "--from", "alpaca", alpaca(tmp_path / "a.jsonl"), "-o", out)
    finally:
        os.umask(old_mask)
    assert r.code == 0 and not stale.exists() and not legacy.exists()
    assert (out.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sigterm_mid_convert_leaves_no_temp_file_and_no_output(tmp_path):
    out = tmp_path / "o.jsonl"
    env = {**os.environ, "PYTHONPATH": str(NETGUARD)}
    proc = subprocess.Popen([sys.executable, "-m", "trajtune.cli.app", "convert", "--from", "alpaca", "-", "-o", str(out),
                             "--rejects", str(tmp_path / "r.jsonl")], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    proc.stdin.write(b'{"instruction": "a", "output": "b"}\n')
    proc.stdin.flush()
    for _ in range(200):  # the temp outputs exist once it is reading stdin
        if list(tmp_path.glob(".o.jsonl.*.tmp")):
            break
        time.sleep(0.05)
    assert list(tmp_path.glob(".o.jsonl.*.tmp"))
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1].decode()
    assert proc.returncode == 130 and "Interrupted (SIGTERM)" in err and "Traceback" not in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stdin_spools_of_a_killed_convert_are_swept_from_the_temp_folder(tt, tmp_path):
    import tempfile

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    spool = Path(tempfile.gettempdir()) / f"trajtune-convert-{dead.stdout.strip()}-abcdefgh.jsonl"
    spool.write_bytes(b"{}\n" * 1000)
    r = tt("convert", "--from", "alpaca", "-", "-o", tmp_path / "o.jsonl", stdin='{"instruction": "a", "output": "b"}\n')
    assert r.code == 0 and not spool.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"trajtune-convert-{os.getpid()}-*"))


@pytest.mark.parametrize("cmd", ["convert", "validate-output"])
def test_an_output_that_is_a_folder_or_under_a_file_is_a_usage_error(tt, tmp_path, cmd):
    folder, plain = tmp_path / "folder", tmp_path / "plain.txt"
    folder.mkdir()
    plain.write_text("x")
    for target in (folder, plain / "out.jsonl"):
        if cmd == "convert":
            r = tt("convert", "--from", "alpaca", alpaca(tmp_path / "a.jsonl"), "-o", target)
        else:
            r = tt("validate", VALID / "sft.jsonl", "-o", target)
        assert r.code == 2 and r.err.startswith("Error:"), (cmd, target, r.err)
        assert ("is a folder" in r.err or "is a file" in r.err), r.err
    assert plain.read_text() == "x"


def test_non_utf8_config_is_a_clear_error(tt, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"max_records: 3\n# caf\xe9\n")
    r = tt("convert", "--config", bad, alpaca(tmp_path / "a.jsonl"), "-o", tmp_path / "o.jsonl")
    assert r.code == 2 and f"{bad}:2: not UTF-8 text" in r.err


def test_negative_limits_are_usage_errors(tt, tmp_path):
    r = tt("validate", VALID / "sft.jsonl", "--max-line-mb", "-1")
    assert r.code == 2 and "--max-line-mb must be a positive" in r.err


def test_a_bfcl_named_file_without_answers_never_downloads_the_wheel(tt, tmp_path):
    f = tmp_path / "BFCL_v4_simple_python.json"  # our own BFCL-shaped line; no possible_answer beside it
    f.write_text(json.dumps({"id": "simple_python_0", "question": [[{"role": "user", "content": "Add 1 and 2."}]],
                             "function": [{"name": "add", "parameters": {"type": "dict", "properties": {
                                 "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}]}) + "\n")
    r = tt("convert", "--to", "task", f, "-o", tmp_path / "o.jsonl", env={"TRAJTUNE_CACHE": str(tmp_path / "cache")})
    assert r.code == 1 and "no possible answer file" in r.err + (tmp_path / "o.rejects.jsonl").read_text()
    assert not (tmp_path / "cache" / "wheels").exists()
