"""OpenTelemetry GenAI spans (``gen_ai.*``) and Vercel AI SDK spans (``ai.*``) -> sft, preference.

Input: an OTLP JSON export (``resourceSpans[].scopeSpans[].spans[]``, attributes as
``{key, value: {stringValue | intValue | ...}}``), span lists as the JS SDK writes them
(``name``, ``spanContext``, ``attributes``), or flat attribute maps, JSON or JSONL.

Each span is translated into OpenInference attributes and converted by the traces converter
(:mod:`trajtune.converters.traces`), so annotations (``--annotations``, by span id), preference
pairs and tool handling are the same as for traces:

* GenAI: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (parts ``text``, ``tool_call``,
  ``tool_call_response``), ``gen_ai.system_instructions``, ``gen_ai.tool.definitions``; the
  deprecated ``gen_ai.prompt`` / ``gen_ai.completion``; ``gen_ai.conversation.id`` as the session.
* Vercel AI SDK: the model-call spans (``ai.*.doGenerate`` / ``ai.*.doStream``):
  ``ai.prompt.messages`` (parts ``text``, ``tool-call``, ``tool-result``), ``ai.prompt.tools``,
  ``ai.response.text``, ``ai.response.toolCalls``, ``ai.response.object``.

Every other span is rejected with its reason (so converted + rejected = input spans): a tool
execution (``execute_tool``, ``ai.toolCall``), an embedding, a Vercel wrapper span
(``ai.generateText`` etc., whose ``do*`` call inside is the one converted), or a span whose
messages do not parse. Without ``--annotations`` every model-call span is kept for sft
(``--approved-only`` needs annotations to mean anything).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from trajtune.converters import traces
from trajtune.converters.common import RawRow, Reject
from trajtune.jsonl import Row

NAME = "otel"
KINDS = ("sft", "preference")
REJECT = "trajtune.reject.reason"
DETAIL = "trajtune.reject.detail"


def _otlp_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if "arrayValue" in v:
        return [_otlp_value(x) for x in (v["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in v:
        return {x.get("key"): _otlp_value(x.get("value")) for x in (v["kvlistValue"] or {}).get("values") or []}
    return None


def _attrs(obj: dict) -> dict:
    a = obj.get("attributes")
    if isinstance(a, list):  # OTLP JSON
        return {x.get("key"): _otlp_value(x.get("value")) for x in a if isinstance(x, dict)}
    if isinstance(a, dict):
        return a
    return obj


def _is_otel(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    a = _attrs(obj)
    return isinstance(a, dict) and any(isinstance(k, str) and k.startswith(("gen_ai.", "ai.")) for k in a)


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and (isinstance(obj.get("resourceSpans"), list) or _is_otel(obj))


def _json(v: Any, what: str) -> Any:
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError as exc:
            raise Reject(f"{what} is not JSON", str(exc)) from None
    return v


def _args(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v if v is not None else {}).decode()


def _text_of(v: Any) -> str:
    if isinstance(v, str):
        return v
    return orjson.dumps(v).decode()


# --------------------------------------------------------------------------- GenAI

def _genai_messages(value: Any, what: str) -> list[dict]:
    msgs = _json(value, what)
    if isinstance(msgs, dict) and isinstance(msgs.get("messages"), list):
        msgs = msgs["messages"]
    if isinstance(msgs, dict) and isinstance(msgs.get("text"), str):  # gen_ai.completion {"text": ...}
        return [{"role": "assistant", "content": msgs["text"]}]
    if not isinstance(msgs, list):
        raise Reject(f"{what} is not a message list", type(msgs).__name__)
    out: list[dict] = []
    for m in msgs:
        if not isinstance(m, dict):
            raise Reject(f"{what}: a message is not an object", type(m).__name__)
        role = m.get("role")
        parts = m.get("parts")
        if parts is None and "content" in m:  # plain {role, content}
            out.append({"role": role, "content": m["content"]})
            continue
        if not isinstance(parts, list):
            raise Reject(f"{what}: message without parts", str(role))
        text, calls = [], []
        for p in parts:
            t = p.get("type") if isinstance(p, dict) else None
            if t == "text":
                text.append(str(p.get("content", "")))
            elif t == "tool_call":
                calls.append({"id": p.get("id"), "name": p.get("name"), "arguments": _args(p.get("arguments"))})
            elif t == "tool_call_response":
                out.append({"role": "tool", "content": _text_of(p.get("response")), "tool_call_id": p.get("id")})
            elif t == "reasoning":
                continue
            else:
                raise Reject(f"{what}: unsupported part", repr(t)[:80])
        if text or calls or role != "tool":
            if role == "tool" and not calls:
                out.append({"role": "tool", "content": "".join(text)})
            else:
                out.append({"role": role, "content": "".join(text) if text else None, "tool_calls": calls})
    return out


def _genai(a: dict) -> tuple[list[dict], list[dict], list | None]:
    op = str(a.get("gen_ai.operation.name") or "")
    if op in ("execute_tool",):
        raise Reject("a tool execution span, not a model call", f"gen_ai.tool.name={a.get('gen_ai.tool.name')!r}")
    if op in ("embeddings",):
        raise Reject("an embedding span, not a model call")
    inp_v = a.get("gen_ai.input.messages", a.get("gen_ai.prompt"))
    out_v = a.get("gen_ai.output.messages", a.get("gen_ai.completion"))
    if inp_v is None or out_v is None:
        raise Reject("span without messages", "no gen_ai.input.messages / gen_ai.output.messages")
    inp = _genai_messages(inp_v, "input messages")
    sys_v = a.get("gen_ai.system_instructions")
    if sys_v is not None:
        parts = _json(sys_v, "system instructions")
        text = "".join(str(p.get("content", "")) for p in parts if isinstance(p, dict)) if isinstance(parts, list) \
            else str(parts)
        inp = [{"role": "system", "content": text}] + inp
    out = _genai_messages(out_v, "output messages")
    tools = None
    if a.get("gen_ai.tool.definitions") is not None:
        defs = _json(a["gen_ai.tool.definitions"], "tool definitions")
        tools = [{"type": "function", "function": {k: d[k] for k in ("name", "description", "parameters") if k in d}}
                 if isinstance(d, dict) and "function" not in d else d for d in (defs if isinstance(defs, list) else [defs])]
    return inp, out, tools


# --------------------------------------------------------------------------- Vercel AI SDK

_VERCEL_CALLS = (".doGenerate", ".doStream")


def _vercel_content(role: str, content: Any) -> list[dict]:
    if isinstance(content, str) or content is None:
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise Reject("prompt messages: content is neither text nor parts", type(content).__name__)
    text, calls, results = [], [], []
    for p in content:
        t = p.get("type") if isinstance(p, dict) else None
        if t == "text":
            text.append(str(p.get("text", "")))
        elif t == "tool-call":
            calls.append({"id": p.get("toolCallId"), "name": p.get("toolName"),
                          "arguments": _args(p.get("input", p.get("args")))})
        elif t == "tool-result":
            v = p.get("output", p.get("result"))
            if isinstance(v, dict) and "value" in v and v.get("type") in ("text", "json", "error-text", "error-json"):
                v = v["value"]
            results.append({"role": "tool", "content": _text_of(v), "tool_call_id": p.get("toolCallId")})
        elif t in ("reasoning",):
            continue
        else:
            raise Reject("prompt messages: unsupported part", repr(t)[:80])
    out = results[:]
    if role != "tool":
        out.insert(0, {"role": role, "content": "".join(text) if text else None, "tool_calls": calls})
    return out


def _vercel(a: dict, name: str) -> tuple[list[dict], list[dict], list | None]:
    op = str(a.get("ai.operationId") or name)
    if op.startswith(("ai.embed", "ai.embedMany")):
        raise Reject("an embedding span, not a model call", op)
    if op == "ai.toolCall":
        raise Reject("a tool execution span, not a model call", f"ai.toolCall.name={a.get('ai.toolCall.name')!r}")
    if not op.endswith(_VERCEL_CALLS):
        raise Reject("a wrapper span (its ai.*.doGenerate/doStream call is converted)", op)
    if a.get("ai.prompt.messages") is None:
        raise Reject("span without messages", "no ai.prompt.messages")
    msgs = _json(a["ai.prompt.messages"], "prompt messages")
    if not isinstance(msgs, list):
        raise Reject("prompt messages is not a list", type(msgs).__name__)
    inp: list[dict] = []
    for m in msgs:
        if not isinstance(m, dict):
            raise Reject("prompt messages: a message is not an object", type(m).__name__)
        inp += _vercel_content(m.get("role"), m.get("content"))
    calls = []
    if a.get("ai.response.toolCalls") is not None:
        for c in _json(a["ai.response.toolCalls"], "response tool calls") or []:
            calls.append({"id": c.get("toolCallId"), "name": c.get("toolName"),
                          "arguments": _args(c.get("input", c.get("args")))})
    text = a.get("ai.response.text")
    if text is None and a.get("ai.response.object") is not None:
        text = _text_of(a["ai.response.object"])
    if text is None and not calls:
        raise Reject("span without a response", "no ai.response.text / toolCalls / object")
    out = [{"role": "assistant", "content": text if text else None, "tool_calls": calls}]
    tools = None
    if a.get("ai.prompt.tools") is not None:
        raw = _json(a["ai.prompt.tools"], "prompt tools")
        tools = []
        for t in raw if isinstance(raw, list) else [raw]:
            t = _json(t, "prompt tools")
            if isinstance(t, dict):
                tools.append({"type": "function", "function": {
                    "name": t.get("name"), **({"description": t["description"]} if "description" in t else {}),
                    **({"parameters": t.get("inputSchema", t.get("parameters"))}
                       if t.get("inputSchema", t.get("parameters")) is not None else {})}})
    return inp, out, tools


# --------------------------------------------------------------------------- translation

def _flat_messages(prefix: str, msgs: list[dict], attrs: dict) -> None:
    for i, m in enumerate(msgs):
        base = f"{prefix}.{i}.message"
        attrs[f"{base}.role"] = m.get("role")
        if m.get("content") is not None:
            attrs[f"{base}.content"] = m["content"]
        for j, c in enumerate(m.get("tool_calls") or []):
            attrs[f"{base}.tool_calls.{j}.tool_call.id"] = c.get("id")
            attrs[f"{base}.tool_calls.{j}.tool_call.function.name"] = c.get("name")
            attrs[f"{base}.tool_calls.{j}.tool_call.function.arguments"] = c.get("arguments")
        if m.get("tool_call_id") is not None:
            attrs[f"{base}.tool_call_id"] = m["tool_call_id"]


def translate_span(obj: dict) -> dict:
    """One OTel span -> an OpenInference span the traces converter reads (with a reject reason
    in its attributes when it is not a model call or does not parse)."""
    a = _attrs(obj)
    ctx = obj.get("spanContext") if isinstance(obj.get("spanContext"), dict) else obj.get("context") or {}
    span_id = obj.get("spanId") or (ctx.get("spanId") or ctx.get("span_id") if isinstance(ctx, dict) else None)
    trace_id = obj.get("traceId") or (ctx.get("traceId") or ctx.get("trace_id") if isinstance(ctx, dict) else None)
    name = str(obj.get("name") or a.get("ai.operationId") or "")
    attrs: dict[str, Any] = {}
    kind = "LLM"
    try:
        if any(isinstance(k, str) and k.startswith("ai.") for k in a):
            inp, out, tools = _vercel(a, name)
        else:
            inp, out, tools = _genai(a)
        _flat_messages("llm.input_messages", inp, attrs)
        _flat_messages("llm.output_messages", out, attrs)
        for i, t in enumerate(tools or []):
            attrs[f"llm.tools.{i}.tool.json_schema"] = orjson.dumps(t).decode()
    except traces.ROW_ERRORS as exc:
        r = traces.as_reject(exc)
        attrs = {REJECT: r.reason, DETAIL: r.detail}
        kind = "UNKNOWN"
    sid = a.get("gen_ai.conversation.id") or a.get("session.id")
    if sid is not None:
        attrs["session.id"] = sid
    model = a.get("gen_ai.request.model") or a.get("ai.model.id")
    if model is not None:
        attrs["llm.model_name"] = model
    start = obj.get("startTimeUnixNano") or obj.get("startTime") or obj.get("start_time") or ""
    if isinstance(start, list) and len(start) == 2:  # the JS SDK's [seconds, nanoseconds]
        start = f"{int(start[0]):012d}.{int(start[1]):09d}"
    return {"name": name, "context": {"span_id": span_id, "trace_id": trace_id},
            "parent_id": obj.get("parentSpanId") or obj.get("parent_id") or None, "span_kind": kind,
            "start_time": str(start), "attributes": attrs, "annotations": obj.get("annotations") or [],
            "otel": obj}


def translate(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("resourceSpans"), list):
        spans = []
        for rs in obj["resourceSpans"]:
            for ss in (rs or {}).get("scopeSpans") or (rs or {}).get("instrumentationLibrarySpans") or []:
                spans += [translate_span(s) for s in (ss or {}).get("spans") or [] if isinstance(s, dict)]
        return {"spans": spans}
    if isinstance(obj, dict) and (_is_otel(obj) or "attributes" in obj or "spanContext" in obj):
        return translate_span(obj)
    return obj


class _Translated:
    """A :class:`Source` whose rows are translated on the fly (first pass and re-reads alike)."""

    def __init__(self, source):
        self._source = source
        self.name = source.name
        self.emit = source.emit

    def raw_rows(self, report: bool = True):
        for raw in self._source.raw_rows(report=report):
            yield RawRow(raw.lineno, raw.offset, translate(raw.obj))

    def read_at(self, offset: int, lineno: int) -> Row:
        row = self._source.read_at(offset, lineno)
        return Row(row.path, row.lineno, translate(row.obj))


def convert(source, kind: str, cfg, emit):
    if cfg.annotations is None:  # OTel spans carry no review: keep every model call
        cfg = dataclasses.replace(cfg, approved_only=False)
    for row, rec in traces.convert(_Translated(source), kind, cfg, emit):
        rec["metadata"]["source"] = NAME  # converted by the traces path, read from here
        yield row, rec
