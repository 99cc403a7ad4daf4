"""Hostile inputs across every command, one section per class of failure.

Each test runs the real `trajtune` command in a process under the network guard (see
conftest.py) and asserts the exit code, the message shape (`Error: ...`, file:line where there is
one, never a traceback), that inputs are byte-for-byte unchanged, and bounded time.
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
from helpers.hostile import NETGUARD, digest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "data" / "examples" / "valid"
FIX = ROOT / "tests" / "fixtures" / "convert"


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca(path: Path) -> Path:
    return jsonl(path, [{"instruction": "Say hi.", "input": "", "output": "hi"},
                        {"instruction": "Say bye.", "input": "", "output": "bye"}])


def sft_with_tool(params: dict, args: dict) -> dict:
    return {"id": "r1", "metadata": {}, "tools": [{"type": "function", "function": {"name": "t", "parameters": params}}],
            "messages": [{"role": "user", "content": "go"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "t", "arguments": args}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                         {"role": "assistant", "content": "done"}]}


def fake_adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default", "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"not really weights, never read by a refused command")
    return path


# =========================================================================== 1. inputs destroyed

def test_convert_rejects_path_equal_to_the_input_is_refused(tt, tmp_path):
    a = alpaca(tmp_path / "a.jsonl")
    before = digest(a)
    r = tt("convert", "--from", "alpaca", "--rejects", a, a, tmp_path / "o.jsonl")
    assert r.code == 2 and "Error: --rejects" in r.err and "refusing to overwrite an input" in r.err
    assert digest(a) == before and not (tmp_path / "o.jsonl").exists()


def test_convert_default_rejects_path_that_is_another_input_is_refused(tt, tmp_path):
    spans, ann = FIX / "traces.jsonl", tmp_path / "o.rejects.jsonl"
    ann.write_bytes((FIX / "traces_annotations.jsonl").read_bytes())
    before = digest(ann)
    r = tt("convert", "--from", "traces", "--annotations", ann, spans, tmp_path / "o.jsonl")
    assert r.code == 2 and "is the input --annotations" in r.err
    assert digest(ann) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_convert_output_that_is_a_link_to_the_input_is_refused(tt, tmp_path, link):
    a = alpaca(tmp_path / "a.jsonl")
    out = tmp_path / "o.jsonl"
    (os.symlink if link == "symlink" else os.link)(a, out)
    before = digest(a)
    r = tt("convert", "--from", "alpaca", a, out)
    assert r.code == 2 and "refusing to overwrite an input" in r.err
    assert digest(a) == before


def test_validate_report_onto_its_input_is_refused(tt, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(a)
    r = tt("validate", a, "--report", a)
    assert r.code == 2 and "--report" in r.err and "refusing to overwrite an input" in r.err
    assert digest(a) == before


@pytest.mark.parametrize("where", ["same", "parent"])
def test_merge_lora_output_onto_or_around_the_adapter_is_refused_before_any_work(tt, tmp_path, where):
    adapter = fake_adapter(tmp_path / "runs" / "A")
    before = digest(adapter)
    out = adapter if where == "same" else adapter.parent
    r = tt("merge-lora", "--base", "default", "--adapter", adapter, "--output", out, "--force")
    assert r.code == 2 and "Error:" in r.err and "verified" not in r.out + r.err
    assert digest(adapter) == before
    assert r.seconds < 30


def test_evaluate_into_a_folder_holding_its_tasks_as_predictions_is_refused(tt, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    tasks = ev / "predictions.jsonl"
    tasks.write_bytes((VALID / "task.jsonl").read_bytes())
    before = digest(tasks)
    r = tt("evaluate", "--model", "default", "--tasks", tasks, "--output", ev)
    assert r.code == 2 and "is the input --tasks" in r.err
    assert digest(tasks) == before


def test_split_into_the_folder_of_its_input_named_like_a_split_is_refused(tt, tmp_path):
    out = tmp_path / "splits"
    out.mkdir()
    inp = out / "train.jsonl"
    inp.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(inp)
    r = tt("split", inp, out)
    assert r.code == 2 and "is the input IN" in r.err
    assert digest(inp) == before


def test_generate_onto_its_catalog_is_refused(tt, tmp_path):
    cat = tmp_path / "tools.yaml"
    cat.write_bytes((ROOT / "data" / "tools" / "coding.yaml").read_bytes())
    before = digest(cat)
    r = tt("generate", "trajectories", "--catalog", cat, "--count", "2", cat)
    assert r.code == 2 and "is the input --catalog" in r.err
    assert digest(cat) == before


def test_train_sft_run_folder_holding_its_data_is_refused(tt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = run / "train.jsonl"
    data.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(data)
    r = tt("train-sft", data, "--output-dir", run, "--max-steps", "1")
    assert r.code == 2 and "lies inside --output-dir" in r.err
    assert digest(data) == before


def test_train_dpo_run_folder_holding_its_adapter_is_refused(tt, tmp_path):
    adapter = fake_adapter(tmp_path / "runs" / "sft" / "final")
    before = digest(adapter)
    r = tt("train-dpo", "--data", VALID / "preference.jsonl", "--adapter", adapter,
           "--output-dir", tmp_path / "runs" / "sft", "--max-steps", "1")
    assert r.code == 2 and "lies inside --output-dir" in r.err
    assert digest(adapter) == before


# =========================================================================== 2. network because of data

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
    r = tt("convert", "--from", "trajtune", f, out)
    assert r.code == 0 and hits == []
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r2"]
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert rej[0]["line"] == 1 and rej[0]["reason"] == "fails check tool_schema"


@pytest.mark.parametrize("model", ["no_such_dir", "./no_such_dir", "no/such/dir/", "/abs/no_such_dir"])
def test_a_mistyped_model_path_is_an_error_naming_it_not_a_hub_lookup(tt, tmp_path, model):
    r = tt("validate", VALID / "sft.jsonl", "--tokenizer", model)
    assert r.code == 2 and model.rstrip("/") in r.err and "not a local folder" in r.err


def test_a_hub_id_in_offline_mode_is_refused_saying_it_needs_the_network(tt, tmp_path):
    r = tt("evaluate", "--model", "someorg/somemodel", "--tasks", VALID / "task.jsonl", "--output", tmp_path / "ev")
    assert r.code == 2 and "would need the network" in r.err


def test_a_model_folder_with_only_config_json_names_what_is_missing(tt, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    (m / "config.json").write_text("{}")
    r = tt("evaluate", "--model", m, "--tasks", VALID / "task.jsonl", "--output", tmp_path / "ev")
    assert r.code == 2 and "no weights" in r.err and "model.safetensors" in r.err


# =========================================================================== 3. hangs and blow-ups

def test_a_catastrophic_pattern_is_checked_in_bounded_time(tt, tmp_path):
    params = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    f = jsonl(tmp_path / "a.jsonl", [sft_with_tool(params, {"s": "a" * 40 + "!"})])
    r = tt("validate", f, timeout=30)
    assert r.code == 1 and f"{f}:1: error [arguments_schema]" in r.out and r.seconds < 20


def test_a_catastrophic_task_regex_is_scored_in_bounded_time():
    from trajtune.scoring import score

    task = {"id": "t", "prompt": [{"role": "user", "content": "q"}], "tools": [],
            "expected": {"answer": "^(a+)+$", "match": "regex"}}
    t0 = time.monotonic()
    s = score(task, "a" * 5000 + "!")
    assert s.passed is False and time.monotonic() - t0 < 5


@pytest.mark.parametrize("dev", ["/dev/zero", "fifo"])
def test_validate_refuses_inputs_that_never_end(tt, tmp_path, dev):
    if dev == "fifo":
        dev = tmp_path / "pipe"
        os.mkfifo(dev)
    r = tt("validate", dev, timeout=30)
    assert r.code == 2 and ("a character device" in r.err or "a FIFO" in r.err) and r.seconds < 20


def test_convert_refuses_a_character_device(tt, tmp_path):
    r = tt("convert", "--from", "alpaca", "/dev/zero", tmp_path / "o.jsonl", timeout=30)
    assert r.code == 2 and "a character device" in r.err


BOMB = "".join([f"{k}: &{k} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, k in zip("abcdefgh", "bcdefghi")])
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB + "max_records: *i\n"


def test_a_yaml_alias_bomb_in_config_is_refused_in_bounded_memory(tt, tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(BOMB)
    r = tt("convert", "--config", cfg, alpaca(tmp_path / "a.jsonl"), tmp_path / "o.jsonl", timeout=60)
    assert r.code == 2 and f"Error: {cfg}" in r.err and "expands (through aliases)" in r.err
    assert len(r.err) < 2000
    # peak memory of that one command: measured from a fresh parent whose only child it is
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    peak_kb = int(subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "trajtune.cli.app", "convert",
                                  "--config", str(cfg), str(tmp_path / "a.jsonl"), str(tmp_path / "o2.jsonl")],
                                 capture_output=True, text=True, timeout=60).stdout)
    assert peak_kb < 300 * 1024  # tens of MB, not the gigabytes of the expanded document


def test_a_deeply_nested_yaml_config_is_a_clear_error(tt, tmp_path):
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("max_records: " + "[" * 20000 + "]" * 20000 + "\n")
    r = tt("split", "--config", cfg, VALID / "sft.jsonl", tmp_path / "s")
    assert r.code == 2 and "nested deeper than" in r.err and f"{cfg}:1:" in r.err


def test_a_300_deep_json_record_is_a_line_error_in_validate_and_a_reject_in_convert(tt, tmp_path):
    deep = {"x": 1}
    for _ in range(300):
        deep = {"x": deep}
    rec = {**sft_with_tool({"type": "object"}, deep), "id": "deep"}
    f = jsonl(tmp_path / "deep.jsonl", [rec, {**sft_with_tool({"type": "object"}, {}), "id": "ok"}])
    r = tt("validate", f)
    assert r.code == 1 and f"{f}:1: error" in r.out
    out = tmp_path / "o.jsonl"
    r = tt("convert", "--from", "trajtune", f, out)
    assert r.code == 0 and [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["ok"]


# =========================================================================== 5. one bad row

@pytest.mark.parametrize("fmt,good", [("atif", FIX / "atif.jsonl"), ("hh-rlhf", FIX / "hh_rlhf.jsonl")])
def test_malformed_rows_become_counted_rejects_and_the_run_goes_on(tt, tmp_path, fmt, good):
    bad = [{"schema_version": "ATIF-v1.5", "steps": 7}, {"schema_version": "ATIF-v1.5", "steps": [None, 3]},
           {"chosen": 5, "rejected": ["x"]}, {"chosen": None}]
    f = tmp_path / "in.jsonl"
    f.write_text(good.read_text() + "".join(json.dumps(b) + "\n" for b in bad))
    out = tmp_path / "o.jsonl"
    r = tt("convert", "--from", fmt, "--to", "sft" if fmt == "atif" else "preference", f, out)
    n_good = len(good.read_text().splitlines())
    assert r.code == 0 and "rejected" in r.err
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert {x["line"] for x in rej} >= set(range(n_good + 1, n_good + 5))
    assert out.read_text().strip()


def test_auto_detection_survives_a_row_of_the_wrong_shape(tt, tmp_path):
    f = jsonl(tmp_path / "in.jsonl", [{"messages": 1}, {"messages": [{"role": "user", "content": "hi"},
                                                                      {"role": "assistant", "content": "hello"}]}])
    out = tmp_path / "o.jsonl"
    r = tt("convert", f, out)
    assert r.code == 0 and len(out.read_text().splitlines()) == 1
    rej = [json.loads(x) for x in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert [x["line"] for x in rej] == [1]


# =========================================================================== 6. messages, not tracebacks

@pytest.mark.parametrize("cmd", ["convert", "split", "generate", "evaluate", "validate-report"])
def test_an_output_that_is_a_folder_or_under_a_file_is_a_usage_error(tt, tmp_path, cmd):
    folder, plain = tmp_path / "folder", tmp_path / "plain.txt"
    folder.mkdir()
    plain.write_text("x")
    for target in (folder, plain / "out.jsonl"):
        if cmd == "convert":
            r = tt("convert", "--from", "alpaca", alpaca(tmp_path / "a.jsonl"), target)
        elif cmd == "split":
            target = plain if target == folder else target  # split writes a folder: a file there is wrong
            r = tt("split", VALID / "sft.jsonl", target)
        elif cmd == "generate":
            r = tt("generate", "tasks", "--count", "1", target)
        elif cmd == "evaluate":
            target = plain if target == folder else target
            r = tt("evaluate", "--model", "default", "--tasks", VALID / "task.jsonl", "--output", target)
        else:
            r = tt("validate", VALID / "sft.jsonl", "--report", target)
        assert r.code == 2 and r.err.startswith("Error:"), (cmd, target, r.err)
        assert ("is a folder" in r.err or "is a file" in r.err), r.err
    assert plain.read_text() == "x"


def test_merge_lora_output_that_is_a_file_fails_before_the_merge(tt, tmp_path):
    f = tmp_path / "merged"
    f.write_text("keep me")
    r = tt("merge-lora", "--base", "default", "--adapter", fake_adapter(tmp_path / "A"), "--output", f, "--force")
    assert r.code == 2 and "is a file, not a folder" in r.err and f.read_text() == "keep me" and r.seconds < 30


def test_non_utf8_config_catalog_and_id_files_are_clear_errors(tt, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"max_records: 3\n# caf\xe9\n")
    r = tt("convert", "--config", bad, alpaca(tmp_path / "a.jsonl"), tmp_path / "o.jsonl")
    assert r.code == 2 and f"{bad}:2: not UTF-8 text" in r.err
    r = tt("generate", "tools", "--catalog", bad, "--check")
    assert r.code in (1, 2) and "not UTF-8 text" in r.err + r.out
    data = tmp_path / "d.jsonl"
    data.write_bytes((VALID / "sft.jsonl").read_bytes())
    r = tt("review", data, "--approve-ids", bad)
    assert r.code == 2 and "not UTF-8 text" in r.err


def test_bad_set_values_and_negative_limits_are_usage_errors(tt, tmp_path):
    r = tt("generate", "trajectories", "--set", "key=[unclosed", "--backend", "openai", "--base-url",
           "http://127.0.0.1:9/v1", "--model", "m", tmp_path / "o.jsonl")
    assert r.code == 2 and "Error: --set key" in r.err and "invalid YAML" in r.err
    r = tt("validate", VALID / "sft.jsonl", "--max-line-mb", "-1")
    assert r.code == 2 and "--max-line-mb must be a positive" in r.err


def test_rich_markup_in_a_path_is_printed_as_is(tt, tmp_path):
    odd = tmp_path / "[bold]x[/].jsonl"
    r = tt("validate", odd)
    assert r.code == 2 and "[bold]x[/].jsonl: no such file" in r.err


# =========================================================================== 7. leftovers and modes

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
        r = tt("convert", "--from", "alpaca", alpaca(tmp_path / "a.jsonl"), out)
    finally:
        os.umask(old_mask)
    assert r.code == 0 and not stale.exists() and not legacy.exists()
    assert (out.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_sigterm_mid_convert_leaves_no_temp_file_and_no_output(tmp_path):
    out = tmp_path / "o.jsonl"
    env = {**os.environ, "PYTHONPATH": str(NETGUARD)}
    proc = subprocess.Popen([sys.executable, "-m", "trajtune.cli.app", "convert", "--from", "alpaca", "-", str(out),
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
    r = tt("convert", "--from", "alpaca", "-", tmp_path / "o.jsonl", stdin='{"instruction": "a", "output": "b"}\n')
    assert r.code == 0 and not spool.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"trajtune-convert-{os.getpid()}-*"))
