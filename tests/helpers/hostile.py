"""Shared by the hostile-input tests: the network guard's folder and input digests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

NETGUARD = Path(__file__).resolve().parents[1] / "hostile" / "netguard"


def digest(*paths: Path) -> dict[str, str]:
    """sha256 of every file under the given paths (folders walked), for before/after checks."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "data" / "examples" / "valid"
FIX = ROOT / "tests" / "fixtures" / "convert"


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca(path: Path) -> Path:
    return jsonl(path, [{"instruction": "Say hi.", "input": "", "output": "hi"},
                        {"instruction": "Say bye.", "input": "", "output": "bye"}])


def sft_with_tool(params: dict, args: dict) -> dict:
    return {"id": "r1", "metadata": {}, "tools": [{"type": "function", "function": {"name": "t", "parameters": params}}],
            "messages": [{"role": "user", "content": "go"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "t", "arguments": args}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                         {"role": "assistant", "content": "done"}]}


def fake_adapter(path: Path) -> Path:
    """An adapter folder good enough for commands that must refuse before reading its weights."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default", "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"not really weights, never read by a refused command")
    return path
