"""Teacher backend against real OpenAI-compatible servers on loopback (no mocks): a scripted
stdlib server (tool calls, injected 429/500/slow replies) and `transformers serve` with a tiny model."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.openai_server import ScriptedServer, solve_policy  # noqa: E402
from trajtune.errors import RunError  # noqa: E402
from trajtune.generators import teacher  # noqa: E402
from trajtune.generators.catalog import load_catalog  # noqa: E402
from trajtune.jsonl import read_jsonl  # noqa: E402
from trajtune.records import validator  # noqa: E402

SECRET = "sk-test-9f8e7d6c5b4a-never-print-me"

CATALOG = """
- name: read_file
  category: coding
  description: Read a file.
  parameters: {type: object, properties: {path: {type: string}}, required: [path]}
  simulate: {result: "contents of {path}: 42 lines"}
- name: run_tests
  category: debugging
  description: Run the test suite.
  parameters: {type: object, properties: {path: {type: string}, max_failures: {type: integer}}, required: [path, max_failures]}
  simulate: {result: "ran tests in {path}: 3 passed"}
"""


@pytest.fixture()
def catalog(tmp_path):
    p = tmp_path / "tools.yaml"
    p.write_text(CATALOG)
    return load_catalog(p)


def make_tasks(catalog, n, tool="read_file", category="coding"):
    return [{"id": f"task-{i}", "prompt": [{"role": "user", "content": f"request {i}"}],
             "tools": catalog.openai_tools([tool]), "metadata": {"category": category, "difficulty": "easy"}}
            for i in range(n)]


def cfg_for(url, **kw):
    kw = {"concurrency": 2, "backoff": 0.01, "timeout": 5.0, "api_key_env": "TT_TEST_KEY", **kw}
    return teacher.TeacherConfig(base_url=url, model="scripted", **kw)


def test_solves_tasks_with_tool_calls_and_retries_429_and_500(tmp_path, catalog, monkeypatch):
    monkeypatch.setenv("TT_TEST_KEY", SECRET)
    out = tmp_path / "traj.jsonl"
    with ScriptedServer() as srv:
        srv.faults.extend(["429", "500"])
        summary = teacher.generate(make_tasks(catalog, 6), out, cfg_for(srv.url), count=4,
                                   simulate=teacher.catalog_simulator(catalog))
        auth = {r["authorization"] for r in srv.requests}
    assert summary["written"] == 4 and summary["short"] == 0
    # 4 tasks x 2 turns + the two injected failures, each retried once
    assert (summary["requests"], summary["retries"]) == (10, 2)
    assert summary["completion_tokens"] == 8 * 7 and summary["prompt_tokens"] > 0
    assert summary["by_category"] == {"coding": 4}
    assert auth == {f"Bearer {SECRET}"}  # the key reached the server ...
    for text in (out.read_text(), json.dumps(summary)):
        assert SECRET not in text  # ... and nowhere else
    rows = [r.obj for r in read_jsonl(out)]
    assert len({r["id"] for r in rows}) == 4
    for rec in rows:
        validator("sft")(rec)
        assert teacher.check_trajectory(rec) == []
        assert rec["metadata"]["review"] == "pending" and rec["metadata"]["source"] == "teacher"
        roles = [m["role"] for m in rec["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        call = rec["messages"][2]["tool_calls"][0]
        assert call["function"] == {"name": "read_file", "arguments": {"path": "src/app.py"}}
        # the observation comes from the catalog simulator and answers the call
        assert rec["messages"][3] == {"role": "tool", "tool_call_id": call["id"], "name": "read_file",
                                   "content": "contents of src/app.py: 42 lines"}
        assert rec["messages"][4]["content"].startswith("Done. The tool said: contents of src/app.py")


def test_resume_appends_only_missing_ids(tmp_path, catalog):
    out = tmp_path / "traj.jsonl"
    tasks = make_tasks(catalog, 8)
    with ScriptedServer() as srv:
        first = teacher.generate(tasks, out, cfg_for(srv.url), count=2, simulate=teacher.catalog_simulator(catalog))
        second = teacher.generate(tasks, out, cfg_for(srv.url), count=5, simulate=teacher.catalog_simulator(catalog))
        n_before = len(srv.requests)
        third = teacher.generate(tasks, out, cfg_for(srv.url), count=5, simulate=teacher.catalog_simulator(catalog))
        assert len(srv.requests) == n_before  # nothing left to do: no request at all
    assert (first["written"], second["existing"], second["written"], third["written"]) == (2, 2, 3, 0)
    ids = [r.obj["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 5
    # completion order varies with concurrency; the first run solved the first two tasks
    assert sorted(r.obj["metadata"]["task_id"] for r in read_jsonl(out))[:2] == ["task-0", "task-1"]


def test_slow_reply_times_out_and_is_retried(tmp_path, catalog):
    out = tmp_path / "traj.jsonl"
    with ScriptedServer() as srv:
        srv.faults.extend(["slow:2"])
        s = teacher.generate(make_tasks(catalog, 1), out, cfg_for(srv.url, timeout=0.5, concurrency=1), count=1,
                             simulate=teacher.catalog_simulator(catalog))
    assert (s["written"], s["retries"], s["requests"]) == (1, 1, 3)


def test_retries_exhausted_is_a_failure_not_a_reject(tmp_path, catalog):
    out = tmp_path / "traj.jsonl"
    with ScriptedServer() as srv:
        srv.faults.extend(["500", "500", "500"])
        s = teacher.generate(make_tasks(catalog, 2), out, cfg_for(srv.url, max_retries=2, concurrency=1), count=2,
                             simulate=teacher.catalog_simulator(catalog))
        assert (s["written"], s["failed"], s["failures"], s["rejected"]) == (1, 1, {"server_error": 1}, 0)
        assert not teacher.default_rejects_path(out).read_text()
        # a re-run tries the failed task again and meets the target
        again = teacher.generate(make_tasks(catalog, 2), out, cfg_for(srv.url), count=2,
                                 simulate=teacher.catalog_simulator(catalog))
    assert again["written"] == 1 and again["total"] == 2


def test_invalid_trajectories_go_to_rejects_with_the_reason(tmp_path, catalog):
    def policy(body):
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        last_is_tool = body["messages"][-1]["role"] == "tool"
        if user == "hallucinate":
            return {"content": None, "tool_calls": [{"name": "delete_everything", "arguments": {}}]}
        if user == "bad type":
            return {"content": None, "tool_calls": [{"name": "run_tests", "arguments": {"path": "tests", "max_failures": "3"}}]}
        if user == "missing arg":
            return {"content": None, "tool_calls": [{"name": "run_tests", "arguments": {"path": "tests"}}]}
        if user == "broken json":
            return {"content": None, "tool_calls": [{"name": "run_tests", "arguments": '{"path": "tests", '}]}
        if user == "never stops":
            return {"content": None, "tool_calls": [{"name": "run_tests", "arguments": {"path": "t", "max_failures": 1}}]}
        if user == "empty answer":
            return {"content": ""} if last_is_tool else solve_policy(body)
        if user == "cut off":
            return {"content": "Let me think about", "finish_reason": "length"}
        return solve_policy(body)

    prompts = ["hallucinate", "bad type", "missing arg", "broken json", "never stops", "empty answer", "cut off", "fine"]
    tasks = [{"id": p, "prompt": [{"role": "user", "content": p}], "tools": catalog.openai_tools(["run_tests", "read_file"]),
              "metadata": {"category": "debugging"}} for p in prompts]
    out = tmp_path / "traj.jsonl"
    with ScriptedServer(policy) as srv:
        s = teacher.generate(tasks, out, cfg_for(srv.url, max_steps=3), simulate=teacher.catalog_simulator(catalog))
    assert s["written"] == 1 and s["rejected"] == 7
    assert s["rejects"] == {"unknown_tool": 1, "invalid_arguments": 2, "unparsable_arguments": 1, "step_limit": 1,
                            "empty_answer": 1, "truncated": 1}
    rejects = {r.obj["task_id"]: r.obj for r in read_jsonl(teacher.default_rejects_path(out))}
    assert rejects["bad type"]["reason"] == "invalid_arguments" and "max_failures" in rejects["bad type"]["detail"]
    assert rejects["missing arg"]["reason"] == "invalid_arguments" and "max_failures" in rejects["missing arg"]["detail"]
    assert rejects["hallucinate"]["messages"][-1]["tool_calls"][0]["function"]["name"] == "delete_everything"
    assert [r.obj["metadata"]["task_id"] for r in read_jsonl(out)] == ["fine"]


def test_check_trajectory_catches_unanswered_calls_and_missing_final_answer():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {}}}
    rec = {"id": "x", "tools": tools, "messages": [{"role": "user", "content": "go"},
                                                   {"role": "assistant", "content": None, "tool_calls": [call]},
                                                   {"role": "assistant", "content": "done"}]}
    assert [r for r, _ in teacher.check_trajectory(rec)] == ["unanswered_call"]
    rec["messages"] = rec["messages"][:2]  # ends on the call: validate allows a pending last call, the teacher
    assert [r for r, _ in teacher.check_trajectory(rec)] == ["no_final_answer"]  # needs the final answer after it
    rec["messages"].append({"role": "tool", "tool_call_id": "call_9", "content": "?"})
    assert [r for r, _ in teacher.check_trajectory(rec)][0] == "unanswered_call"  # a result for no call


def test_bad_key_stops_the_run_without_showing_the_key(tmp_path, catalog, monkeypatch):
    monkeypatch.setenv("TT_TEST_KEY", SECRET)
    with ScriptedServer() as srv:
        srv.faults.extend(["401"] * 4)
        with pytest.raises(RunError) as err:
            teacher.generate(make_tasks(catalog, 4), tmp_path / "t.jsonl", cfg_for(srv.url),
                             simulate=teacher.catalog_simulator(catalog))
    assert "refused the API key (401)" in str(err.value) and "TT_TEST_KEY" in str(err.value)
    assert SECRET not in str(err.value)


def test_unset_key_variable_is_a_usage_error_for_remote_endpoints(monkeypatch):
    from trajtune.errors import ConfigError

    monkeypatch.delenv("TT_TEST_KEY", raising=False)
    cfg = teacher.TeacherConfig(base_url="https://api.example.com/v1", model="m", api_key_env="TT_TEST_KEY")
    with pytest.raises(ConfigError, match="TT_TEST_KEY is not set"):
        teacher.api_key(cfg)
    assert teacher.api_key(cfg_for("http://127.0.0.1:9/v1")) == "not-needed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_against_transformers_serve_with_a_tiny_model(tmp_path, catalog, tiny_model):
    """A real `transformers serve` process: the random tiny model never finishes within 8 tokens,
    so every trajectory is rejected as truncated, with real token usage counted."""
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        pytest.skip("transformers serve needs the serving extra: pip install -e .[serving]")
    pytest.importorskip("fastapi")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(exe), "serve", str(tiny_model), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--default-seed", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("transformers serve did not start: " + proc.stderr.read().decode()[-500:])
                time.sleep(0.3)
        cfg = teacher.TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1", model=str(tiny_model), reply_limit=8,
                                    concurrency=2, timeout=30, api_key_env="TT_UNSET_KEY")
        out = tmp_path / "traj.jsonl"
        s = teacher.generate(make_tasks(catalog, 2), out, cfg, simulate=teacher.catalog_simulator(catalog))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (s["requests"], s["retries"], s["written"]) == (2, 0, 0)
    assert s["completion_tokens"] == 16 and s["prompt_tokens"] > 0
    assert s["rejects"] == {"truncated": 2}
    rejects = [r.obj for r in read_jsonl(teacher.default_rejects_path(out))]
    assert sorted(r["task_id"] for r in rejects) == ["task-0", "task-1"]
    assert all(r["reason"] == "truncated" and "max_tokens=8" in r["detail"] for r in rejects)


# ------------------------------------------------------------------------------ through the CLI


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def test_cli_openai_backend_counts_retries_and_never_shows_the_key(tmp_path):
    out = tmp_path / "train.jsonl"
    with ScriptedServer() as srv:
        srv.faults.extend(["429"])
        p = _cli("generate", "trajectories", "--backend", "openai", "--base-url", srv.url, "--model", "scripted",
                 "--api-key-env", "TT_CLI_KEY", "--concurrency", "3", "--timeout", "5", "--max-retries", "2",
                 "--set", "backoff=0.01", "--count", "6", "--seed", "2", "-o", str(out), "--json",
                 env={"TT_CLI_KEY": SECRET})
        seen = {r["authorization"] for r in srv.requests}
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert (s["written"], s["total"], s["retries"]) == (6, 6, 1)
    assert s["requests"] == 1 + sum(r.obj["metadata"]["steps"] for r in read_jsonl(out))
    assert s["prompt_tokens"] > 0 and s["completion_tokens"] == 7 * (s["requests"] - 1)
    assert seen == {f"Bearer {SECRET}"}
    texts = [p.stdout, p.stderr] + [f.read_text() for f in tmp_path.iterdir()]
    assert not any(SECRET in t for t in texts)
    saved = (tmp_path / "train.config.yaml").read_text()
    assert "api_key_env: TT_CLI_KEY" in saved and "backend: openai" in saved and "backoff: 0.01" in saved
    for rec in (r.obj for r in read_jsonl(out)):
        assert rec["metadata"]["review"] == "pending" and rec["metadata"]["split"] if "split" in rec["metadata"] else True
        assert rec["metadata"]["category"] and rec["metadata"]["template_id"]
    v = _cli("validate", str(out))
    assert v.returncode == 0, v.stdout + v.stderr


def test_cli_missing_key_variable_is_exit_2_with_the_fix(tmp_path):
    p = _cli("generate", "trajectories", "--backend", "openai", "--base-url", "https://api.example.invalid/v1",
             "--model", "m", "--api-key-env", "TT_NOT_SET_ANYWHERE", "-o", str(tmp_path / "o.jsonl"),
             env={"TT_NOT_SET_ANYWHERE": ""})
    assert p.returncode == 2
    assert "Error: environment variable TT_NOT_SET_ANYWHERE is not set" in p.stderr
    assert "--api-key-env" in p.stderr and "Traceback" not in p.stderr


def test_cli_sigkill_mid_run_then_rerun_completes_without_duplicates(tmp_path):
    def slow_policy(body):
        time.sleep(0.05)
        return solve_policy(body)

    out, ref = tmp_path / "t.jsonl", tmp_path / "ref.jsonl"
    with ScriptedServer(slow_policy) as srv:
        args = ["generate", "trajectories", "--backend", "openai", "--base-url", srv.url, "--model", "scripted",
                "--concurrency", "2", "--count", "30", "--seed", "4"]
        proc = subprocess.Popen([sys.executable, "-m", "trajtune.cli.app", *args, "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 3):
            time.sleep(0.02)
        os.kill(proc.pid, 9)
        proc.wait()
        partial = out.read_bytes().splitlines(keepends=True)
        assert 3 <= len(partial) < 30, "the run should have been killed mid-way"
        p = _cli(*args, "-o", str(out), "--json")
        assert p.returncode == 0, p.stderr
        s = json.loads(p.stdout)
        assert s["existing"] in (len(partial), len(partial) - 1) and s["total"] == 30
        r = _cli(*args, "-o", str(ref), "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["total"] == 30, r.stdout + r.stderr
    ids = [json.loads(x)["id"] for x in out.read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) == 30
    # the same tasks were solved as in an uninterrupted run (order may differ: concurrency)
    assert set(ids) == {json.loads(x)["id"] for x in ref.read_bytes().splitlines()}, (p.stdout, r.stdout)


def test_first_step_is_scored_against_expected_and_verify_rejects_off_task(tmp_path, catalog):
    def task(tid, path):
        return {"id": tid, "prompt": [{"role": "user", "content": f"read {path}"}], "tools": catalog.openai_tools(["read_file"]),
                "expected": {"calls": [{"name": "read_file", "arguments": {"path": [path]}}], "order": "strict"}}

    tasks = [task("right", "src/app.py"), task("wrong", "docs/README.md")]  # the policy always reads src/app.py
    with ScriptedServer() as srv:
        loose = teacher.generate(tasks, tmp_path / "a.jsonl", cfg_for(srv.url), simulate=teacher.catalog_simulator(catalog))
        strict = teacher.generate(tasks, tmp_path / "b.jsonl", cfg_for(srv.url, verify=True),
                                  simulate=teacher.catalog_simulator(catalog))
    meta = {r.obj["metadata"]["task_id"]: r.obj["metadata"] for r in read_jsonl(tmp_path / "a.jsonl")}
    assert loose["written"] == 2 and meta["right"]["expected_match"] is True
    assert meta["wrong"]["expected_match"] is False and meta["wrong"]["expected_reason"] == "wrong_argument"
    assert (strict["written"], strict["rejects"]) == (1, {"off_task": 1})
    rej = next(read_jsonl(teacher.default_rejects_path(tmp_path / "b.jsonl"))).obj
    assert rej["task_id"] == "wrong" and "docs/README.md" in rej["detail"]


# ------------------------------------------------------------------------------ malformed responses

BROKEN = ["truncated", "html", "html_as_json", "empty_body", "no_choices", "missing_choices", "choices_not_list",
          "null_message", "null_choice", "null_function", "nameless_call", "tool_calls_not_list", "content_not_text",
          "not_object", "json_null", "error_200", "too_deep"]


def test_each_malformed_response_fails_its_task_and_the_run_goes_on(tmp_path, catalog):
    """One task per broken reply (concurrency 1: task i meets fault i), then two good tasks; arguments
    that are not JSON are the model's fault: a reject, as before. A re-run tries the failed tasks again."""
    out = tmp_path / "traj.jsonl"
    tasks = make_tasks(catalog, len(BROKEN) + 3)
    with ScriptedServer() as srv:
        srv.faults.extend(BROKEN + ["arguments_not_json"])
        s = teacher.generate(tasks, out, cfg_for(srv.url, concurrency=1), simulate=teacher.catalog_simulator(catalog))
        written_first = sorted(r.obj["metadata"]["task_id"] for r in read_jsonl(out))
        again = teacher.generate(tasks, out, cfg_for(srv.url, concurrency=1), simulate=teacher.catalog_simulator(catalog))
    assert (s["written"], s["failed"], s["rejected"]) == (2, len(BROKEN), 1)
    assert s["failures"] == {"malformed_response": len(BROKEN)} and s["rejects"] == {"unparsable_arguments": 1}
    assert written_first == [f"task-{len(BROKEN) + 1}", f"task-{len(BROKEN) + 2}"]
    rows = [r.obj for r in read_jsonl(teacher.default_rejects_path(out))]
    failed = {r["task_id"]: r for r in rows if r.get("failed")}
    assert sorted(failed) == sorted(f"task-{i}" for i in range(len(BROKEN)))
    for r in failed.values():
        assert r["reason"] == "malformed_response" and "id" not in r and r["record_id"].startswith("traj-t-")
        assert 0 < len(r["detail"]) <= 200 and [m["role"] for m in r["messages"]] == ["system", "user"]
    detail = {f: failed[f"task-{i}"]["detail"] for i, f in enumerate(BROKEN)}
    assert detail["html"].startswith("the response is not JSON: <html>") and "502 Bad Gateway" in detail["html"]
    assert detail["truncated"].startswith("the response is not JSON: {")
    assert detail["empty_body"] == "the response is not JSON: (empty body)"
    assert detail["no_choices"].startswith("the response has no choices")
    assert detail["missing_choices"].startswith("the response has no choices")
    assert detail["null_message"].startswith("choices[0].message is not an object")
    assert detail["null_function"].startswith("tool_calls[0] has no function name")
    assert detail["not_object"] == "the response is a JSON list, not an object: [1, 2, 3]"
    assert "upstream failed" in detail["error_200"]
    assert detail["too_deep"].startswith("the response is nested deeper than 128 levels")
    reject = next(r for r in rows if not r.get("failed"))
    assert reject["reason"] == "unparsable_arguments" and reject["id"] and reject["task_id"] == f"task-{len(BROKEN)}"
    # the failed tasks are tried again (and now succeed); the rejected one is not
    assert (again["existing"], again["written"], again["failed"], again["total"]) == (2, len(BROKEN), 0, len(BROKEN) + 2)


def test_every_response_malformed_is_a_run_error_with_the_reason(tmp_path, catalog):
    out = tmp_path / "traj.jsonl"
    with ScriptedServer() as srv:
        srv.faults.extend(["html", "no_choices", "null_message"])
        with pytest.raises(RunError, match=r"every request to http://127\.0\.0\.1:\d+/v1 failed \(malformed_response: 3\)"):
            teacher.generate(make_tasks(catalog, 3), out, cfg_for(srv.url, concurrency=3),
                             simulate=teacher.catalog_simulator(catalog))
    rows = [r.obj for r in read_jsonl(teacher.default_rejects_path(out))]
    assert len(rows) == 3 and {r["reason"] for r in rows} == {"malformed_response"}
    assert not out.read_text()


def test_malformed_replies_mid_trajectory_keep_the_messages_so_far(tmp_path, catalog):
    """The second turn breaks: the logged failure shows the first turn and its observation."""
    def policy(body):
        return {"content": "x"} if body["messages"][-1]["role"] == "tool" else solve_policy(body)

    out = tmp_path / "traj.jsonl"
    with ScriptedServer(policy) as srv:
        srv.faults.extend([None, "truncated"])  # None: the first request is answered normally
        s = teacher.generate(make_tasks(catalog, 2), out, cfg_for(srv.url, concurrency=1),
                             simulate=teacher.catalog_simulator(catalog))
    assert (s["written"], s["failed"], s["failures"]) == (1, 1, {"malformed_response": 1})
    row = next(read_jsonl(teacher.default_rejects_path(out))).obj
    assert row["task_id"] == "task-0" and [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool"]


def test_an_unexpected_error_in_one_task_fails_that_task_not_the_run(tmp_path, catalog, monkeypatch):
    monkeypatch.setenv("TT_TEST_KEY", SECRET)
    calls = []

    def simulate(name, arguments):
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError(f"simulator broke (key {SECRET})")
        return "ok"

    out = tmp_path / "traj.jsonl"
    with ScriptedServer() as srv:
        s = teacher.generate(make_tasks(catalog, 3), out, cfg_for(srv.url, concurrency=1), simulate=simulate)
    assert (s["written"], s["failed"], s["failures"]) == (2, 1, {"internal_error": 1})
    row = next(read_jsonl(teacher.default_rejects_path(out))).obj
    assert row["reason"] == "internal_error" and row["failed"] is True and row["task_id"] == "task-0"
    assert row["detail"] == "RuntimeError: simulator broke (key ***)"


# ------------------------------------------------------------------------------ credentials in --base-url

def test_redact_url_hides_credentials():
    assert teacher.redact_url("http://user:pa55@127.0.0.1:8000/v1") == "http://***@127.0.0.1:8000/v1"
    assert teacher.redact_url("https://tok@api.example.com/v1") == "https://***@api.example.com/v1"
    # unencoded @, / or space in the password: better too much hidden than a password shown
    for url in ("http://u:p@ss@host/v1?x=1", "http://u:p/ss@host/v1?x=1", "http://u:p ss@host/v1?x=1"):
        assert teacher.redact_url(url) == "http://***@host/v1?x=1"
    assert teacher.redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_cli_credentials_in_the_base_url_are_used_but_never_written_or_printed(tmp_path):
    password = "url-pa55word-do-not-print"
    out = tmp_path / "train.jsonl"
    with ScriptedServer() as srv:
        url = srv.url.replace("http://", f"http://alice:{password}@")
        srv.faults.extend(["html", "arguments_not_json"])
        p = _cli("generate", "trajectories", "--backend", "openai", "--base-url", url, "--model", "scripted",
                 "--concurrency", "1", "--count", "3", "--seed", "1", "-o", str(out))
        seen = {r["authorization"] for r in srv.requests}
    assert p.returncode == 0, p.stderr
    # the real URL was used: the client sent its credentials as basic auth
    assert seen == {"Basic " + __import__("base64").b64encode(f"alice:{password}".encode()).decode()}
    files = {f.name: f.read_text() for f in tmp_path.iterdir()}
    assert {"train.jsonl", "train.rejects.jsonl", "train.config.yaml"} <= set(files)
    for text in [p.stdout, p.stderr, *files.values()]:
        assert password not in text and "alice" not in text
    port = srv.url.rsplit(":", 1)[1].split("/")[0]
    assert f"base_url: http://***@127.0.0.1:{port}/v1" in files["train.config.yaml"]
    assert "failures" in p.stderr and "malformed_response: 1" in p.stderr and "unparsable_arguments: 1" in p.stderr
    assert len(files["train.rejects.jsonl"].splitlines()) == 2


def test_cli_errors_show_the_base_url_without_credentials(tmp_path):
    password = "url-pa55word-do-not-print"
    dead = f"http://alice:{password}@127.0.0.1:{_free_port()}/v1"
    p = _cli("generate", "trajectories", "--backend", "openai", "--base-url", dead, "--model", "scripted",
             "--max-retries", "0", "--count", "2", "-o", str(tmp_path / "o.jsonl"))
    assert p.returncode == 1
    assert "every request to http://***@127.0.0.1:" in p.stderr and "(connection: " in p.stderr
    bad = _cli("generate", "trajectories", "--backend", "openai", "--base-url", f"ftp://alice:{password}@h/v1",
               "--model", "m", "-o", str(tmp_path / "o2.jsonl"), env={"OPENAI_API_KEY": "x" * 8})
    assert bad.returncode == 2 and "ftp://***@h/v1" in bad.stderr
    for text in [p.stdout, p.stderr, bad.stdout, bad.stderr] + [f.read_text() for f in tmp_path.iterdir()]:
        assert password not in text
