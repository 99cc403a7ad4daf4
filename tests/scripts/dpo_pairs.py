"""Preference pairs written for the train-dpo tests: tool-call trajectories whose chosen side
calls the right tool with the right arguments and whose rejected side does not."""
from __future__ import annotations

import json
from pathlib import Path

TOOLS = [
    {"type": "function", "function": {"name": "database_query", "description": "Run a query",
     "parameters": {"type": "object", "properties": {"table": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["table"]}}},
    {"type": "function", "function": {"name": "read_file", "description": "Read a file",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
]
TABLES = ["orders", "users", "items", "events", "logs", "tests"]
FILES = ["src/app.py", "README.md", "setup.cfg", "docs/api.md"]


def call(name: str, args: dict, cid: str = "call_1") -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]}


def make_pairs(n: int, *, prefix: str = "p", review: str | None = None) -> list[dict]:
    out = []
    for i in range(n):
        meta = {"source": "test"}
        if review:
            meta["review"] = review
        if i % 2 == 0:
            table, limit = TABLES[i % len(TABLES)], 1 + i % 9
            prompt = [{"role": "user", "content": f"Show {limit} rows of {table}. ({i})"}]
            # argument shapes differ across records on purpose (Arrow would merge them into one struct)
            chosen = [call("database_query", {"table": table, "limit": limit})]
            rejected = [call("read_file", {"path": f"{table}.csv"})]
        else:
            path = FILES[i % len(FILES)]
            prompt = [{"role": "system", "content": "You are a coding agent."},
                      {"role": "user", "content": f"Read the file {path} ({i})"}]
            chosen = [call("read_file", {"path": path}),
                      {"role": "tool", "tool_call_id": "call_1", "content": "print('hi')"},
                      {"role": "assistant", "content": f"The file {path} prints hi."}]
            rejected = [{"role": "assistant", "content": "I cannot read files."}]
        out.append({"id": f"{prefix}{i:04d}", "metadata": meta, "tools": TOOLS,
                    "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def write_pairs(path: Path, n: int, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(n, **kw)))
    return path
