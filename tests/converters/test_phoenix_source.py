"""convert --from phoenix against a real Phoenix server on 127.0.0.1: spans logged and annotated
through its API, converted by the traces path; resume after a SIGKILL; the errors a user meets.

Needs the server (`pip install arize-phoenix`, large: not in the dev extra, so CI skips this
module and says why); run locally with: pip install arize-phoenix && pytest tests/converters/test_phoenix_source.py
"""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

# (find_spec of a submodule raises when the parent package is absent: ask for the package first)
if importlib.util.find_spec("phoenix") is None or importlib.util.find_spec("phoenix.server") is None:
    pytest.skip("the Phoenix server is not installed (pip install arize-phoenix; too large for the dev extra)",
                allow_module_level=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp, **env):
    port = _free_port()
    phoenix = shutil.which("phoenix", path=str(Path(sys.executable).parent)) or "phoenix"
    proc = subprocess.Popen([phoenix, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PHOENIX_WORKING_DIR": str(tmp), "PHOENIX_HOST": "127.0.0.1",
                                 "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(_free_port()),
                                 "PHOENIX_TELEMETRY_ENABLED": "false", **env})
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail("phoenix serve exited")
        time.sleep(0.3)
    proc.kill()
    pytest.fail("Phoenix did not start in 120 s")


N = 24  # LLM spans in project 'agent'; every third one annotated rejected, the others approved


def _span(i, start):
    sid = f"{i + 1:016x}"
    return {"name": "ChatCompletion", "context": {"trace_id": f"{i // 2 + 1:032x}", "span_id": sid},
            "span_kind": "LLM", "start_time": start, "end_time": start, "status_code": "OK",
            "attributes": {"openinference.span.kind": "LLM",
                           "llm.input_messages.0.message.role": "user",
                           "llm.input_messages.0.message.content": f"What is the weather in city {i // 2}?",
                           "llm.output_messages.0.message.role": "assistant",
                           "llm.output_messages.0.message.tool_calls.0.tool_call.id": f"c{i}",
                           "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
                           "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments":
                               orjson.dumps({"city": f"city {i // 2}" if i % 2 == 0 else "wrong"}).decode(),
                           "llm.tools.0.tool.json_schema": orjson.dumps({"type": "function", "function": {
                               "name": "get_weather", "parameters": {"type": "object", "properties": {
                                   "city": {"type": "string"}}, "required": ["city"]}}}).decode()}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = _start(tmp_path_factory.mktemp("phoenix"))
    try:
        yield from _logged(url)
    finally:
        proc.terminate()
        proc.wait(30)


def _logged(url):
    from phoenix.client import Client

    c = Client(base_url=url)
    c.spans.log_spans(project_identifier="agent", spans=[_span(i, f"2026-12-01T10:{i:02d}:00Z") for i in range(N)])
    broken = {**_span(101, "2026-12-01T10:01:00Z"), "attributes": {"openinference.span.kind": "LLM",
                                                                  "llm.input_messages.0.message.role": "user"}}
    c.spans.log_spans(project_identifier="other", spans=[_span(100, "2026-12-01T10:00:00Z"), broken])
    import httpx

    def count(project):
        try:
            return len(c.spans.get_spans(project_identifier=project, limit=1000))
        except httpx.HTTPStatusError:  # the project appears with its first span
            return 0

    deadline = time.time() + 60
    while (count("agent") < N or count("other") < 2) and time.time() < deadline:
        time.sleep(0.3)  # spans are inserted asynchronously
    for i in range(N):
        c.spans.add_span_annotation(span_id=f"{i + 1:016x}", annotation_name="review", annotator_kind="HUMAN",
                                    label="rejected" if i % 2 else "approved", score=0.0 if i % 2 else 1.0)
    deadline = time.time() + 30
    while len(c.spans.get_span_annotations(span_ids=[f"{i + 1:016x}" for i in range(N)],
                                           project_identifier="agent")) < N and time.time() < deadline:
        time.sleep(0.3)
    yield url


def _cmd(*args):
    return [sys.executable, "-m", "trajtune.cli.app", "convert", "--from", "phoenix", *map(str, args)]


def _cli(*args, env=None):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def _read(p):
    return [orjson.loads(x) for x in Path(p).read_bytes().splitlines() if x.strip()] if Path(p).exists() else []


def test_sft_from_approved_spans_and_preference_from_annotations(server, tmp_path):
    out = tmp_path / "sft.jsonl"
    res = _cli(server, "--project", "agent", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    recs = _read(out)
    assert len(recs) == N // 2 and s["skipped"] == {"annotated rejected": N // 2}
    assert recs[0]["id"] == f"{1:032x}-{1:016x}" and recs[0]["metadata"]["review"] == "approved"
    call = recs[0]["messages"][-1]["tool_calls"][0]["function"]
    assert call == {"name": "get_weather", "arguments": {"city": "city 0"}}
    assert s["live"]["fetched"] == N
    pref = tmp_path / "pref.jsonl"
    res = _cli(server, "--project", "agent", "--to", "preference", "--page-size", "5", "-o", pref, "--json")
    assert res.returncode == 0, res.stderr
    pairs = _read(pref)
    assert len(pairs) == N // 2
    assert pairs[0]["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "city 0"}
    assert pairs[0]["rejected"][0]["tool_calls"][0]["function"]["arguments"] == {"city": "wrong"}


def test_time_range_filter(server, tmp_path):
    out = tmp_path / "sft.jsonl"
    res = _cli(server, "--project", "agent", "--start-time", "2026-12-01T10:10:00+00:00", "--end-time",
               "2026-12-01T10:20:00+00:00", "--no-approved-only", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    assert len(_read(out)) == 10


def test_a_killed_run_resumes_after_the_last_span_it_wrote(server, tmp_path):
    out = tmp_path / "sft.jsonl"
    cursor = tmp_path / "sft.phoenix.json"
    proc = subprocess.Popen(_cmd(server, "--project", "agent", "--page-size", "1", "-o", out),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    fetched = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            fetched = orjson.loads(cursor.read_bytes())["spans"]
        except (OSError, orjson.JSONDecodeError, KeyError):
            fetched = 0
        if fetched >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()  # the output is written only once every span is in
    res = _cli(server, "--project", "agent", "--page-size", "1", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    assert s["live"]["resumed_after"] >= 3 and s["live"]["resumed_after"] + s["live"]["fetched"] == N
    spool = _read(tmp_path / "sft.phoenix-spans.jsonl")
    assert len({x["context"]["span_id"] for x in spool}) == len(spool) == N  # nothing fetched twice
    ids = [r["id"] for r in _read(out)]
    assert len(ids) == len(set(ids)) == N // 2
    res = _cli(server, "--project", "agent", "-o", out, "--json")  # nothing new on the server
    assert res.returncode == 0 and orjson.loads(res.stdout)["live"]["fetched"] == 0
    assert len(_read(out)) == N // 2


def test_wrong_project_unreachable_server_a_broken_span_and_no_key_in_files(server, tmp_path):
    out = tmp_path / "x.jsonl"
    res = _cli(server, "--project", "nope", "-o", out)
    assert res.returncode == 1 and "has no project 'nope'" in res.stderr and "Traceback" not in res.stderr
    res = _cli(f"http://127.0.0.1:{_free_port()}", "--project", "agent", "-o", out)
    assert res.returncode == 1 and "cannot reach Phoenix at http://127.0.0.1" in res.stderr
    ok = tmp_path / "ok.jsonl"
    res = _cli(server, "--project", "other", "--no-approved-only", "-o", ok, "--json",
               env={"PHOENIX_API_KEY": "key-that-must-not-leak"})
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    assert s["converted"] == 1 and s["rejected"] == {"span without output messages": 1}
    assert "1 rejected" in res.stderr
    assert [r["input"]["context"]["span_id"] for r in _read(s["rejects"])] == [f"{102:016x}"]
    written = "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert "key-that-must-not-leak" not in res.stdout + res.stderr + written


def test_a_server_that_requires_auth_names_the_variable_and_the_key_never_leaks(tmp_path):
    key = "admin-key-4-tests-that-must-not-leak-000"
    proc, url = _start(tmp_path / "server", PHOENIX_ENABLE_AUTH="true",
                       PHOENIX_SECRET="jwt-secret-4-tests-0123456789-abcdefg", PHOENIX_ADMIN_SECRET=key)
    try:
        from phoenix.client import Client

        Client(base_url=url, api_key=key).spans.log_spans(project_identifier="secure", spans=[_span(0, "2026-12-01T10:00:00Z")])
        out = tmp_path / "out" / "sft.jsonl"
        out.parent.mkdir()
        res = _cli(url, "--project", "secure", "-o", out, env={"PHOENIX_API_KEY": ""})
        assert res.returncode == 1 and "authentication required" in res.stderr and "PHOENIX_API_KEY" in res.stderr
        assert "Traceback" not in res.stderr
        deadline = time.time() + 60
        while True:  # the span is inserted asynchronously
            res = _cli(url, "--project", "secure", "--no-approved-only", "--api-key-env", "MY_KEY", "-o", out,
                       "--json", env={"MY_KEY": key})
            if res.returncode == 0 or time.time() > deadline:
                break
            time.sleep(1)
        assert res.returncode == 0, res.stderr
        assert len(_read(out)) == 1
        written = "".join(p.read_text() for p in out.parent.iterdir() if p.is_file())
        assert key not in res.stdout + res.stderr + written
    finally:
        proc.terminate()
        proc.wait(30)
