"""ATIF agent trajectories (Agent Trajectory Interchange Format, v1.x, as exported by Harbor /
Phoenix) -> sft.

A trajectory has ``session_id`` (or ``trajectory_id``), ``agent`` (``name``, ``model_name``,
optional ``tool_definitions``) and ``steps``: ``source`` system / user / agent, ``message``
(text or a list of text parts), an agent step's ``reasoning_content`` (kept in the message's
``reasoning`` key), ``tool_calls`` (``tool_call_id``, ``function_name``, ``arguments``) and
``observation.results`` (``source_call_id``, ``content``), which become tool messages.
Called tools without a definition are declared by name (``metadata.inferred_tools``).
``system`` steps after the conversation has started (environment notes) and observations of a
step without calls (environment feedback) reach the model as user turns; their count is in
``metadata.notes_as_user_turns``.
Embedded ``subagent_trajectories`` are not expanded (their count is in ``metadata``).
"""
from __future__ import annotations

from typing import Any

from trajtune.converters.common import (Builder, Reject, declare_called_tools, parse_tools, per_row, record,
                                        source_id)

NAME = "atif"
KINDS = ("sft",)


def detect(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("steps"), list):
        return False
    return str(obj.get("schema_version", "")).startswith("ATIF") or any(
        isinstance(s, dict) and "source" in s for s in obj["steps"])


def convert_obj(obj: dict) -> dict:
    steps = obj.get("steps")
    if not isinstance(steps, list) or not steps:
        raise Reject("no steps")
    b = Builder()
    notes = 0
    for step in steps:
        if not isinstance(step, dict):
            raise Reject("step not an object", repr(step)[:200])
        src = step.get("source")
        if src == "system" and all(m["role"] == "system" for m in b.messages):
            b.system(step.get("message"))
        elif src == "system":  # a note injected mid-run reaches the model as a user turn
            b.user(step.get("message"))
            notes += 1
        elif src == "user":
            b.user(step.get("message"))
        elif src == "agent":
            calls = [b.call(c.get("function_name"), c.get("arguments"), c.get("tool_call_id"))
                     for c in step.get("tool_calls") or [] if isinstance(c, dict)]
            b.assistant(step.get("message"), calls or None)
            if isinstance(step.get("reasoning_content"), str) and step["reasoning_content"].strip():
                b.messages[-1]["reasoning"] = step["reasoning_content"]
            for res in (step.get("observation") or {}).get("results") or []:
                if not isinstance(res, dict):
                    raise Reject("observation result not an object", repr(res)[:200])
                if calls:
                    b.tool(res.get("content"), res.get("source_call_id"))  # a missing content is an empty result
                else:  # feedback from the environment to a step without calls (e.g. a parse error)
                    b.user(res.get("content"))
                    notes += 1
        else:
            raise Reject("unknown step source", repr(src))
    messages = b.finish()
    agent = obj.get("agent") if isinstance(obj.get("agent"), dict) else {}
    meta: dict[str, Any] = {"source": NAME}
    for key, dst in (("name", "agent"), ("model_name", "model")):
        if isinstance(agent.get(key), str):
            meta[dst] = agent[key]
    if obj.get("schema_version"):
        meta["schema_version"] = obj["schema_version"]
    if notes:
        meta["notes_as_user_turns"] = notes
    if obj.get("subagent_trajectories"):
        meta["subagent_trajectories"] = len(obj["subagent_trajectories"])
    tools, inferred = declare_called_tools(parse_tools(agent.get("tool_definitions")), messages)
    if inferred:
        meta["inferred_tools"] = inferred
    return record(source_id(obj, "atif-", "trajectory_id", "session_id", "id"), NAME, {"messages": messages}, meta, tools)


def convert(source, kind, cfg, emit):
    yield from per_row(source, emit, convert_obj)
