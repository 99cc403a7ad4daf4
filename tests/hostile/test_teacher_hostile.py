"""A hostile teacher endpoint (real loopback server, no mocks) that echoes the API key back: in
message content, tool-call arguments (nested, JSON-escaped, in ``<tool_call>`` text), error and
malformed bodies. The key must reach the server and nothing the run stores or prints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.openai_server import ECHO, ScriptedServer, solve_policy  # noqa: E402
from trajtune.generators import teacher  # noqa: E402
from trajtune.generators.catalog import load_catalog  # noqa: E402
from trajtune.jsonl import read_jsonl  # noqa: E402

SECRET = "sk-hostile-3c2b1a0f9e8d-never-print-me"
ESCAPED = "".join(f"\\u{ord(c):04x}" for c in SECRET)  # the key as JSON escapes: no plain-text match

CATALOG = """
- name: read_file
  category: coding
  description: Read a file.
  parameters: {type: object, properties: {path: {type: string}}, required: [path]}
  simulate: {result: "contents of {path}: 42 lines"}
"""


def echo_policy(body: dict) -> dict:
    """Every reply quotes the Authorization header; the call's arguments depend on the request."""
    msgs = body["messages"]
    user = next(m["content"] for m in msgs if m["role"] == "user")
    if msgs[-1]["role"] == "tool":
        return {"content": f"Done. Your header was {ECHO}."}
    if user == "nested":
        args = {"path": "src/app.py", "meta": {"auth": ECHO, "list": [ECHO, {"deep": [ECHO, 1]}], ECHO: True}}
        return {"content": f"Calling with {ECHO}", "tool_calls": [{"name": "read_file", "arguments": args}]}
    if user == "escaped":
        return {"content": None, "tool_calls": [{"name": "read_file", "arguments": '{"path": "' + ESCAPED + '"}'}]}
    if user == "text call":
        return {"content": 'Reading. <tool_call>{"name": "read_file", "arguments": {"path": "' + ESCAPED + '"}}</tool_call>'}
    return solve_policy(body)


def test_a_server_echoing_the_key_gets_it_into_no_record_reject_or_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_HOSTILE_KEY", SECRET)
    (tmp_path / "tools.yaml").write_text(CATALOG)
    catalog = load_catalog(tmp_path / "tools.yaml")
    prompts = ["nested", "escaped", "text call", "bad request", "echo body", "echo html", "error 200"]
    tasks = [{"id": p, "prompt": [{"role": "user", "content": p}], "tools": catalog.openai_tools(["read_file"])}
             for p in prompts]
    out = tmp_path / "traj.jsonl"
    cfg = teacher.TeacherConfig(base_url="", model="scripted", api_key_env="TT_HOSTILE_KEY", concurrency=1,
                                backoff=0.01, timeout=5.0)
    with ScriptedServer(echo_policy) as srv:
        cfg.base_url = srv.url
        # concurrency 1: tasks 1-3 take two requests each, then one fault for each of the last four
        srv.faults.extend([None] * 6 + ["400", "echo_body", "echo_html", "error_200"])
        s = teacher.generate(tasks, out, cfg, simulate=teacher.catalog_simulator(catalog))
        auth = {r["authorization"] for r in srv.requests}
    assert auth == {f"Bearer {SECRET}"}
    assert (s["written"], s["rejected"], s["failed"]) == (3, 1, 3)
    assert s["rejects"] == {"bad_request": 1} and s["failures"] == {"malformed_response": 3}
    rejects_file = teacher.default_rejects_path(out)
    for text in (out.read_text(), rejects_file.read_text(), json.dumps(s)):
        assert SECRET not in text and SECRET[3:-3] not in text  # not even a cut-off part of it

    recs = {r.obj["metadata"]["task_id"]: r.obj for r in read_jsonl(out)}
    nested = recs["nested"]["messages"]
    assert nested[2]["content"] == "Calling with Bearer ***"
    assert nested[2]["tool_calls"][0]["function"]["arguments"] == {
        "path": "src/app.py", "meta": {"auth": "Bearer ***", "list": ["Bearer ***", {"deep": ["Bearer ***", 1]}],
                                       "Bearer ***": True}}
    assert nested[-1]["content"] == "Done. Your header was Bearer ***."
    for tid in ("escaped", "text call"):  # decoded from JSON escapes, then scrubbed
        msgs = recs[tid]["messages"]
        assert msgs[2]["tool_calls"][0]["function"]["arguments"] == {"path": "***"}
        assert msgs[3]["content"] == "contents of ***: 42 lines"  # the observation quotes the scrubbed argument
    assert recs["text call"]["messages"][2]["content"] == "Reading."

    rows = {r.obj["task_id"]: r.obj for r in read_jsonl(rejects_file)}
    assert rows["bad request"]["reason"] == "bad_request" and "Bearer ***" in rows["bad request"]["detail"]
    assert "Bearer ***" in rows["echo body"]["detail"] and "Authorization: Bearer ***" in rows["echo html"]["detail"]
    assert rows["error 200"]["detail"].startswith("the response has no choices") and "Bearer ***" in rows["error 200"]["detail"]
    assert all(len(r["detail"]) <= 200 for r in rows.values() if r.get("failed"))


def test_cli_against_a_key_echoing_server_prints_and_saves_no_key(tmp_path, tt):
    """Through `trajtune` (``tt``: a real process, no traceback, no network beyond loopback)."""
    def policy(body: dict) -> dict:
        reply = solve_policy(body)
        return {**reply, "content": f"{reply['content']} (auth: {ECHO})"}

    out = tmp_path / "train.jsonl"
    with ScriptedServer(policy) as srv:
        srv.faults.extend(["echo_html", "400", "echo_body"])
        r = tt("generate", "trajectories", "--backend", "openai", "--base-url", srv.url, "--model", "scripted",
               "--api-key-env", "TT_HOSTILE_KEY", "--concurrency", "1", "--count", "3", "--seed", "3", "-o", out, "--json",
               env={"TT_HOSTILE_KEY": SECRET})
        assert {q["authorization"] for q in srv.requests} == {f"Bearer {SECRET}"}
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert (s["written"], s["failed"], s["rejected"]) == (3, 2, 1)
    files = {f.name: f.read_text() for f in tmp_path.iterdir() if f.is_file()}
    assert {"train.jsonl", "train.rejects.jsonl", "train.config.yaml"} <= set(files)
    assert not any(SECRET in t for t in [r.out, r.err, *files.values()])
    assert "Bearer ***" in files["train.rejects.jsonl"]
    assert all("(auth: Bearer ***)" in rec.obj["messages"][-1]["content"] for rec in read_jsonl(out))


def test_arguments_nested_past_what_a_record_holds_are_rejected_not_fatal(tmp_path):
    """Arguments nested 300 (orjson cannot write them) or 100000 levels deep (json recursion), as
    tool_calls or in <tool_call> text: a reject each; the run goes on and every file it wrote reads back."""
    (tmp_path / "tools.yaml").write_text(CATALOG)
    catalog = load_catalog(tmp_path / "tools.yaml")

    def policy(body: dict) -> dict:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if body["messages"][-1]["role"] == "tool" or user == "fine":
            return solve_policy(body)
        n = int(user.lstrip("t"))
        args = '{"path": "a", "x": ' + "[" * n + "]" * n + "}"
        if user.startswith("t"):  # the same in a text call
            return {"content": '<tool_call>{"name": "read_file", "arguments": ' + args + "}</tool_call>"}
        return {"content": None, "tool_calls": [{"name": "read_file", "arguments": args}]}

    prompts = ["300", "100000", "t300", "t100000", "fine"]
    tasks = [{"id": p, "prompt": [{"role": "user", "content": p}], "tools": catalog.openai_tools(["read_file"])}
             for p in prompts]
    out = tmp_path / "traj.jsonl"
    with ScriptedServer(policy) as srv:
        cfg = teacher.TeacherConfig(base_url=srv.url, model="scripted", concurrency=2, timeout=10.0)
        s = teacher.generate(tasks, out, cfg, simulate=teacher.catalog_simulator(catalog))
    assert (s["written"], s["rejected"], s["failed"]) == (1, 4, 0) and s["rejects"] == {"unparsable_arguments": 4}
    rows = {r.obj["task_id"]: r.obj for r in read_jsonl(teacher.default_rejects_path(out))}
    assert sorted(rows) == ["100000", "300", "t100000", "t300"]
    assert rows["300"]["detail"] == rows["100000"]["detail"] == "read_file: arguments nested deeper than 120 levels"
    assert rows["t300"]["detail"] == "<tool_call> block: arguments nested deeper than 120 levels"
    assert [r.obj["metadata"]["task_id"] for r in read_jsonl(out)] == ["fine"]
