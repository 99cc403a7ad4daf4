"""Hermes / Qwen-style tagged text -> sft with real tool calls.

Assistant turns carry calls as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` (read
by :func:`trajtune.chat.parse_tool_calls`, the project's one parser); results come back as
``<tool_response>...</tool_response>`` blocks (in a tool turn or a user turn), one tool message
each. Tools listed in the system prompt inside ``<tools>...</tools>`` become the record's
``tools`` and the block is removed from the system text (the renderer adds it back).

Accepted rows: ``conversations`` (sharegpt roles, incl. ``tool``), ``messages`` (OpenAI roles),
or a text transcript in ``text`` / ``example`` written as ``SYSTEM:`` / ``USER:`` /
``ASSISTANT:`` / ``TOOL:`` lines or as ChatML ``<|im_start|>role ... <|im_end|>``.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from trajtune.chat import parse_tool_calls
from trajtune.converters import sharegpt
from trajtune.converters.common import Reject, extras, parse_tools, per_row, record, source_id

NAME = "hermes"
KINDS = ("sft",)

_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.S)
_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.S)
_SPEAKER = re.compile(r"^(SYSTEM|USER|ASSISTANT|TOOL|FUNCTION RESPONSE|HUMAN|GPT):[ \t]*", re.M | re.I)
_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.S)
_ROLE = {"system": "system", "user": "human", "human": "human", "assistant": "gpt", "gpt": "gpt",
         "tool": "tool", "function response": "tool"}


def _texts(obj: dict) -> list[str]:
    out = []
    for key, vk in (("conversations", "value"), ("messages", "content")):
        for t in obj.get(key) or []:
            if isinstance(t, dict) and isinstance(t.get(vk), str):
                out.append(t[vk])
    for key in ("text", "example"):
        if isinstance(obj.get(key), str):
            out.append(obj[key])
    return out


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and any("<tool_call>" in t or "<tool_response>" in t for t in _texts(obj))


def _text_calls(text: str, b) -> tuple[str | None, list[dict]]:
    parsed = parse_tool_calls(text)
    if parsed.errors:
        raise Reject("unparsable <tool_call> block", ", ".join(parsed.errors))
    calls = [b.call(c["name"], c["arguments"]) for c in parsed.calls]
    return (parsed.content or None), calls


def _tools_from_system(text: str) -> tuple[str, list | None]:
    # the first non-empty block: prompts often also mention "<tools></tools> XML tags" in prose
    m = next((m for m in _TOOLS.finditer(text) if m.group(1).strip()), None)
    if not m:
        return text, None
    body = m.group(1).strip()
    try:
        tools = orjson.loads(body)
    except orjson.JSONDecodeError:  # one JSON object per line
        try:
            tools = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise Reject("tools not valid JSON", str(exc)) from None
    rest = (text[:m.start()] + text[m.end():]).strip()
    return rest, parse_tools(tools)


def _transcript(text: str) -> list[dict]:
    text = text.strip().strip("`").strip()
    if "<|im_start|>" in text:
        pairs = [(r.lower(), v.strip()) for r, v in _CHATML.findall(text)]
    else:
        marks = list(_SPEAKER.finditer(text))
        if not marks:
            raise Reject("no speaker turns in transcript")
        pairs = [(m.group(1).lower(), text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip())
                 for i, m in enumerate(marks)]
    turns = []
    for role, value in pairs:
        if role not in _ROLE:
            raise Reject("unknown role", role)
        turns.append({"from": _ROLE[role], "value": value})
    return turns


def _split_results(turns: list[dict]) -> list[dict]:
    """Tool/user turns holding <tool_response> blocks -> one tool turn per block."""
    out = []
    for t in turns:
        role, value = t.get("from"), t.get("value")
        if isinstance(value, str) and role in ("tool", "human", "user", "observation") and _RESPONSE.search(value) \
                and not _RESPONSE.sub("", value).strip():
            out.extend({"from": "tool", "value": v.strip()} for v in _RESPONSE.findall(value))
        else:
            out.append(t)
    return out


def convert_obj(obj: dict) -> dict:
    if isinstance(obj.get("conversations"), list):
        turns = [dict(t) for t in obj["conversations"] if isinstance(t, dict)]
    elif isinstance(obj.get("messages"), list):
        turns = [{"from": "gpt" if m.get("role") == "assistant" else m.get("role"), "value": m.get("content")}
                 for m in obj["messages"] if isinstance(m, dict)]
    else:
        text = obj.get("text") if isinstance(obj.get("text"), str) else obj.get("example")
        if not isinstance(text, str):
            raise Reject("no conversations, messages or text")
        turns = _transcript(text)
    tools = parse_tools(obj.get("tools"))
    for t in turns:
        if t.get("from") == "system" and isinstance(t.get("value"), str):
            t["value"], found = _tools_from_system(t["value"])
            tools = tools or found
    turns = [t for t in turns if not (t.get("from") == "system" and not str(t.get("value") or "").strip())]
    messages = sharegpt.build(_split_results(turns), text_calls=_text_calls)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
    return record(source_id(obj, "hermes-"), NAME, {"messages": messages}, meta, tools,
                  extras(obj, ("id", "metadata", "conversations", "messages", "text", "example", "tools")))


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, convert_obj)
