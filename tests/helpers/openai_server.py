"""A small real OpenAI-compatible HTTP server for tests (stdlib ``http.server`` on loopback).

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` with a deterministic scripted
policy that emits ``tool_calls``, and injects faults on demand, one per request in order:
``"429"`` (with ``Retry-After: 0``), ``"500"``, ``"401"``, ``"400"``, ``"slow:SECONDS"`` (answers late,
for timeouts), or any name in :data:`MALFORMED` (a broken 200 reply: truncated JSON, an HTML page,
``{"choices": []}``, a null message, ...). Every request is recorded (body and Authorization
header) for assertions.

A hostile server: ``{{authorization}}`` anywhere in a reply (a policy's content or arguments, an
error or malformed body) is replaced by the request's Authorization header, so tests can check
that an echoed key never reaches what the client stores.

    with ScriptedServer() as srv:
        srv.faults.extend(["429", "500"])
        ... base_url=srv.url ...
"""
from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Policy = Callable[[dict], dict]
ECHO = "{{authorization}}"

_MSG = {"role": "assistant", "content": None}
_CALL = {"id": "srv_0", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'}}


def _reply(*choices: Any, **extra: Any) -> bytes:
    return json.dumps({"id": "chatcmpl-bad", "object": "chat.completion", "model": "scripted",
                       "choices": list(choices), **extra}).encode()


def _choice(message: Any, finish: str = "stop") -> dict:
    return {"index": 0, "message": message, "finish_reason": finish}


# fault name -> (status, content type, body): replies an endpoint or a proxy in front of it can send
MALFORMED: dict[str, tuple[int, str, bytes]] = {
    "truncated": (200, "application/json", _reply(_choice({**_MSG, "content": "Let me"}))[:40]),
    "html": (200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "html_as_json": (200, "application/json", b"<!DOCTYPE html><html><body>Service unavailable</body></html>"),
    "empty_body": (200, "application/json", b""),
    "no_choices": (200, "application/json", _reply()),  # {"choices": []}
    "missing_choices": (200, "application/json", json.dumps({"id": "chatcmpl-bad", "object": "chat.completion"}).encode()),
    "choices_not_list": (200, "application/json", json.dumps({"choices": {"0": "x"}}).encode()),
    "null_message": (200, "application/json", _reply(_choice(None))),
    "null_choice": (200, "application/json", _reply(None)),
    "null_function": (200, "application/json", _reply(_choice({**_MSG, "tool_calls": [{"id": "c", "type": "function",
                                                                                         "function": None}]}))),
    "nameless_call": (200, "application/json", _reply(_choice({**_MSG, "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}))),
    "tool_calls_not_list": (200, "application/json", _reply(_choice({**_MSG, "tool_calls": "read_file"}))),
    "content_not_text": (200, "application/json", _reply(_choice({**_MSG, "content": {"text": "hi"}}))),
    "arguments_not_json": (200, "application/json", _reply(_choice({**_MSG, "tool_calls": [
        {**_CALL, "function": {"name": "read_file", "arguments": "{path: src/app.py"}}]}, "tool_calls"))),
    "not_object": (200, "application/json", b"[1, 2, 3]"),
    "too_deep": (200, "application/json", _reply(_choice({**_MSG, "tool_calls": [
        {**_CALL, "function": {"name": "read_file", "arguments": {"path": "a", "x": json.loads("[" * 300 + "]" * 300)}}}]}))),
    "json_null": (200, "application/json", b"null"),
    "error_200": (200, "application/json", json.dumps({"error": {"message": "upstream failed for " + ECHO}}).encode()),
    "echo_body": (200, "application/json", json.dumps({"choices": [], "debug": {"auth": ECHO}}).encode()),
    "echo_html": (200, "text/html", b"<html>request had Authorization: " + ECHO.encode() + b"</html>"),
}


def example_value(schema: dict) -> Any:
    """A value that satisfies a (simple) JSON schema: enum/default first, then by type."""
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "integer":
        return max(1, schema.get("minimum", 1))
    if t == "number":
        return float(max(1, schema.get("minimum", 1)))
    if t == "boolean":
        return True
    if t == "array":
        return [example_value(schema.get("items") or {"type": "string"})] * max(1, schema.get("minItems", 1))
    if t == "object":
        return {k: example_value(v) for k, v in (schema.get("properties") or {}).items() if k in schema.get("required", [])}
    return "src/app.py"


def solve_policy(body: dict) -> dict:
    """First turn: call the first offered tool with schema-valid required arguments.
    After a tool result: a final answer quoting the observation."""
    msgs = body.get("messages") or []
    tools = body.get("tools") or []
    if msgs and msgs[-1].get("role") == "tool":
        return {"content": "Done. The tool said: " + str(msgs[-1].get("content", ""))[:60]}
    if not tools:
        return {"content": "No tool is needed: here is the answer."}
    fn = tools[0]["function"]
    params = fn.get("parameters") or {}
    args = {k: example_value(v) for k, v in (params.get("properties") or {}).items() if k in params.get("required", [])}
    return {"content": "I'll use " + fn["name"] + ".", "tool_calls": [{"name": fn["name"], "arguments": args}]}


class ScriptedServer:
    def __init__(self, policy: Policy = solve_policy):
        self.policy = policy
        self.faults: collections.deque[str] = collections.deque()
        self.requests: list[dict] = []  # {"body", "authorization", "fault"}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def _send(self, code: int, obj: Any, headers: dict | None = None, *, raw: bytes | None = None,
                      content_type: str = "application/json") -> None:
                data = json.dumps(obj).encode() if raw is None else raw
                auth = self.headers.get("Authorization") or ""
                data = data.replace(ECHO.encode(), json.dumps(auth)[1:-1].encode())
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server.lock:
                    fault = server.faults.popleft() if server.faults else None
                    server.requests.append({"body": body, "authorization": self.headers.get("Authorization"),
                                            "fault": fault})
                if fault == "429":
                    self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": "0"})
                    return
                if fault in ("500", "401", "400"):
                    self._send(int(fault), {"error": {"message": f"injected {fault} for {ECHO}"}})
                    return
                if fault in MALFORMED:
                    code, ctype, raw = MALFORMED[fault]
                    self._send(code, None, raw=raw, content_type=ctype)
                    return
                if fault and fault.startswith("slow:"):
                    time.sleep(float(fault.split(":", 1)[1]))
                self._send(200, server.completion(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def completion(self, body: dict) -> dict:
        reply = self.policy(body)
        calls = [{"id": f"srv_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str)
                               else json.dumps(c["arguments"])}} for i, c in enumerate(reply.get("tool_calls") or [])]
        msg: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if calls:
            msg["tool_calls"] = calls
        finish = reply.get("finish_reason") or ("tool_calls" if calls else "stop")
        prompt_tokens = len(json.dumps(body.get("messages"))) // 4
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": prompt_tokens + 7}}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # run standalone: python tests/helpers/openai_server.py
    with ScriptedServer() as srv:
        print(srv.url, flush=True)
        try:
            srv.thread.join()
        except KeyboardInterrupt:
            pass
