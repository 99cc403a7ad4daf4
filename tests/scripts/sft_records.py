"""sft records written for the train-sft tests: multi-step tool-call trajectories whose tool
arguments change type from one record to the next (``limit`` 5 vs "5", an extra nested object),
which is what Arrow would silently merge into one struct type if records reached it raw."""
from __future__ import annotations

import json
from pathlib import Path

TOOLS = [{"type": "function", "function": {
    "name": "database_query", "description": "Run a query",
    "parameters": {"type": "object", "properties": {
        "table": {"type": "string"}, "limit": {"type": ["integer", "string"]}, "filter": {"type": "object"}},
        "required": ["table"]}}}]
TABLES = ["orders", "users", "items", "events", "logs", "tests"]


def arguments(i: int) -> dict:
    table, limit = TABLES[i % len(TABLES)], 1 + i % 7
    if i % 2 == 0:
        return {"table": table, "limit": limit}
    return {"table": table, "limit": str(limit), "filter": {"k": [1, "a", None], "deep": {"x": 1.5}}}


def trajectory(i: int, *, review: str | None = None) -> dict:
    args = arguments(i)
    meta = {"source": "test"}
    if review:
        meta["review"] = review
    return {"id": f"t{i}", "metadata": meta, "tools": TOOLS, "messages": [
        {"role": "system", "content": "You are an operations agent."},
        {"role": "user", "content": f"Show {args['limit']} rows of {args['table']} (request {i})."},
        {"role": "assistant", "content": "I'll query the table.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "database_query", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"[{args['limit']} rows of {args['table']}]"},
        {"role": "assistant", "content": f"Here are the rows of {args['table']}."}]}


def write(path: Path, n: int, *, start: int = 0, review: str | None = None) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(trajectory(start + i, review=review)) + "\n" for i in range(n)))
    return path
