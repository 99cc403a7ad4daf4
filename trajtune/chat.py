"""THE renderer and parser: messages + tools -> model text (+ assistant mask), and back.

Training and evaluation both use this module, so a model is prompted at evaluation exactly as
it was trained.

* A tokenizer whose chat template handles tools (it mentions ``tools``) renders natively:
  tools and ``tool_calls`` are passed to ``apply_chat_template``.
* Otherwise (SmolLM2, most small models) the **fallback format** is used, documented here and in
  the README. The tool schemas go into the system message inside ``<tools></tools>``, one JSON per
  line; an assistant call is written as::

      <tool_call>
      {"name": "database_query", "arguments": {"table": "orders", "limit": 5}}
      </tool_call>

  after the assistant's thought (if any); tool results are sent back as a user turn holding one
  ``<tool_response>...</tool_response>`` block per result. Only user/assistant/system roles
  reach the template, so it works with any ChatML-like or alternation-enforcing template.

The parser (:func:`parse_tool_calls`) is the exact inverse of :func:`format_tool_call`:
rendering a gold trajectory and parsing its assistant turns gives back the same calls.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query. "
    "The available functions, one JSON schema per line:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, write one block per call:\n"
    "<tool_call>\n{{\"name\": <function-name>, \"arguments\": <arguments-json-object>}}\n</tool_call>\n"
    "Results come back inside <tool_response></tool_response>. "
    "If no function fits, answer directly without a call."
)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def format_tool_call(name: str, arguments: Any) -> str:
    return f"{TOOL_CALL_OPEN}\n{_dumps({'name': name, 'arguments': arguments})}\n{TOOL_CALL_CLOSE}"


def tools_block(tools: Sequence[dict] | None) -> str:
    lines = "\n".join(_dumps(t) for t in tools or [])
    return TOOLS_HEADER.format(tools=lines)


def assistant_text(msg: dict) -> str:
    """Fallback text of one assistant message: thought, then one block per call."""
    parts = []
    content = msg.get("content")
    if isinstance(content, str) and content.strip():
        parts.append(content.strip())
    for call in msg.get("tool_calls") or []:
        fn = call.get("function", {})
        parts.append(format_tool_call(fn.get("name"), fn.get("arguments", {})))
    return "\n".join(parts)


def supports_tools(tokenizer: Any) -> bool:
    tmpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tmpl, dict):
        tmpl = " ".join(tmpl.values())
    return bool(tmpl) and "tools" in str(tmpl) and "tool_calls" in str(tmpl)


@dataclass
class TemplateMessage:
    role: str
    content: str
    train: bool = False  # part of the loss
    raw: dict | None = None  # native mode: the message as given to the template


def to_template_messages(messages: Sequence[dict], tools: Sequence[dict] | None, *, native: bool = False) -> list[TemplateMessage]:
    """Map our messages to what the chat template sees, keeping each turn's trainability."""
    out: list[TemplateMessage] = []
    if native:
        for m in messages:
            raw = {k: v for k, v in m.items() if k != "train"}
            if raw.get("content") is None:
                raw["content"] = ""
            out.append(TemplateMessage(m["role"], raw["content"], m["role"] == "assistant" and m.get("train", True) is not False, raw))
        return out
    sys_parts = []
    rest = list(messages)
    if rest and rest[0].get("role") == "system":
        sys_parts.append(rest[0].get("content") or "")
        rest = rest[1:]
    if tools:
        sys_parts.append(tools_block(tools))
    if sys_parts:
        out.append(TemplateMessage("system", "\n\n".join(p for p in sys_parts if p)))
    for m in rest:
        role = m.get("role")
        if role == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response>"):
                out[-1].content += "\n" + block  # parallel results share one turn
            else:
                out.append(TemplateMessage("user", block))
        elif role == "assistant":
            out.append(TemplateMessage("assistant", assistant_text(m), m.get("train", True) is not False))
        else:
            out.append(TemplateMessage(role, m.get("content") or ""))
    return out


def _apply(tokenizer: Any, tmsgs: Sequence[TemplateMessage], tools: Sequence[dict] | None, native: bool, add_generation_prompt: bool) -> str:
    if native:
        return tokenizer.apply_chat_template([m.raw for m in tmsgs], tools=list(tools or []) or None,
                                             tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in tmsgs],
                                         tokenize=False, add_generation_prompt=add_generation_prompt)


def render(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None = None, *, add_generation_prompt: bool = False) -> str:
    native = supports_tools(tokenizer)
    return _apply(tokenizer, to_template_messages(messages, tools, native=native), tools, native, add_generation_prompt)


def render_prompt(tokenizer: Any, prompt: Sequence[dict], tools: Sequence[dict] | None = None) -> str:
    """The generation prompt for an evaluation task or the next step of a trajectory."""
    return render(tokenizer, prompt, tools, add_generation_prompt=True)


class RenderError(ValueError):
    pass


def render_with_spans(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Full text plus the character spans of trainable assistant turns.

    A span runs from the end of the generation prompt before an assistant turn to the end of
    that turn (its end-of-turn token included), so the model learns to stop.
    """
    native = supports_tools(tokenizer)
    tmsgs = to_template_messages(messages, tools, native=native)
    full = _apply(tokenizer, tmsgs, tools, native, False)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(tmsgs):
        if m.role != "assistant" or not m.train:
            continue
        before = _apply(tokenizer, tmsgs[:i], tools, native, True) if i else ""
        upto = _apply(tokenizer, tmsgs[: i + 1], tools, native, False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise RenderError("the chat template is not prefix-stable; cannot locate assistant turns")
        spans.append((len(before), len(upto)))
    return full, spans


def tokenize_for_training(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> tuple[list[int], list[int]]:
    """input_ids and labels (-100 outside trainable assistant turns)."""
    text, spans = render_with_spans(tokenizer, messages, tools)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [-100] * len(ids)
    j = 0
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        if j < len(spans) and spans[j][0] <= s < spans[j][1] and e > s:
            labels[t] = ids[t]
    return ids, labels


@dataclass
class Parsed:
    """Tool calls parsed from one assistant reply."""

    content: str
    calls: list[dict] = field(default_factory=list)  # [{"name": str, "arguments": Any}]
    errors: list[str] = field(default_factory=list)  # "unparsable_json" | "truncated" | "bad_call"

    @property
    def valid_json(self) -> bool:
        return not self.errors


_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.S)


def _parse_call(body: str) -> tuple[dict | None, str | None]:
    body = body.strip()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None, "unparsable_json"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None, "bad_call"
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # double-encoded arguments
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None, "unparsable_json"
    return {"name": obj["name"], "arguments": args}, None


def parse_tool_calls(text: str) -> Parsed:
    """Inverse of the fallback format (also reads Hermes/Qwen output, which uses the same tags)."""
    calls: list[dict] = []
    errors: list[str] = []
    last = 0
    for m in _BLOCK.finditer(text):
        call, err = _parse_call(m.group(1))
        if call is not None:
            calls.append(call)
        else:
            errors.append(err)
        last = m.end()
    tail = text[last:]
    if TOOL_CALL_OPEN in tail:  # opened and never closed: cut off by the token limit
        call, err = _parse_call(tail.split(TOOL_CALL_OPEN, 1)[1])
        if call is not None:
            calls.append(call)
        errors.append("truncated")
    first = text.find(TOOL_CALL_OPEN)
    content = (text if first < 0 else text[:first]).strip()
    return Parsed(content=content, calls=calls, errors=errors)


def to_openai_calls(calls: Sequence[dict], prefix: str = "call_") -> list[dict]:
    return [{"id": f"{prefix}{i + 1}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for i, c in enumerate(calls)]
