"""Tool-retrieval data for the train-embed and retrieval tests: a catalog of tools (OpenAI
specs), requests naming what each tool does, triplets (request -> tool vs a look-alike) and task
records, all built from words the tiny embedder's vocabulary knows."""
from __future__ import annotations

import json
from pathlib import Path

VERBS = ["read", "write", "list", "search", "run", "fetch", "deploy", "restart", "create", "delete", "update", "send"]
OBJECTS = ["file", "folder", "docs", "logs", "tests", "service", "table", "orders", "branch", "email", "report", "image"]
ASKS = ["please {v} the {o}", "can you {v} my {o}", "{v} this {o} for me", "i need to {v} the {o}"]


def tools() -> list[dict]:
    out = []
    for v in VERBS:
        for o in OBJECTS[:5]:
            out.append({"type": "function", "function": {
                "name": f"{v}_{o}", "description": f"{v.capitalize()} a {o}.",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}})
    return out  # 60 tools


def _doc(t: dict) -> str:
    f = t["function"]
    return f"{f['name']}: {f['description']} (parameters: path)"


def triplets(n: int, *, review: str = "approved", skip_asks: int | None = None) -> list[dict]:
    ts = tools()
    out = []
    i = 0
    while len(out) < n:
        t = ts[i % len(ts)]
        ask = ASKS[(i // len(ts)) % len(ASKS)] if skip_asks is None else ASKS[skip_asks]
        v, o = t["function"]["name"].split("_")
        neg = ts[(i + 1) % len(ts)] if ts[(i + 1) % len(ts)]["function"]["name"].startswith(v) else ts[(i + 5) % len(ts)]
        out.append({"id": f"trip-{i:04d}", "metadata": {"source": "test", "review": review},
                    "anchor": ask.format(v=v, o=o), "positive": _doc(t), "negative": _doc(neg)})
        i += 1
    return out


def tasks(n: int) -> list[dict]:
    ts = tools()
    out = []
    for i in range(n):
        t = ts[(i * 7) % len(ts)]
        v, o = t["function"]["name"].split("_")
        offered = [t, ts[(i * 7 + 1) % len(ts)]]
        out.append({"id": f"task-{i:03d}", "metadata": {"category": "coding" if i % 2 else "data"},
                    "prompt": [{"role": "user", "content": f"show me how to {v} the {o}"}], "tools": offered,
                    "expected": {"calls": [{"name": t["function"]["name"], "arguments": {"path": ["a"]}}], "order": "strict"}})
    return out


def write(path: Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
