"""OpenAI chat fine-tuning JSONL -> sft.

``messages`` with ``tool_calls`` whose ``arguments`` are JSON strings (double-encoded ones too),
optional ``tools``, the legacy ``functions`` / ``function_call`` / ``role: function`` form, and
per-message ``weight`` (0 becomes ``train: false``, 1 ``train: true``; LLaMA-Factory's
``loss_weight`` likewise on assistant turns). Content given as a list of text parts is joined;
``reasoning`` parts go to the message's ``reasoning`` key and ``tool_call`` parts become calls.
Rows with images/videos/audios are rejected (text-only records); rows with a KTO ``label: false``
are skipped (an undesirable answer must not be trained on as sft). Other top-level keys (e.g. ``parallel_tool_calls``) go to ``metadata.extra``;
``id`` and ``metadata`` are kept, so trajtune -> openai -> trajtune gives the same records.

``--to preference`` reads OpenAI preference fine-tuning rows (``input``, ``preferred_output``,
``non_preferred_output``) and LLaMA-Factory v1 ``chosen_messages`` / ``rejected_messages``.
"""
from __future__ import annotations

from typing import Any

from trajtune.converters.common import Builder, Reject, Skip, extras, loads_json, parse_tools, per_row, record, source_id, text_of

NAME = "openai"
KINDS = ("sft", "preference")


def _is_preference(obj: dict) -> bool:
    return ("preferred_output" in obj and isinstance(obj.get("input"), dict)) or "chosen_messages" in obj


def detect(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    msgs = obj.get("messages")
    return _is_preference(obj) or (isinstance(msgs, list) and any(isinstance(m, dict) and "role" in m for m in msgs))


def _train(m: dict) -> bool | None:
    if "weight" in m:
        if m["weight"] not in (0, 1):
            raise Reject("weight not 0 or 1", repr(m["weight"]))
        return bool(m["weight"])
    if isinstance(m.get("loss_weight"), (int, float)) and not isinstance(m["loss_weight"], bool):
        return m["loss_weight"] > 0  # LLaMA-Factory v1
    if isinstance(m.get("train"), bool):
        return m["train"]
    return None


def _parts(content: Any) -> tuple[Any, str | None, list[dict]]:
    """LLaMA-Factory v1 part lists: text parts are the content, ``reasoning`` parts go to the
    message's ``reasoning`` key, ``tool_call`` parts (JSON of name and arguments) become calls."""
    if not isinstance(content, list) or not any(isinstance(p, dict) and p.get("type") in ("reasoning", "tool_call")
                                                for p in content):
        return content, None, []
    text, reasoning, calls = [], [], []
    for p in content:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "reasoning":
            reasoning.append(text_of([{"type": "text", "value": p.get("value", p.get("text"))}]))
        elif kind == "tool_call":
            spec = loads_json(p.get("value", p.get("text")), "tool_call part")
            for c in spec if isinstance(spec, list) else [spec]:
                if not isinstance(c, dict):
                    raise Reject("tool call without a function", repr(c)[:200])
                calls.append(c)
        else:
            text.append(p)
    return (text_of(text) if text else None), ("".join(reasoning) if reasoning else None), calls


def build_messages(msgs: Any, b: Builder | None = None, need_assistant: bool = True) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise Reject("messages missing or not a list")
    b = b or Builder()
    legacy_pending: list[str] = []
    for m in msgs:
        if not isinstance(m, dict):
            raise Reject("message not an object", repr(m)[:200])
        role = m.get("role")
        if role in ("system", "developer"):
            b.system(m.get("content"))
        elif role == "user":
            b.user(m.get("content"))
        elif role == "assistant":
            content, reasoning, part_calls = _parts(m.get("content"))
            calls = [b.call(c.get("name"), c.get("arguments"), c.get("id")) for c in part_calls]
            raw_calls = m.get("tool_calls")
            if raw_calls is not None and not isinstance(raw_calls, list):
                raise Reject("tool_calls not a list")
            for c in raw_calls or []:
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict):
                    raise Reject("tool call without a function", repr(c)[:200])
                calls.append(b.call(fn.get("name"), fn.get("arguments"), c.get("id")))
            fc = m.get("function_call")
            if isinstance(fc, dict):
                call = b.call(fc.get("name"), fc.get("arguments"))
                legacy_pending.append(call["id"])
                calls.append(call)
            b.assistant(content, calls or None, _train(m))
            reasoning = reasoning if reasoning is not None else m.get("reasoning")
            if isinstance(reasoning, str) and reasoning.strip():
                b.messages[-1]["reasoning"] = reasoning
        elif role == "tool":
            b.tool(m.get("content"), m.get("tool_call_id"), m.get("name"))
        elif role == "function":
            b.tool(m.get("content"), legacy_pending.pop(0) if legacy_pending else None, m.get("name"))
        else:
            raise Reject("unknown role", repr(role))
    return b.finish(need_assistant=need_assistant)


def convert_obj(obj: dict, source: str = NAME) -> dict:
    for media in ("images", "videos", "audios"):
        if obj.get(media):
            raise Reject("multimodal row", f"has {media}")
    if obj.get("label") is False:
        raise Skip("label false (undesirable answer)")
    tools = parse_tools(obj.get("tools") if obj.get("tools") is not None else obj.get("functions"))
    messages = build_messages(obj.get("messages"))
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
    return record(source_id(obj, "openai-"), source, {"messages": messages}, meta, tools,
                  extras(obj, ("id", "metadata", "messages", "tools", "functions")))


def convert_preference(obj: dict) -> dict:
    """OpenAI preference fine-tuning rows (input.messages, preferred_output, non_preferred_output)
    or LLaMA-Factory v1 rows (chosen_messages / rejected_messages: whole conversations whose
    common beginning is the prompt)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
    if isinstance(obj.get("input"), dict) and "preferred_output" in obj:
        inp = obj["input"]
        tools = parse_tools(inp.get("tools"))
        prompt = build_messages(inp.get("messages"), need_assistant=False)
        chosen, rejected = build_messages(obj.get("preferred_output")), build_messages(obj.get("non_preferred_output"))
        used = ("id", "metadata", "input", "preferred_output", "non_preferred_output")
    elif "chosen_messages" in obj:
        tools = parse_tools(obj.get("tools"))
        c, r = obj.get("chosen_messages"), obj.get("rejected_messages")
        if not isinstance(c, list) or not isinstance(r, list):
            raise Reject("no chosen/rejected answers")
        n = 0
        while n < min(len(c), len(r)) and c[n] == r[n]:
            n += 1
        while n > 0 and isinstance(c[n - 1], dict) and c[n - 1].get("role") == "assistant":
            n -= 1  # the answers start at the first differing assistant turn
        prompt = build_messages(c[:n], need_assistant=False)
        chosen, rejected = build_messages(c[n:]), build_messages(r[n:])
        used = ("id", "metadata", "chosen_messages", "rejected_messages", "tools")
    else:
        raise Reject("no chosen/rejected answers")
    if chosen == rejected:
        raise Reject("identical chosen and rejected")
    body = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return record(source_id(obj, "openai-pref-"), NAME, body, meta, tools, extras(obj, used))


def convert(source, kind, cfg, emit):
    def one(obj: dict) -> dict:
        if kind == "preference":
            return convert_preference(obj)
        if _is_preference(obj):
            raise Reject("preference row", "convert it with --to preference")
        return convert_obj(obj)

    yield from per_row(source, emit, one)
