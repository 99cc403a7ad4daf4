"""Task records written for the train-grpo tests. A tiny random model never calls a tool, so the
rewards that vary from sample to sample on it are answer tasks: ``contains`` a common letter
(some samples have it, some do not) varies; ``exact`` a long sentence never passes (no variance)."""
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
WORDS = ["orders", "users", "items", "events", "logs", "tests", "files", "docs"]


def make_tasks(n: int, *, prefix: str = "t", answer: str = "o", match: str = "contains") -> list[dict]:
    out = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        out.append({"id": f"{prefix}{i}", "metadata": {"source": "test"},
                    "prompt": [{"role": "user", "content": f"Say something about {w} ({prefix}{i})."}],
                    "tools": TOOLS[: 1 + i % 2], "expected": {"answer": answer, "match": match}})
    return out


def write_tasks(path: Path, n: int, **kw) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(t) + "\n" for t in make_tasks(n, **kw)))
    return path
