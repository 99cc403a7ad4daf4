"""ShareGPT / LLaMA-Factory conversations -> sft (and preference for chosen/rejected rows).

``conversations`` is a list of ``{from, value}`` with roles system, human/user, gpt/assistant,
``function_call`` (value: JSON of ``{name, arguments}``, or a list of them for parallel calls)
and ``observation`` / ``tool`` (a tool result). ``tools`` may be a JSON string. A gpt turn
followed by a function_call turn becomes one assistant message (thought + calls). Observations
answer the pending calls in order. Extra turn keys written by ``--to sharegpt``
(``id`` inside a call, ``tool_call_id``, ``name``, ``train``, ``reasoning``) are read back, so
trajtune -> sharegpt -> trajtune gives the same records. Unmapped top-level keys go to
``metadata.extra``.
"""
from __future__ import annotations

from typing import Any

from trajtune.converters.common import Builder, Reject, extras, loads_json, parse_tools, per_row, record, source_id

NAME = "sharegpt"
KINDS = ("sft", "preference")

ROLE_KEYS = (("from", "value"), ("role", "content"))
USER = ("human", "user")
ASSISTANT = ("gpt", "assistant", "model", "bot")
CALL = ("function_call", "tool_call")
RESULT = ("observation", "tool", "function_response", "tool_response")


def detect(obj: Any) -> bool:
    conv = obj.get("conversations") if isinstance(obj, dict) else None
    return isinstance(conv, list) and any(isinstance(t, dict) and "from" in t for t in conv)


def _turn(t: Any) -> tuple[str, Any]:
    if not isinstance(t, dict):
        raise Reject("turn not an object", repr(t)[:200])
    for rk, vk in ROLE_KEYS:
        if rk in t:
            return str(t[rk]), t.get(vk)
    raise Reject("turn without a role", repr(t)[:200])


def build(turns: Any, b: Builder | None = None, *, text_calls=None, need_assistant: bool = True) -> list[dict]:
    """``text_calls(text) -> (content, calls)`` turns Hermes-style tagged text into calls."""
    if not isinstance(turns, list) or not turns:
        raise Reject("conversations missing or not a list")
    b = b or Builder()
    for t in turns:
        role, value = _turn(t)
        train = t.get("train") if isinstance(t.get("train"), bool) else None
        if role == "system":
            b.system(value)
        elif role in USER:
            b.user(value)
        elif role in ASSISTANT:
            if text_calls is not None and isinstance(value, str):
                content, calls = text_calls(value, b)
                b.assistant(content, calls or None, train)
            else:
                b.assistant(value, None, train)
            _reasoning(b, t)
        elif role in CALL:
            spec = loads_json(value, "function_call")
            specs = spec if isinstance(spec, list) else [spec]
            calls = []
            for s in specs:
                if not isinstance(s, dict):
                    raise Reject("function_call not an object", repr(s)[:200])
                calls.append(b.call(s.get("name"), s.get("arguments", s.get("parameters")), s.get("id")))
            if not calls:
                raise Reject("function_call not an object", "empty list")
            b.assistant(None, calls, train, merge=True)
            _reasoning(b, t)
        elif role in RESULT:
            b.tool(value, t.get("tool_call_id"), t.get("name"))
        else:
            raise Reject("unknown role", repr(role))
    return b.finish(need_assistant=need_assistant)


def _reasoning(b: Builder, turn: dict) -> None:
    if isinstance(turn.get("reasoning"), str) and turn["reasoning"].strip():
        b.messages[-1]["reasoning"] = turn["reasoning"]


def _reply(v: Any) -> list[dict]:
    """A chosen/rejected side: a turn object, a list of turns, or plain text."""
    if isinstance(v, str):
        v = {"from": "gpt", "value": v}
    return build(v if isinstance(v, list) else [v])


def convert_obj(obj: dict, kind: str, text_calls=None, source: str = NAME) -> dict:
    tools = parse_tools(obj.get("tools"))
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
    turns = obj.get("conversations")
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        turns = [{"from": "system", "value": obj["system"]}] + list(turns or [])
    if kind == "preference":
        if "chosen" not in obj or "rejected" not in obj:
            raise Reject("no chosen/rejected answers")
        prompt = build(turns, need_assistant=False)
        chosen, rejected = _reply(obj["chosen"]), _reply(obj["rejected"])
        if chosen == rejected:
            raise Reject("identical chosen and rejected")
        body = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    else:
        body = {"messages": build(turns, text_calls=text_calls)}
    return record(source_id(obj, source + "-"), source, body, meta, tools,
                  extras(obj, ("id", "metadata", "conversations", "tools", "system", "chosen", "rejected")))


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, lambda o: convert_obj(o, kind))
