"""bench/record_tokens.py counts what train-sft would train: every request of a conversation,
its trained tokens, and one tools block per record."""
import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from trajtune.chat import tokenize_for_training

ROOT = Path(__file__).resolve().parents[2]


def test_record_tokens_counts_requests_trained_tokens_and_the_tools_block(tmp_path, tiny_model):
    tools = [{"type": "function", "function": {"name": "f", "description": "Do f.",
                                               "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    rec = {"id": "r1", "metadata": {"shape": "single"}, "tools": tools, "messages": [
        {"role": "user", "content": "do f for 1"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}, {"role": "assistant", "content": "done"},
        {"role": "user", "content": "and hello"}, {"role": "assistant", "content": "hello"}]}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "record_tokens.py"), str(path), "--model", str(tiny_model)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ids, labels = tokenize_for_training(AutoTokenizer.from_pretrained(tiny_model), rec["messages"], tools)
    trained = sum(1 for x in labels if x != -100)
    assert f"1 records: {len(ids)} tokens a record, {trained} trained" in res.stdout
    assert "2.00 user requests" in res.stdout and "single: 1 records" in res.stdout
