"""Tool-invocation logs -> sft trajectories.

One task per line, or one invocation per line (``task_id`` + ``tool_name`` + ``parameters`` and
optional ``result`` / ``step`` / ``timestamp``; task fields may sit on any of its lines): the
invocations of a task are grouped by ``task_id`` keeping only offsets in memory, ordered by step
(or time, or file order), and converted like a one-line task. A task line has: ``task_description``, ``tool_sequence`` (a list of tool names, or a string
joined by ``,`` / ``->`` / ``>``), ``tool_parameters`` (one arguments object per tool, a list or a
JSON string), ``expected_result`` (the final answer), ``success_label``, ``agent_name``,
``difficulty`` / ``difficulty_level`` (easy, medium, hard), ``success_rate``; optional
``tool_results`` / ``observations`` (one per tool), ``tools`` (schemas) and ``task_id``. Without
``tools``, each tool is declared with the argument names it was called with.

The trajectory is: user task -> one assistant call per tool, each followed by its tool result
(empty when the log has none; ``metadata.observations`` says "missing") -> the expected result as
the final answer. Filters (counted as skipped): ``success_label`` false, ``success_rate`` below
``--quality-threshold``, sequence length outside ``--min-tool-calls``..``--max-tool-calls``.
"""
from __future__ import annotations

import re
from typing import Any

from trajtune.jsonl import Row
from trajtune.converters.common import (ROW_ERRORS, Builder, Reject, Skip, as_reject, declare_called_tools, loads_json,
                                        parse_tools, per_row, record, source_id)

NAME = "tool-logs"
KINDS = ("sft",)
DIFFICULTIES = ("easy", "medium", "hard")


def _is_invocation(obj: Any) -> bool:
    return isinstance(obj, dict) and "task_id" in obj and ("tool_name" in obj or "tool" in obj) and "tool_sequence" not in obj


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and (_is_invocation(obj) or (
        "tool_sequence" in obj and ("task_description" in obj or "tool_parameters" in obj)))


def _sequence(v: Any) -> list[str]:
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            v = loads_json(s, "tool_sequence")
        else:
            return [p.strip() for p in re.split(r"\s*(?:->|→|>|,)\s*", s) if p.strip()]
    if not isinstance(v, list):
        return []
    return [str(x.get("name") if isinstance(x, dict) else x).strip() for x in v if x not in (None, "")]


def _success(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "success", "succeeded", "pass", "passed")
    return None


def convert_obj(obj: dict, cfg) -> dict:
    # 1) the reasons a record is rejected, in the order a reader would check them
    task = obj.get("task_description")
    if not isinstance(task, str) or len(task.strip()) < cfg.min_task_chars:
        raise Reject("task_description too short or empty")
    tools = _sequence(obj.get("tool_sequence"))
    if not tools:
        raise Reject("tool_sequence cannot be empty")
    params = loads_json(obj.get("tool_parameters", []), "tool_parameters")
    if isinstance(params, dict) and len(tools) == 1:
        params = [params]
    if not isinstance(params, list) or len(params) != len(tools):
        raise Reject("tool_sequence and tool_parameters length mismatch",
                     f"{len(tools)} tools, {len(params) if isinstance(params, list) else 'no list of'} parameter sets")
    result = obj.get("expected_result")
    if isinstance(result, (dict, list)):
        import orjson

        result = orjson.dumps(result).decode()
    if not isinstance(result, str) or len(result.strip()) < cfg.min_result_chars:
        raise Reject("expected_result too short or empty")
    difficulty = obj.get("difficulty_level", obj.get("difficulty"))
    if difficulty is not None and (not isinstance(difficulty, str) or difficulty.strip().lower() not in DIFFICULTIES):
        raise Reject("invalid difficulty_level", repr(difficulty))
    # 2) filters
    success = _success(obj.get("success_label"))
    if success is False:
        raise Skip("success_label false")
    rate = obj.get("success_rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 1:
        rate = rate / 100.0  # given as a percentage
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate < cfg.quality_threshold:
        raise Skip("success_rate below quality_threshold")
    if not cfg.min_tool_calls <= len(tools) <= cfg.max_tool_calls:
        raise Skip("tool_sequence length outside min_tool_calls..max_tool_calls")
    # 3) the trajectory
    results = obj.get("tool_results", obj.get("observations"))
    results = loads_json(results, "tool_results") if results is not None else None
    if results is not None and (not isinstance(results, list) or len(results) != len(tools)):
        raise Reject("tool_sequence and tool_results length mismatch")
    b = Builder()
    b.user(task)
    for i, (name, args) in enumerate(zip(tools, params)):
        b.assistant(None, [b.call(name, args)])
        b.tool(results[i] if results is not None else "")
    b.assistant(result)
    messages = b.finish()
    # logs rarely carry tool schemas: declare each tool with the argument names it was called with
    declared, _ = declare_called_tools(parse_tools(obj.get("tools")), messages)
    meta: dict[str, Any] = {"source": NAME}
    if isinstance(obj.get("agent_name"), str):
        meta["agent"] = obj["agent_name"]
    if difficulty is not None:
        meta["difficulty"] = difficulty.strip().lower()
    if success is not None:
        meta["success"] = success
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        meta["success_rate"] = rate
    if results is None:
        meta["observations"] = "missing"
    return record(source_id(obj, "toollog-", "task_id", "id"), NAME, {"messages": messages}, meta, declared)


TASK_FIELDS = ("task_description", "expected_result", "success_label", "agent_name", "difficulty",
               "difficulty_level", "success_rate", "tools")


def convert(source, kind, cfg, emit):
    first = source.peek(1)
    if not first or not _is_invocation(first[0]):
        yield from per_row(source, emit, lambda o: convert_obj(o, cfg))
        return
    # pass 1: task_id -> [(order key, line, offset)]
    tasks: dict[str, list[tuple]] = {}
    for raw in source.raw_rows():
        obj = raw.obj
        if not _is_invocation(obj):
            emit.reject(Row(source.name, raw.lineno, obj), "not a tool invocation", "needs task_id and tool_name")
            continue
        step = obj.get("step", obj.get("step_index"))
        order = (0, float(step)) if isinstance(step, (int, float)) and not isinstance(step, bool) else \
            (1, str(obj.get("timestamp") or ""))
        tasks.setdefault(str(obj["task_id"]), []).append((order, raw.lineno, raw.offset))
    # pass 2: rebuild each task from its invocations and convert it like a one-line task
    for task_id, calls in tasks.items():
        calls.sort(key=lambda c: (c[0], c[1]))
        rows = [source.read_at(off, ln) for _, ln, off in calls]
        task: dict[str, Any] = {"task_id": task_id, "tool_sequence": [], "tool_parameters": [], "tool_results": []}
        for r in rows:
            o = r.obj
            task["tool_sequence"].append(o.get("tool_name", o.get("tool")))
            task["tool_parameters"].append(o.get("parameters", o.get("tool_parameters", {})))
            task["tool_results"].append(o.get("result", o.get("output", "")))
            for k in TASK_FIELDS:
                if o.get(k) not in (None, "") and k not in task:
                    task[k] = o[k]
        row = Row(rows[0].path, rows[0].lineno, task)
        try:
            yield row, convert_obj(task, cfg)
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(row, r.reason, r.detail)
        except Skip as sk:
            emit.skip(sk.reason)
